"""Every branch of the answer -> error mapping, and which of them are retried."""

from __future__ import annotations

import httpx
import pytest
import respx

from convoso_async import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AsyncConvoso,
    AuthenticationError,
    CampaignNotFoundError,
    ConvosoError,
    InvalidStatusError,
    PermissionDeniedError,
    RateLimitError,
    ResponseDecodeError,
    ServerError,
)

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("instant_retries")]


@pytest.mark.parametrize(
    ("body", "status", "error_type", "code"),
    [
        (
            {"success": False, "error": "Invalid campaign ID", "code": 6026},
            200,
            CampaignNotFoundError,
            6026,
        ),
        ({"success": False, "error": "Campaign not found"}, 200, CampaignNotFoundError, None),
        ({"success": False, "error": "Bad", "code": "6080"}, 200, InvalidStatusError, 6080),
        (
            {"success": False, "error": "Status must be true or false"},
            200,
            InvalidStatusError,
            None,
        ),
        (
            {"success": False, "error": "Invalid authentication token"},
            200,
            AuthenticationError,
            None,
        ),
        ({"success": False, "error": "Insufficient permissions"}, 200, PermissionDeniedError, None),
        ({"success": False, "text": "Something odd", "code": 7001}, 200, APIError, 7001),
        ({"success": False, "message": "Nope"}, 400, APIError, None),
        ({"success": False, "error": "who knows"}, 401, AuthenticationError, None),
        ({"success": False, "error": "who knows"}, 403, PermissionDeniedError, None),
    ],
)
async def test_success_false_is_an_api_error_whatever_the_status_and_is_not_retried(
    convoso: AsyncConvoso,
    api: respx.MockRouter,
    body: dict[str, object],
    status: int,
    error_type: type[APIError],
    code: int | None,
) -> None:
    route = api.post("/campaigns/status").respond(status, json=body)
    with pytest.raises(error_type) as caught:
        await convoso.campaigns.activate("111")
    assert type(caught.value) is error_type
    assert caught.value.code == code
    assert caught.value.status_code == status
    assert caught.value.campaign_id == "111"
    assert route.call_count == 1


async def test_not_found_message_names_campaign_and_code(
    convoso: AsyncConvoso, api: respx.MockRouter
) -> None:
    api.post("/campaigns/status").respond(json={"success": False, "error": "x", "code": 6026})
    with pytest.raises(CampaignNotFoundError) as caught:
        await convoso.campaigns.deactivate("404")
    assert str(caught.value) == "campaign '404' does not exist (Convoso code 6026)"


async def test_message_is_read_from_error_text_or_message(
    convoso: AsyncConvoso, api: respx.MockRouter
) -> None:
    for field in ("error", "text", "message"):
        api.post("/campaigns/status").respond(json={"success": False, field: f"from {field}"})
        with pytest.raises(APIError) as caught:
            await convoso.campaigns.activate("1")
        assert caught.value.message == f"from {field}"


@pytest.mark.parametrize(
    ("status", "error_type"), [(401, AuthenticationError), (403, PermissionDeniedError)]
)
async def test_401_and_403_without_body_map_to_auth_errors(
    convoso: AsyncConvoso, api: respx.MockRouter, status: int, error_type: type[APIError]
) -> None:
    route = api.post("/campaigns/search").respond(status, text="denied")
    with pytest.raises(error_type):
        await convoso.campaigns.search()
    assert route.call_count == 1


async def test_other_4xx_is_a_status_error_and_not_retried(
    convoso: AsyncConvoso, api: respx.MockRouter
) -> None:
    route = api.post("/campaigns/search").respond(404, html="<h1>Not Found</h1>")
    with pytest.raises(APIStatusError) as caught:
        await convoso.campaigns.search()
    assert type(caught.value) is APIStatusError
    assert caught.value.status_code == 404
    assert "POST /campaigns/search answered HTTP 404" in str(caught.value)
    assert route.call_count == 1


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_5xx_is_retried_then_raised_as_server_error(
    convoso: AsyncConvoso, api: respx.MockRouter, status: int
) -> None:
    route = api.post("/campaigns/status").respond(status, text="bad gateway")
    with pytest.raises(ServerError) as caught:
        await convoso.campaigns.activate("7")
    assert caught.value.status_code == status
    assert route.call_count == 1 + convoso.max_retries


async def test_501_is_a_server_error_but_not_retried(
    convoso: AsyncConvoso, api: respx.MockRouter
) -> None:
    route = api.post("/campaigns/status").respond(501)
    with pytest.raises(ServerError):
        await convoso.campaigns.activate("7")
    assert route.call_count == 1


async def test_429_wins_over_a_success_false_body_and_is_retried(
    convoso: AsyncConvoso, api: respx.MockRouter
) -> None:
    route = api.post("/campaigns/status").respond(
        429, json={"success": False, "error": "slow down"}, headers={"Retry-After": "2"}
    )
    with pytest.raises(RateLimitError) as caught:
        await convoso.campaigns.activate("7")
    assert caught.value.retry_after == 2.0
    assert route.call_count == 1 + convoso.max_retries


async def test_retry_then_success_returns_normally(
    convoso: AsyncConvoso, api: respx.MockRouter
) -> None:
    route = api.post("/campaigns/status")
    route.side_effect = [
        httpx.Response(503),
        httpx.ConnectError("refused"),
        httpx.Response(200, json={"success": True}),
    ]
    await convoso.campaigns.activate("7")
    assert route.call_count == 3


async def test_max_retries_zero_sends_once(convoso: AsyncConvoso, api: respx.MockRouter) -> None:
    route = api.post("/campaigns/status").respond(503)
    with pytest.raises(ServerError):
        await convoso.with_options(max_retries=0).campaigns.activate("7")
    assert route.call_count == 1


async def test_connection_failure_after_retries_is_api_connection_error(
    convoso: AsyncConvoso, api: respx.MockRouter
) -> None:
    route = api.post("/campaigns/status").mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(APIConnectionError) as caught:
        await convoso.campaigns.activate("9")
    assert type(caught.value) is APIConnectionError
    assert "campaign '9'" in str(caught.value)
    assert route.call_count == 4


async def test_timeout_after_retries_is_api_timeout_error(
    convoso: AsyncConvoso, api: respx.MockRouter
) -> None:
    route = api.post("/campaigns/search").mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(APITimeoutError):
        await convoso.campaigns.search()
    assert route.call_count == 4


@pytest.mark.parametrize(
    ("status", "content", "headers"),
    [
        (200, b"<html>oops</html>", {"content-type": "text/html"}),
        (200, b"", {}),
        (200, b"\xff\xfe\x00", {}),
        (200, b"[1, 2]", {"content-type": "application/json"}),
    ],
)
async def test_non_json_or_non_object_body_is_a_decode_error(
    convoso: AsyncConvoso,
    api: respx.MockRouter,
    status: int,
    content: bytes,
    headers: dict[str, str],
) -> None:
    route = api.post("/campaigns/status").respond(status, content=content, headers=headers)
    with pytest.raises(ResponseDecodeError):
        await convoso.campaigns.activate("1")
    assert route.call_count == 1


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({}, "data"),
        ({"data": {"id": "1"}}, "data"),
        ({"data": [{"id": "1", "name": "A", "status": "Q"}]}, "data[0].status"),
        (
            {"data": [{"id": "1", "name": "A", "status": "Y"}, {"id": "2", "status": "N"}]},
            "data[1].name",
        ),
        ({"data": [{"id": "1", "name": ["A"], "status": "Y"}]}, "data[0].name"),
    ],
)
async def test_wrong_search_shape_names_the_field(
    convoso: AsyncConvoso, api: respx.MockRouter, body: dict[str, object], path: str
) -> None:
    api.post("/campaigns/search").respond(json=body)
    with pytest.raises(ResponseDecodeError) as caught:
        await convoso.campaigns.search()
    assert caught.value.path == path
    assert path in str(caught.value)


@pytest.mark.parametrize("body", [{}, {"success": "yes"}, {"status": "ok"}])
async def test_status_answer_without_success_true_is_a_decode_error(
    convoso: AsyncConvoso, api: respx.MockRouter, body: dict[str, object]
) -> None:
    api.post("/campaigns/status").respond(json=body)
    with pytest.raises(ResponseDecodeError):
        await convoso.campaigns.activate("1")


async def test_every_error_is_a_convoso_error(convoso: AsyncConvoso, api: respx.MockRouter) -> None:
    api.post("/campaigns/status").mock(side_effect=httpx.RemoteProtocolError("peer closed"))
    with pytest.raises(ConvosoError):
        await convoso.campaigns.activate("1")
