"""AsyncConvoso's configuration, lifecycle, copies, and input validation."""

from __future__ import annotations

import inspect
import typing
from typing import Any

import httpx
import httpx2
import pytest
import respx

import convoso_async
from convoso_async import (
    APIConnectionError,
    AsyncConvoso,
    CircuitBreaker,
    ConfigurationError,
    Limiter,
    ResponseDecodeError,
)
from convoso_async._checks import check_token
from convoso_async._client import NOT_GIVEN, NotGiven
from convoso_async._defaults import DEFAULT_BASE_URL
from convoso_async._http.httpx_sender import HttpxSender

BASE = "https://api.test.invalid/v1"


def test_token_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVOSO_AUTH_TOKEN", "env-token")
    monkeypatch.delenv("CONVOSO_BASE_URL", raising=False)
    client = AsyncConvoso()
    assert client.base_url == DEFAULT_BASE_URL


def test_missing_token_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONVOSO_AUTH_TOKEN", raising=False)
    with pytest.raises(ConfigurationError, match="CONVOSO_AUTH_TOKEN"):
        AsyncConvoso()
    with pytest.raises(ConfigurationError, match="CONVOSO_AUTH_TOKEN"):
        AsyncConvoso("   ")


def test_a_token_from_a_file_with_a_byte_order_mark_is_sent_without_it() -> None:
    # An editor's BOM at the start (Python's strip() keeps it) is never part of a token.
    assert check_token("\ufeff tok-123\r\n") == "tok-123"


@pytest.mark.parametrize("bad", ["Sekrit\u200b1", "Sekrit\ufeff1", "Sekrit\x001", "Sekrit\ud800"])
def test_an_invisible_or_control_character_in_the_token_is_refused_unnamed(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="control or invisible character") as caught:
        check_token(bad)
    assert "Sekrit" not in str(caught.value)


def test_base_url_from_argument_then_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVOSO_BASE_URL", "http://127.0.0.1:9/v1/")
    assert AsyncConvoso("t").base_url == "http://127.0.0.1:9/v1"
    assert AsyncConvoso("t", base_url=BASE).base_url == BASE


@pytest.mark.parametrize(
    "options",
    [
        {"timeout": 0},
        {"timeout": -1.0},
        {"timeout": float("nan")},
        {"timeout": "30"},
        {"max_retries": -1},
        {"max_retries": 1.5},
        {"max_retries": True},
        {"max_concurrency": 0},
        {"rate_limit": 0},
        {"rate_limit": "fast"},
        {"rate_limit": True},
        {"base_url": "ftp://example.com"},
        {"base_url": "api.convoso.com/v1"},
        {"base_url": "https://api.convoso.com/v1?auth_token=x"},
        {"http_client": object()},
    ],
)
def test_bad_options_are_refused_at_construction(options: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        AsyncConvoso("t", **options)  # type: ignore[arg-type]


def test_repr_shows_options_but_not_the_token() -> None:
    client = AsyncConvoso("very-secret-token", base_url=BASE, rate_limit=5)
    text = repr(client)
    assert "very-secret-token" not in text
    assert "Limiter(rate=5" in text
    assert BASE in text


@pytest.mark.anyio
async def test_with_options_shares_pool_limiter_and_pause(api: respx.MockRouter) -> None:
    api.post("/campaigns/status").respond(json={"success": True})
    async with httpx.AsyncClient() as http:
        client = AsyncConvoso("t", base_url=BASE, http_client=http, rate_limit=100)
        copy = client.with_options(timeout=5, max_retries=0, max_concurrency=3)
        assert (copy.timeout, copy.max_retries, copy.max_concurrency) == (5.0, 0, 3)
        assert (client.timeout, client.max_retries, client.max_concurrency) == (30.0, 3, 8)
        assert copy.rate_limiter is client.rate_limiter
        assert copy._pool is client._pool
        assert copy._pipeline.pause is client._pipeline.pause
        other = client.with_options(rate_limit=Limiter(7))
        assert other.rate_limiter is not client.rate_limiter
        assert other._pipeline.pause is client._pipeline.pause
        await copy.campaigns.activate("1")
        await copy.aclose()  # a copy does not close the shared pool
        await client.campaigns.activate("2")
        assert api.calls.call_count == 2


#: Constructor options a copy sharing the pool cannot change, and why: they make the pool.
POOL_OPTIONS = {"auth_token", "base_url", "http_client", "transport"}


def test_with_options_takes_every_option_a_copy_sharing_the_pool_can_change() -> None:
    init = inspect.signature(AsyncConvoso.__init__).parameters
    copy = inspect.signature(AsyncConvoso.with_options).parameters
    assert set(copy) == set(init) - POOL_OPTIONS
    hints = typing.get_type_hints(AsyncConvoso.__init__)
    copy_hints = typing.get_type_hints(AsyncConvoso.with_options)
    for name in set(copy) - {"self"}:
        assert copy[name].kind is inspect.Parameter.KEYWORD_ONLY, name
        assert copy[name].default is NOT_GIVEN, name
        # The same types as the constructor's, and "not given".
        assert copy_hints[name] == hints[name] | NotGiven, name


def test_with_options_none_clears_the_limiter_and_false_the_guards() -> None:
    client = AsyncConvoso("t", base_url=BASE, rate_limit=5)
    bare = client.with_options(rate_limit=None, retry_budget=False, circuit_breaker=False)
    assert bare.rate_limiter is None
    assert bare.retry_budget is None
    assert bare.circuit_breaker is None
    assert client.rate_limiter is not None  # the original keeps its own
    assert client.retry_budget is not None
    assert client.circuit_breaker is not None


def test_with_options_shares_the_guards_unless_given_and_checks_as_the_constructor() -> None:
    client = AsyncConvoso("t", base_url=BASE)
    copy = client.with_options(timeout=5)
    assert copy.retry_budget is client.retry_budget
    assert copy.circuit_breaker is client.circuit_breaker
    own = CircuitBreaker(failure_threshold=3)
    tuned = client.with_options(circuit_breaker=own, max_response_bytes=1024)
    assert tuned.circuit_breaker is own
    assert tuned.retry_budget is client.retry_budget  # not given: still shared
    assert (tuned.max_response_bytes, client.max_response_bytes) == (1024, 64 * 1024 * 1024)
    bads: list[dict[str, Any]] = [
        {"timeout": 0},
        {"max_retries": 101},
        {"max_concurrency": 0},
        {"rate_limit": "fast"},
        {"retry_budget": 10},
        {"circuit_breaker": "yes"},
        {"max_response_bytes": 0},
    ]
    for bad in bads:
        with pytest.raises(ConfigurationError):
            client.with_options(**bad)
        with pytest.raises(ConfigurationError):
            AsyncConvoso("t", base_url=BASE, **bad)


@pytest.mark.anyio
async def test_a_copys_max_response_bytes_caps_its_answers_only(api: respx.MockRouter) -> None:
    api.post("/campaigns/search").respond(json={"data": [], "padding": "x" * 4000})
    async with httpx.AsyncClient() as http:
        client = AsyncConvoso("t", base_url=BASE, http_client=http)
        assert await client.campaigns.search() == []
        with pytest.raises(ResponseDecodeError, match="max_response_bytes"):
            await client.with_options(max_response_bytes=1000).campaigns.search()
        assert await client.campaigns.search() == []


@pytest.mark.anyio
async def test_caller_owned_http_client_is_never_closed(api: respx.MockRouter) -> None:
    api.post("/campaigns/status").respond(json={"success": True})
    async with httpx.AsyncClient() as http:
        async with AsyncConvoso("t", base_url=BASE, http_client=http) as client:
            await client.campaigns.activate("1")
        assert not http.is_closed
        with pytest.raises(ConfigurationError, match="closed"):
            await client.campaigns.activate("1")


@pytest.mark.anyio
async def test_own_http_client_is_closed_on_exit(api: respx.MockRouter) -> None:
    client = AsyncConvoso("t", base_url=BASE)
    sender = client._pool.sender()
    assert isinstance(sender, HttpxSender)
    await client.aclose()
    assert sender.client.is_closed


@pytest.mark.anyio
async def test_the_default_client_is_a_stock_httpx2_client_sized_by_max_concurrency(
    anyio_backend: str,
) -> None:
    client = AsyncConvoso("t", base_url=BASE, max_concurrency=13)
    sender = client._pool.sender()
    assert isinstance(sender, HttpxSender)
    assert type(sender.client) is httpx2.AsyncClient
    transport = sender.client._transport
    assert type(transport) is httpx2.AsyncHTTPTransport
    assert transport._pool._max_connections == 13
    assert transport._pool._max_keepalive_connections == 13
    await client.aclose()


@pytest.mark.anyio
async def test_the_aiohttp_opt_in_sends_on_asyncio_and_steps_aside_to_httpx2_on_trio(
    anyio_backend: str,
) -> None:
    pytest.importorskip("aiohttp")
    from convoso_async._http.aiohttp_sender import AiohttpSender

    client = AsyncConvoso("t", base_url=BASE, max_concurrency=13, transport="aiohttp")
    sender = client._pool.sender()
    if anyio_backend == "asyncio":
        assert isinstance(sender, AiohttpSender)
        assert sender.size == 13
    else:
        assert isinstance(sender, HttpxSender)
        assert type(sender.client._transport) is httpx2.AsyncHTTPTransport
    await client.aclose()


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_the_aiohttp_opt_in_steps_aside_to_httpx2_when_a_proxy_variable_is_set(
    anyio_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # httpx2 decides what a proxy variable means (NO_PROXY included); aiohttp never reads one.
    pytest.importorskip("aiohttp")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    client = AsyncConvoso("t", base_url=BASE, transport="aiohttp")
    sender = client._pool.sender()
    assert isinstance(sender, HttpxSender)
    assert sender.family.name == "httpx2"
    await client.aclose()


BAD_ACTIVE = ["false", "true", 0, 1, None, 1.0, "Y"]
BAD_IDS = [None, True, False, "", "   ", 1.5, b"111", ["111"], {"id": "1"}]


@pytest.mark.anyio
@pytest.mark.parametrize("active", BAD_ACTIVE)
async def test_non_bool_active_is_refused_before_sending(
    convoso: AsyncConvoso, api: respx.MockRouter, active: object
) -> None:
    with pytest.raises(TypeError, match="active must be True or False"):
        await convoso.campaigns.set_status("111", active)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        await convoso.campaigns.set_status_many(["111"], active)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        await convoso.campaigns.apply_statuses({"111": active})  # type: ignore[arg-type]
    assert api.calls.call_count == 0


@pytest.mark.anyio
@pytest.mark.parametrize("campaign_id", BAD_IDS)
async def test_bad_campaign_id_is_refused_before_sending(
    convoso: AsyncConvoso, api: respx.MockRouter, campaign_id: object
) -> None:
    with pytest.raises((TypeError, ValueError)):
        await convoso.campaigns.activate(campaign_id)  # type: ignore[arg-type]
    with pytest.raises((TypeError, ValueError)):
        await convoso.campaigns.set_status_many(["1", "2", campaign_id], True)  # type: ignore[list-item]
    assert api.calls.call_count == 0


@pytest.mark.anyio
async def test_a_single_string_is_not_taken_for_a_list_of_ids(
    convoso: AsyncConvoso, api: respx.MockRouter
) -> None:
    with pytest.raises(TypeError, match="not a single string"):
        await convoso.campaigns.set_status_many("111", True)
    assert api.calls.call_count == 0


@pytest.mark.anyio
async def test_int_id_is_sent_as_its_digits_and_status_as_lowercase(
    convoso: AsyncConvoso, api: respx.MockRouter
) -> None:
    route = api.post("/campaigns/status").respond(json={"success": True})
    await convoso.campaigns.set_status(111, False)
    await convoso.campaigns.activate("222")
    sent = [call.request for call in route.calls]
    assert sent[0].content == b"auth_token=tok-SECRET-5f1e2d3c4b&campaign_id=111&status=false"
    assert sent[1].content.endswith(b"campaign_id=222&status=true")
    for request in sent:
        assert request.method == "POST"
        assert request.headers["content-type"] == "application/x-www-form-urlencoded"
        assert request.url.query == b""


@pytest.mark.anyio
async def test_spaces_around_ids_are_dropped_so_duplicates_collapse(
    convoso: AsyncConvoso, api: respx.MockRouter
) -> None:
    route = api.post("/campaigns/status").respond(json={"success": True})
    result = await convoso.campaigns.set_status_many([" 5", "5 ", 5], True)
    assert result.succeeded == ("5",)
    assert route.call_count == 1
    assert route.calls.last.request.content.endswith(b"campaign_id=5&status=true")


@pytest.mark.anyio
async def test_a_raising_on_progress_never_aborts_the_batch(
    convoso: AsyncConvoso, api: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    api.post("/campaigns/status").respond(json={"success": True})
    calls = 0

    def broken(_: object) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("display went away")

    result = await convoso.campaigns.set_status_many(
        [str(i) for i in range(20)], True, on_progress=broken
    )
    assert len(result.succeeded) == 20
    assert calls == 1  # reported once, then switched off
    assert "on_progress raised" in caplog.text


@pytest.mark.anyio
async def test_connection_refused_is_a_connection_error_not_a_timeout(anyio_backend: str) -> None:
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = AsyncConvoso("t", base_url=f"http://127.0.0.1:{port}/v1", max_retries=1)
    try:
        with convoso_async.set_testing(), pytest.raises(APIConnectionError) as caught:
            await client.campaigns.search()
    finally:
        await client.aclose()
    assert type(caught.value) is APIConnectionError
