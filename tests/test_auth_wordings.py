"""Every way Convoso is known to word a rejected token or missing rights, and a wrong base URL.

Sources of the wordings: the Campaigns API reference ("Invalid authentication
token", "Insufficient permissions"), issue 14 (``"text": "Auth token is
invalid"``), the public convoso-js client's docs ("Missing authentication
token", "Invalid or expired authentication token", "Insufficient permissions
for this operation"), Convoso's API glossary (401 "missing or invalid token",
403 "token is invalid for the office", which also arrive as body codes), and
the generic forms other APIs use for the same thing.
"""

from __future__ import annotations

import httpx
import pytest
import respx
from mocked_api import BASE_URL, TOKEN

from convoso_async import (
    APIError,
    APIStatusError,
    AsyncConvoso,
    AuthenticationError,
    CampaignNotFoundError,
    PermissionDeniedError,
)
from convoso_async.cli import main
from convoso_async.testing import FakeConvoso

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("instant_retries")]

AUTH_WORDINGS = [
    ("error", "Invalid authentication token"),
    ("text", "Auth token is invalid"),
    ("error", "Missing authentication token"),
    ("error", "Invalid or expired authentication token"),
    ("message", "Authentication failed"),
    ("text", "Invalid auth token"),
    ("text", "No auth token provided"),
    ("error", "auth_token is required"),
    ("error", "Invalid token"),
    ("error", "Token expired"),
    ("message", "Unauthorized"),
    ("message", "Invalid API key"),
]
PERMISSION_WORDINGS = [
    ("error", "Insufficient permissions"),
    ("error", "Insufficient permissions for this operation"),
    ("text", "Forbidden"),
    ("text", "Insufficient permissions for this auth token"),
]


@pytest.mark.parametrize(("field", "wording"), AUTH_WORDINGS)
async def test_each_wording_of_a_rejected_token_is_an_authentication_error(
    field: str, wording: str, convoso: AsyncConvoso, api: respx.MockRouter
) -> None:
    route = api.post("/campaigns/search").respond(json={"success": False, field: wording})
    with pytest.raises(AuthenticationError) as caught:
        await convoso.campaigns.search()
    assert caught.value.message == wording
    assert "check the auth token" in str(caught.value)
    assert route.call_count == 1  # never retried


@pytest.mark.parametrize(("field", "wording"), PERMISSION_WORDINGS)
async def test_each_wording_of_missing_rights_is_a_permission_error(
    field: str, wording: str, convoso: AsyncConvoso, api: respx.MockRouter
) -> None:
    api.post("/campaigns/status").respond(json={"success": False, field: wording})
    with pytest.raises(PermissionDeniedError) as caught:
        await convoso.campaigns.activate("111")
    assert type(caught.value) is PermissionDeniedError


@pytest.mark.parametrize(
    ("code", "error_type"), [(401, AuthenticationError), (403, PermissionDeniedError)]
)
async def test_401_and_403_as_body_codes_are_classified_whatever_the_text(
    code: int, error_type: type[APIError], convoso: AsyncConvoso, api: respx.MockRouter
) -> None:
    api.post("/campaigns/search").respond(json={"success": False, "code": code, "text": "Nope"})
    with pytest.raises(error_type) as caught:
        await convoso.campaigns.search()
    assert caught.value.code == code


async def test_a_known_wording_wins_over_an_unknown_code(
    convoso: AsyncConvoso, api: respx.MockRouter
) -> None:
    api.post("/campaigns/search").respond(
        json={"success": False, "code": 7777, "text": "Auth token is invalid"}
    )
    with pytest.raises(AuthenticationError):
        await convoso.campaigns.search()


@pytest.mark.parametrize("wording", ["Unknown Campaign ID", "No such campaign"])
async def test_more_wordings_of_an_unknown_campaign(
    wording: str, convoso: AsyncConvoso, api: respx.MockRouter
) -> None:
    api.post("/campaigns/status").respond(json={"success": False, "error": wording})
    with pytest.raises(CampaignNotFoundError):
        await convoso.campaigns.activate("9")


async def test_unrelated_wordings_stay_plain_api_errors(
    convoso: AsyncConvoso, api: respx.MockRouter
) -> None:
    api.post("/campaigns/search").respond(json={"success": False, "text": "Method not allowed"})
    with pytest.raises(APIError) as caught:
        await convoso.campaigns.search()
    assert type(caught.value) is APIError


# -- a base URL without /v1 -------------------------------------------------------------------


async def test_a_base_url_without_v1_gets_a_hint_from_the_fake(anyio_backend: str) -> None:
    fake = FakeConvoso(campaign_ids=["111"])
    async with fake.serve() as url:
        root = url.removesuffix("/v1")
        async with AsyncConvoso(fake.TOKEN, base_url=root, max_retries=0) as convoso:
            with pytest.raises(APIError) as caught:
                await convoso.campaigns.search()
        async with AsyncConvoso(fake.TOKEN, base_url=url) as convoso:
            assert [c.id for c in await convoso.campaigns.search()] == ["111"]
    assert type(caught.value) is APIError
    assert caught.value.status_code == 404
    assert "did you forget /v1?" in str(caught.value)
    assert [r.status for r in fake.requests] == [404, 200]


async def test_an_html_404_gets_the_same_hint() -> None:
    root = "https://api.test.invalid"
    with respx.mock(base_url=root, using="httpx") as api:
        api.post("/campaigns/search").respond(404, html="<h1>Not Found</h1>")
        async with httpx.AsyncClient() as http:
            convoso = AsyncConvoso(TOKEN, base_url=root, http_client=http)
            with pytest.raises(APIStatusError) as caught:
                await convoso.campaigns.search()
    assert str(caught.value).startswith("POST /campaigns/search answered HTTP 404: ")
    assert "check it (Convoso's is https://api.convoso.com/v1: did you forget /v1?)" in str(
        caught.value
    )


async def test_a_404_under_a_base_url_with_v1_blames_the_path_not_the_base(
    convoso: AsyncConvoso, api: respx.MockRouter
) -> None:
    api.post("/leads/serch").respond(404, html="<h1>Not Found</h1>")
    api.post("/leads/searhc").respond(404, json={"success": False, "error": "Not found"})
    for path, error in (("/leads/serch", APIStatusError), ("/leads/searhc", APIError)):
        with pytest.raises(error) as caught:
            await convoso.post(path)
        assert "forget /v1" not in str(caught.value)
        assert f"no API answers at {path} under {BASE_URL}; check the endpoint's path" in str(
            caught.value
        )


def test_the_cli_shows_the_hint_and_exits_3(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeConvoso()
    monkeypatch.setenv("CONVOSO_AUTH_TOKEN", fake.TOKEN)
    with fake.serve_in_thread() as url:
        code = main(["--base-url", url.removesuffix("/v1"), "campaigns", "list"])
    assert code == 3
    assert "did you forget /v1?" in capsys.readouterr().err
