"""Input an attacker (or a careless caller) controls: field names, paths, the base URL, answers.

- A field name PHP would file as ``auth_token`` (NUL truncation, leading spaces, ``' '`` and
  ``'.'`` as ``'_'``, brackets, an unclosed ``'['``) replaces the client's token on Convoso's
  side: refused before anything is sent. A PHP model below, written from
  ``php_register_variable_ex`` (main/php_variables.c), reads the body the client really sends.
- A path is a sequence of plain segments below the base URL's path: ``.``/``..`` in any
  encoding is refused before anything is sent, naming the path given.
- A password in the base URL is shown as ``***`` (``REDACTED`` in ``url.full``) wherever the
  URL is shown: reprs, errors, the command line's stderr, spans.
- ``success`` is read strictly: a JSON boolean, or an `UnexpectedResponseError` quoting it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import unquote, urlencode

import anyio
import httpx2
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from hypothesis_profiles import examples

import convoso_async
from convoso_async import (
    APIConnectionError,
    APIError,
    AsyncConvoso,
    ConfigurationError,
    Convoso,
    ResponseDecodeError,
    UnexpectedResponseError,
)
from convoso_async.cli import main
from convoso_async.testing import FakeConvoso

TOKEN = "hostile-token-5b7e2c9d"
PASSWORD = "PW-s3cret-base-url"

PROPERTY = settings(
    max_examples=examples(400),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.fixture(autouse=True)
def instant_waits() -> Iterator[None]:
    with convoso_async.set_testing():
        yield


@contextlib.asynccontextmanager
async def serving(fake: FakeConvoso, **options: Any) -> AsyncIterator[AsyncConvoso]:
    async with fake.serve() as url, AsyncConvoso(fake.TOKEN, base_url=url, **options) as convoso:
        yield convoso


def with_password(url: str) -> str:
    """``url`` with ``user:PASSWORD@`` in front of its host."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://user:{PASSWORD}@{rest}"


# -- PHP's reading of a form body, as a model -------------------------------------------------


def php_urldecode(data: bytes) -> bytes:
    """``php_url_decode``: ``+`` is a space, ``%XX`` a byte, a broken ``%`` stays as it is."""
    out = bytearray()
    i = 0
    while i < len(data):
        if data[i : i + 1] == b"+":
            out.append(0x20)
        elif data[i : i + 1] == b"%" and len(data[i + 1 : i + 3]) == 2:
            try:
                out.append(int(data[i + 1 : i + 3], 16))
                i += 2
            except ValueError:
                out.append(data[i])
        else:
            out.append(data[i])
        i += 1
    return bytes(out)


def php_register(post: dict[bytes, object], name: bytes, value: bytes, *, php8: bool) -> None:
    """``php_register_variable_ex`` for the top level of ``$_POST``, step by step as in C."""
    var = bytearray(name.split(b"\0")[0])  # the name is a C string from here on
    while var[:1] == b" ":
        del var[0]
    p = 0
    while p < len(var) and var[p] != ord("["):
        if var[p] in b" .":
            var[p] = ord("_")
        p += 1
    if p == 0:
        return  # "empty variable name": dropped
    if p == len(var):
        post[bytes(var)] = value
        return
    ip = p + 1
    if ip < len(var) and var[ip] in b" \t\n\v\f\r":
        ip += 1
    if (ip < len(var) and var[ip] == ord("]")) or var.find(b"]", ip) >= 0:
        post[bytes(var[:p])] = [value]  # an array, filed under the name before '['
        return
    var[p] = ord("_")  # "not an index; un-terminate the var name"
    if php8:
        for q in range(p + 1, len(var)):
            if var[q] in b" .[":
                var[q] = ord("_")
    post[bytes(var)] = value


def php_post(body: bytes, *, php8: bool) -> dict[bytes, object]:
    """``$_POST``'s top level as PHP builds it from an urlencoded body."""
    post: dict[bytes, object] = {}
    for pair in body.split(b"&"):
        if pair:
            name, _, value = pair.partition(b"=")
            php_register(post, php_urldecode(name), php_urldecode(value), php8=php8)
    return post


def read_as_token(name: str) -> bool:
    """Whether PHP 7 or 8 files ``name`` (sent once, or decoded once more) under ``auth_token``
    in any ASCII case: what the client refuses."""
    wire = urlencode({name: "x"}).encode()  # form-encoded, as the client encodes a body
    once_more = php_urldecode(wire.partition(b"=")[0])
    keys: list[bytes] = []
    for php8 in (False, True):
        keys += php_post(wire, php8=php8)
        probe: dict[bytes, object] = {}
        php_register(probe, php_urldecode(once_more), b"", php8=php8)
        keys += probe
    return any(key.lower() == b"auth_token" for key in keys)


def test_the_php_model_reads_the_known_cases_as_php_does() -> None:
    cases = {
        b"auth_token%00=X": {b"auth_token": b"X"},
        b"+auth.token=X": {b"auth_token": b"X"},
        b"auth+token%5B%5D=X": {b"auth_token": [b"X"]},
        b"auth_token%5Bx%5D%5By%5D=X": {b"auth_token": [b"X"]},
        b"auth%5Btoken=X": {b"auth_token": b"X"},
        b"auth_token%5D=X": {b"auth_token]": b"X"},
        b"%5Bauth_token%5D=X": {},
    }
    for body, expected in cases.items():
        assert php_post(body, php8=True) == expected, body
    assert php_post(b"a%5Bb.c=X", php8=True) == {b"a_b_c": b"X"}
    assert php_post(b"a%5Bb.c=X", php8=False) == {b"a_b.c": b"X"}


# -- field names (finding 5) ------------------------------------------------------------------

TOKEN_NAMES = [
    "auth_token\x00",
    "auth_token\x00X",
    "auth[token\x00]",
    "auth_token",
    " auth_token",
    "   auth_token",
    "auth.token",
    "auth token",
    " auth token",
    "auth_token[]",
    "auth_token[ ]",
    "auth_token[x]",
    "auth_token[x][y]",
    "auth_token[]junk",
    "auth.token[0]",
    "auth[token",
    "auth.token\x00[",
    "AUTH_TOKEN",
    "Auth.Token[]",
    "auth%5Ftoken",
    "auth_token%00",
    "%20auth_token",
    "+auth_token",
]


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("name", TOKEN_NAMES)
async def test_a_field_php_reads_as_auth_token_is_refused_before_anything_is_sent(
    name: str,
) -> None:
    fake = FakeConvoso()
    fake.add_endpoint("/leads/search")
    async with serving(fake) as convoso:
        with pytest.raises(ValueError, match="read by Convoso \\(PHP\\) as auth_token") as caught:
            await convoso.post("/leads/search", {"list_id": "5", name: "X"})
    assert not isinstance(caught.value, ConfigurationError)
    assert repr(name) in str(caught.value)
    assert fake.requests == []


INNOCENT_NAMES = [
    "auth_token]",  # no '[': PHP keeps the name as it is
    "auth_token_",
    "auth_tokens",
    "xauth_token",
    "auth_token[",  # an unclosed '[' is '_': auth_token_
    "auth[token]",  # an array named auth
    "auth[token.",  # auth_token. (PHP 7), auth_token_ (PHP 8)
    "auth\u200btoken",
    "auth\uff3ftoken",  # a fullwidth underscore is not '_' to PHP
    "auth_to\u212aen",  # the Kelvin sign lowercases to 'k' in Python, not in PHP
    "auth_token\t",
    "list.id",
]


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_names_that_only_look_like_the_token_are_sent() -> None:
    fake = FakeConvoso()
    fake.add_endpoint("/leads/search")
    async with serving(fake) as convoso:
        for name in INNOCENT_NAMES:
            answer = await convoso.post("/leads/search", {name: "X"})
            assert answer["fields"] == {name: "X"}
    assert all(request.token_ok for request in fake.requests)
    assert len(fake.requests) == len(INNOCENT_NAMES)


ALPHABET = [*"autokenAUTOKEN_ .[]+%5Ff0x\x00\t=&", "é", "\u212a", "\uff3f", "\u3000"]


@st.composite
def field_names(draw: st.DrawFn) -> str:
    """Names near ``auth_token``: spelt as PHP reads it, wrapped in what PHP strips or splits
    on, with junk put in; or any text of the alphabet."""
    junk = st.text(st.sampled_from(ALPHABET), max_size=3)
    if draw(st.integers(0, 4)) == 0:
        return draw(st.text(st.sampled_from(ALPHABET), min_size=1, max_size=16))
    base = draw(st.sampled_from(["auth_token", "auth token", "auth.token", "AUTH_TOKEN", "auth"]))
    if draw(st.booleans()):  # the '_' (or ' ', '.') as an unclosed '['
        base = base[:4] + "[" + base[5:]
    prefix = draw(st.sampled_from(["", " ", "  ", "+", "%20", "[", "%"]))
    suffix = draw(
        st.one_of(
            st.just(""),
            junk,
            junk.map(lambda tail: "\x00" + tail),
            st.tuples(junk, junk).map(lambda pair: f"[{pair[0]}]{pair[1]}"),
            junk.map(lambda tail: "[" + tail),
        )
    )
    pieces = list(prefix + base + suffix)
    for _ in range(draw(st.integers(0, 2))):
        where = draw(st.integers(0, len(pieces)))
        pieces.insert(where, draw(junk))
    return "".join(pieces) or "_"


def sent_body(fields: dict[str, str]) -> bytes | None:
    """The body the client sends for ``fields``, or None when it refuses them (ValueError)."""
    bodies: list[bytes] = []

    def answer(request: httpx2.Request) -> httpx2.Response:
        bodies.append(request.content)
        return httpx2.Response(200, json={"success": True})

    async def send() -> None:
        async with httpx2.AsyncClient(transport=httpx2.MockTransport(answer)) as http:
            client = AsyncConvoso(TOKEN, base_url="https://php.invalid/v1", http_client=http)
            await client.post("/leads/search", fields)

    try:
        anyio.run(send)
    except ValueError as exc:
        refused = str(exc)
    else:
        [body] = bodies
        return body
    assert "as auth_token" in refused or "would be dropped by Convoso" in refused, refused
    return None


def dropped_by_php(name: str) -> bool:
    """Whether PHP 7 and 8 file ``name`` under no key at all (a field silently lost)."""
    wire = urlencode({name: "x"}).encode()
    return not any(php_post(wire, php8=php8) for php8 in (False, True))


@PROPERTY
@given(name=field_names())
@example(name="auth_token\x00")
@example(name="auth[token")
@example(name="auth_token[x]")
@example(name=" auth.token")
@example(name="auth_token]")
def test_no_field_name_reaches_php_as_auth_token_and_innocent_ones_are_sent(name: str) -> None:
    body = sent_body({name: "X"})
    event("refused" if body is None else "sent")
    if body is None:
        assert read_as_token(name) or dropped_by_php(name), (
            f"{name!r} was refused, but PHP neither reads it as the token nor drops it"
        )
        return
    assert not read_as_token(name), f"{name!r} was sent, and PHP reads it as the token"
    for php8 in (False, True):
        assert php_post(body, php8=php8)[b"auth_token"] == TOKEN.encode()


# -- paths (finding 7) ------------------------------------------------------------------------

ESCAPING_PATHS = [
    "/../../admin/users",
    "/leads/../../admin",
    "/./leads/search",
    "/leads/./search",
    "/leads/..",
    "/%2e%2e/%2e%2e/admin/users",
    "/%2E%2E/admin",
    "/%2e%2E/admin",
    "/.%2e/admin",
    "/%2e./admin",
    "/%2e/leads",
    "/%252e%252e/admin",
    "/%25252E%25252e/admin",
    "/..\\admin",
    "/leads\\..\\admin",
    "/%5c..%5cadmin",
    "/%2e%2e%2fadmin",
    "/..%2fadmin",
    "/..;/admin",
    "/%c0%ae%c0%ae/admin",
    "/\uff0e\uff0e/admin",
    "/.../admin",
    "/leads//search",
]


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("path", ESCAPING_PATHS)
async def test_a_path_leaving_the_base_path_is_refused_naming_it(path: str) -> None:
    fake = FakeConvoso()
    async with serving(fake) as convoso:
        with pytest.raises(ValueError, match="path '/") as caught:
            await convoso.post(path, {"x": "1"})
    assert not isinstance(caught.value, ConfigurationError)
    assert repr(path) in str(caught.value)
    assert fake.requests == []


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_plain_paths_still_go_below_the_base_path() -> None:
    fake = FakeConvoso()
    paths = ["/leads/search", "/leads/search/", "/lead-post-validation/insert", "/a.b/..c/x%2Ey"]
    async with serving(fake) as convoso:
        for path in paths:
            with contextlib.suppress(APIError):  # the fake knows none of them: 404
                await convoso.post(path)
    assert [r.path for r in fake.requests] == [unquote(path) for path in paths]


PATH_ALPHABET = list("./\\%2eE5cCfF;a")


@PROPERTY
def _below_x(tail: str) -> str:
    return "/x/" + tail


# A named function, not a lambda: the floors' Hypothesis (6.100) describes a lambda by parsing
# its source line, which failed with SyntaxError on this decorator under Python 3.10.
@given(path=st.text(st.sampled_from(PATH_ALPHABET), max_size=14).map(_below_x))
def test_no_path_that_is_sent_leaves_the_base_path_after_any_decoding(path: str) -> None:
    sent: list[httpx2.URL] = []

    def answer(request: httpx2.Request) -> httpx2.Response:
        sent.append(request.url)
        return httpx2.Response(200, json={"success": True})

    async def send() -> None:
        async with httpx2.AsyncClient(transport=httpx2.MockTransport(answer)) as http:
            client = AsyncConvoso(TOKEN, base_url="http://h.invalid/convoso/v1", http_client=http)
            await client.post(path)

    try:
        anyio.run(send)
    except ValueError as exc:
        refused = str(exc)
    else:
        refused = ""
    event("refused" if refused else "sent")
    if refused:
        assert repr(path) in refused
        return
    [url] = sent
    raw = url.raw_path.decode()
    assert raw.startswith("/convoso/v1/x/")
    decoded = raw
    for _ in range(len(raw)):
        decoded = php_urldecode(decoded.encode()).decode("utf-8", "replace").replace("+", " ")
    for piece in decoded.replace("\\", "/").split("/"):
        assert piece.partition(";")[0] not in (".", ".."), (path, raw)


# -- the base URL's password (finding 6) ------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_the_base_urls_password_is_in_no_repr_and_no_error() -> None:
    fake = FakeConvoso()
    async with fake.serve() as url:
        base = with_password(url)
        async with AsyncConvoso(fake.TOKEN, base_url=base) as convoso:
            assert convoso.base_url == base  # the option as given
            shown = [repr(convoso), repr(convoso.with_options(timeout=5)), repr(convoso._pipeline)]
            with pytest.raises(ValueError, match="repeats the base URL's /v1") as repeated:
                await convoso.post("/v1/leads/search")
        shown.append(str(repeated.value))
    with Convoso(fake.TOKEN, base_url=base) as sync:
        shown.append(repr(sync))
    wrong_port = with_password("http://127.0.0.1:99999/v1")
    for bad in (base.replace("http", "ftp", 1), wrong_port, base + "?x=1"):
        with pytest.raises(ConfigurationError) as refused:
            AsyncConvoso(fake.TOKEN, base_url=bad)
        shown.append(str(refused.value))
    for text in shown:
        assert PASSWORD not in text
    assert "user:***@" in shown[0]
    assert "user:***@" in str(repeated.value)
    assert "port 99999" in shown[-2]


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_network_error_naming_the_url_shows_it_without_the_password() -> None:
    base = with_password("http://127.0.0.1:9/v1")

    def refuse(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError(f"cannot connect to {request.url} (user:{PASSWORD})")

    async with httpx2.AsyncClient(transport=httpx2.MockTransport(refuse)) as http:
        convoso = AsyncConvoso(TOKEN, base_url=base, http_client=http, max_retries=0)
        with pytest.raises(APIConnectionError) as caught:
            await convoso.post("/leads/search")
    assert PASSWORD not in str(caught.value)
    assert "user:***" in str(caught.value)


def test_the_cli_shows_no_password_on_stderr(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], closed_port: int
) -> None:
    monkeypatch.setenv("CONVOSO_AUTH_TOKEN", TOKEN)
    base = with_password(f"http://127.0.0.1:{closed_port}/v1")
    runs = [
        (["--base-url", base, "--max-retries", "0", "campaigns", "list"], 3),
        (["--base-url", base, "api", "/v1/leads/search"], 2),
        (["--base-url", base.replace("http", "ftp", 1), "campaigns", "list"], 2),
        (["--base-url", base.replace(f":{closed_port}", ":99999"), "campaigns", "list"], 2),
    ]
    for argv, code in runs:
        assert main(argv) == code, argv
        err = capsys.readouterr().err
        assert err.startswith("convoso"), err
        assert PASSWORD not in err
        assert "Traceback" not in err


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_url_full_holds_no_credentials() -> None:
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from convoso_async import _telemetry

    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    fake = FakeConvoso(campaign_ids=["111"])
    with _telemetry.use_providers(tracer_provider, MeterProvider()):
        async with fake.serve() as url:
            base = with_password(url)
            async with AsyncConvoso(fake.TOKEN, base_url=base) as convoso:
                await convoso.campaigns.search()
    attempts = [s for s in exporter.get_finished_spans() if s.name == "POST"]
    assert attempts
    for span in attempts:
        full = str((span.attributes or {})["url.full"])
        assert PASSWORD not in full
        assert full == url.replace("://", "://REDACTED:REDACTED@") + "/campaigns/search"
    everything = json.dumps([json.loads(s.to_json()) for s in exporter.get_finished_spans()])
    assert PASSWORD not in everything


# -- success, read strictly (finding 10) ------------------------------------------------------

NOT_BOOLEANS: list[tuple[object, str]] = [
    ("false", '"success": "false" (a string)'),
    ("true", '"success": "true" (a string)'),
    ("", '"success": "" (a string)'),
    (0, '"success": 0 (a number)'),
    (1, '"success": 1 (a number)'),
    (0.0, '"success": 0.0 (a number)'),
    (None, '"success": null'),
    ([], '"success": [] (a list)'),
    ({"ok": True}, '"success": {"ok": true} (an object)'),
]


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_success_that_is_not_a_boolean_is_an_unexpected_response_quoting_it() -> None:
    fake = FakeConvoso()
    answers = iter([{"success": value, "data": {"lead_id": "1"}} for value, _ in NOT_BOOLEANS])
    fake.add_endpoint("/leads/insert", lambda fields: next(answers))
    async with serving(fake) as convoso:
        for value, quoted in NOT_BOOLEANS:
            with pytest.raises(UnexpectedResponseError) as caught:
                await convoso.post("/leads/insert", {"phone_number": "5551234567"})
            error = caught.value
            assert isinstance(error, ResponseDecodeError)
            assert error.value == value
            assert error.path == "success"
            assert str(error).startswith(f"POST /leads/insert: Convoso answered {quoted}, ")
    assert len(fake.requests) == len(NOT_BOOLEANS)  # an unknown outcome is not sent again


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_real_envelopes_still_pass() -> None:
    fake = FakeConvoso(campaign_ids=["111"])
    # The envelopes of the reference set: with success, and the ones without it.
    fake.add_endpoint("/leads/insert", lambda fields: {"success": True, "data": {"lead_id": 7}})
    fake.add_endpoint("/leads/search", lambda fields: {"results": [], "offset": 0, "limit": 10})
    fake.add_endpoint("/status/search", lambda fields: {"data": [{"success": "Y"}]})
    fake.add_endpoint("/leads/delete", lambda fields: {"success": False, "error": "No such lead"})
    async with serving(fake) as convoso:
        assert (await convoso.post("/leads/insert"))["data"] == {"lead_id": 7}
        assert (await convoso.post("/leads/search"))["results"] == []
        assert (await convoso.post("/status/search"))["data"] == [{"success": "Y"}]
        with pytest.raises(APIError, match="No such lead"):
            await convoso.post("/leads/delete")
        await convoso.campaigns.activate("111")
    assert fake.campaign_status("111") == "Y"


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_status_change_answered_with_a_string_success_is_not_counted_done() -> None:
    answers = iter([{"success": "false"}, {"status": "ok"}])

    def answer(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, json=next(answers))

    async with httpx2.AsyncClient(transport=httpx2.MockTransport(answer)) as http:
        convoso = AsyncConvoso(TOKEN, base_url="https://status.invalid/v1", http_client=http)
        result = await convoso.campaigns.set_status_many(["111", "222"], False)
    assert not result.succeeded
    assert {type(e) for e in result.failed.values()} == {UnexpectedResponseError}
    missing = [e for e in result.failed.values() if isinstance(e, UnexpectedResponseError)]
    assert sorted(e.missing for e in missing) == [False, True]
    assert 'no "success"' in str(next(e for e in missing if e.missing))


# -- the cosmetic ones (finding 11) -----------------------------------------------------------


def test_api_usage_marks_only_the_path_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["api"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "the following arguments are required: PATH\n" in err
    assert "PATH [KEY=VALUE ...]" in err


SENDERS = [
    "httpx2",
    pytest.param(
        "aiohttp",
        marks=pytest.mark.skipif(
            importlib.util.find_spec("aiohttp") is None, reason="the aiohttp extra is absent"
        ),
    ),
]


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("transport", SENDERS)
async def test_the_size_limit_error_names_the_endpoints_path(transport: Any) -> None:
    fake = FakeConvoso()
    fake.add_endpoint("/leads/insert", lambda fields: {"success": True, "data": "x" * 500})
    async with serving(fake, max_response_bytes=100, transport=transport) as convoso:
        with pytest.raises(ResponseDecodeError) as caught:
            await convoso.post("/leads/insert")
    assert str(caught.value).startswith("POST /leads/insert: the answer is larger than ")
    assert "/v1/" not in str(caught.value)
