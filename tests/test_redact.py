"""`redact`: the one place the auth token is masked, in messages and in raw answers alike."""

from __future__ import annotations

from convoso_async._redaction import redact

TOKEN = "tok-0123456789abcdef"


def test_the_token_and_the_base_url_s_password_are_masked_in_a_message() -> None:
    text = f"refused at https://app:hunter22@h/v1 with {TOKEN}"
    assert redact(text, TOKEN, "https://app:hunter22@h/v1") == (
        "refused at https://app:***@h/v1 with ***"
    )


def test_an_answer_s_raw_bytes_lose_the_token_before_anything_is_built_from_them() -> None:
    body = f'{{"success": false, "text": "bad token {TOKEN}"}}'.encode()
    assert redact(body, TOKEN) == b'{"success": false, "text": "bad token ***"}'
    assert redact(b'{"success": true}', TOKEN) == b'{"success": true}'


def test_a_token_too_short_to_search_for_is_left_alone() -> None:
    assert redact("a tiny t", "t") == "a tiny t"
    assert redact(b"a tiny t", "t") == b"a tiny t"
