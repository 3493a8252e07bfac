"""Mocking tools intercept the client, written the way their docs show; none lets a request escape.

``base_url`` points at a real listening socket that counts connections: a
request that escaped the mock would reach it, and each test asserts it saw
none. On asyncio and trio, with the default client (stock httpx2) and the
aiohttp opt-in.

- httpx2's tools (pytest-httpx2's ``httpx2_mock``, respx on httpcore2,
  ``unittest.mock`` on ``httpx2.AsyncClient``) intercept by construction.
- The old httpx's tools (``with respx.mock:``, ``respx.mock(using="httpx")``,
  pytest-httpx's ``httpx_mock``, ``unittest.mock`` on ``httpx.AsyncClient``)
  patch a family the client does not send through: while one is active, the
  client's requests go through a stock ``httpx.AsyncClient``, so the mock
  answers them (fail safe, never silent).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any
from unittest.mock import AsyncMock, patch

import httpx
import httpx2
import pytest
import respx
from pytest_httpx import HTTPXMock

from convoso_async import AsyncConvoso, CampaignNotFoundError
from convoso_async._http import families
from convoso_async._http.families import HTTPX2

pytestmark = pytest.mark.anyio

TOKEN = "tok-MOCKED-1a2b3c4d5e"
ANSWER = {"data": [{"id": "111", "name": "Sales", "status": "Y", "last_call_date": None}]}


class Tripwire:
    """A listening loopback socket that counts the connections it accepts."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


@pytest.fixture
def tripwire() -> Iterator[Tripwire]:
    wire = Tripwire()
    yield wire
    assert wire.connections == 0, "a request escaped the mock and reached the network"
    wire.listener.close()


@pytest.fixture(params=["httpx2", "aiohttp"])
def transport(request: pytest.FixtureRequest) -> str:
    """The client's own pool: stock httpx2 (the default), or the aiohttp opt-in."""
    if request.param == "aiohttp":
        pytest.importorskip("aiohttp")
    return str(request.param)


def client(tripwire: Tripwire, transport: str, **options: Any) -> AsyncConvoso:
    return AsyncConvoso(TOKEN, base_url=tripwire.url, transport=transport, **options)  # type: ignore[arg-type]


async def test_tripwire_counts_a_request_that_is_not_mocked(
    tripwire: Tripwire, transport: str
) -> None:
    # The guard itself works: an unmocked client does reach it.
    async with client(tripwire, transport, max_retries=0) as convoso:
        with pytest.raises(Exception):  # noqa: B017, PT011 - the socket just hangs up
            await convoso.campaigns.search()
    assert tripwire.connections >= 1
    tripwire.connections = 0


def sent_request(call: Any) -> Any:
    """The request a mocked ``AsyncClient.send`` was called with."""
    return call.kwargs["request"] if "request" in call.kwargs else call.args[0]


# -- httpx2's own tools --------------------------------------------------------------------------


async def test_pytest_httpx2_fixture(
    tripwire: Tripwire, transport: str, httpx2_mock: respx.Router
) -> None:
    route = httpx2_mock.post(f"{tripwire.url}/campaigns/search").respond(200, json=ANSWER)
    async with client(tripwire, transport) as convoso:
        assert [c.id for c in await convoso.campaigns.search()] == ["111"]
        assert len(await convoso.campaigns.search()) == 1
    assert route.call_count == 2
    request = route.calls.last.request
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.headers["user-agent"] == HTTPX2.user_agent
    assert b"auth_token=" + TOKEN.encode() in request.content


@pytest.mark.httpx2(assert_all_called=True)
async def test_pytest_httpx2_marker_and_a_fatal_answer(
    tripwire: Tripwire, transport: str, httpx2_mock: respx.Router
) -> None:
    httpx2_mock.post(f"{tripwire.url}/campaigns/status").respond(
        200, json={"success": False, "code": 6026, "error": "Campaign not found"}
    )
    async with client(tripwire, transport) as convoso:
        with pytest.raises(CampaignNotFoundError):
            await convoso.campaigns.activate("404")


async def test_respx_on_httpcore2(tripwire: Tripwire, transport: str) -> None:
    with respx.mock(base_url=tripwire.url, using="httpcore2") as router:
        router.post("/campaigns/status").respond(200, json={"success": True})
        async with client(tripwire, transport) as convoso:
            result = await convoso.campaigns.set_status_many(["1", "2", "3"], False)
        assert router.calls.call_count == 3  # (respx forgets its calls on leaving the block)
    assert sorted(result.succeeded) == ["1", "2", "3"]


async def test_unittest_mock_patch_of_httpx2_async_client_send(
    tripwire: Tripwire, transport: str
) -> None:
    sent = AsyncMock(return_value=httpx2.Response(200, json=ANSWER))
    with patch("httpx2.AsyncClient.send", sent):
        async with client(tripwire, transport) as convoso:
            assert len(await convoso.campaigns.search()) == 1
    [request] = [sent_request(call) for call in sent.await_args_list]
    assert request.url == f"{tripwire.url}/campaigns/search"


# -- the old httpx's tools: fail safe, through a stock httpx client -----------------------------


async def test_respx_mock_context_manager_of_old_httpx(tripwire: Tripwire, transport: str) -> None:
    with respx.mock:
        route = respx.post(f"{tripwire.url}/campaigns/search").mock(
            return_value=httpx.Response(200, json=ANSWER)
        )
        async with client(tripwire, transport) as convoso:
            campaigns = await convoso.campaigns.search()
    assert [c.id for c in campaigns] == ["111"]
    assert route.call_count == 1
    assert b"auth_token=" + TOKEN.encode() in route.calls.last.request.content


@respx.mock
async def test_respx_mock_decorator_of_old_httpx(tripwire: Tripwire, transport: str) -> None:
    route = respx.post(f"{tripwire.url}/campaigns/status").mock(
        return_value=httpx.Response(200, json={"success": False, "code": 6026, "error": "x"})
    )
    async with client(tripwire, transport) as convoso:
        with pytest.raises(CampaignNotFoundError):
            await convoso.campaigns.activate("404")
    assert route.call_count == 1


async def test_respx_mock_using_old_httpx(tripwire: Tripwire, transport: str) -> None:
    async with respx.mock(base_url=tripwire.url, using="httpx") as router:
        route = router.post("/campaigns/search").respond(200, json=ANSWER)
        async with client(tripwire, transport) as convoso:
            assert len(await convoso.campaigns.search()) == 1
    assert route.called


async def test_pytest_httpx_fixture_of_old_httpx(
    tripwire: Tripwire, transport: str, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(
        method="POST", url=f"{tripwire.url}/campaigns/search", json=ANSWER, is_reusable=True
    )
    async with client(tripwire, transport) as convoso:
        assert len(await convoso.campaigns.search()) == 1
        assert len(await convoso.campaigns.search()) == 1
    [first, second] = httpx_mock.get_requests()
    assert first.headers["content-type"] == "application/x-www-form-urlencoded"
    # The stock client the request went through says so in its user agent.
    assert second.headers["user-agent"].endswith(f" httpx/{httpx.__version__}")


async def test_unittest_mock_patch_of_old_httpx_async_client_send(
    tripwire: Tripwire, transport: str
) -> None:
    sent = AsyncMock(return_value=httpx.Response(200, json=ANSWER))
    with patch("httpx.AsyncClient.send", sent):
        async with client(tripwire, transport) as convoso:
            assert len(await convoso.campaigns.search()) == 1
    [request] = [sent_request(call) for call in sent.await_args_list]
    assert request.url == f"{tripwire.url}/campaigns/search"


async def test_an_unmatched_request_under_an_old_httpx_mock_fails_without_reaching_the_network(
    tripwire: Tripwire, transport: str
) -> None:
    with respx.mock(assert_all_called=False) as router:
        router.post("https://elsewhere.invalid/").respond(200)
        async with client(tripwire, transport, max_retries=0) as convoso:
            with pytest.raises(AssertionError, match="not mocked"):
                await convoso.campaigns.search()


async def test_the_client_sends_itself_again_once_the_mock_is_gone(
    tripwire: Tripwire, transport: str
) -> None:
    async with client(tripwire, transport, max_retries=0) as convoso:
        with respx.mock:
            respx.post(f"{tripwire.url}/campaigns/search").respond(200, json=ANSWER)
            assert len(await convoso.campaigns.search()) == 1
        assert tripwire.connections == 0
        with pytest.raises(Exception):  # noqa: B017, PT011 - unmocked now: it reaches the socket
            await convoso.campaigns.search()
    assert tripwire.connections >= 1
    tripwire.connections = 0


# -- a caller's own client: its family's tools --------------------------------------------------


async def test_respx_and_pytest_httpx_on_a_callers_old_httpx_client(
    tripwire: Tripwire, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(method="POST", url=f"{tripwire.url}/campaigns/search", json=ANSWER)
    async with (
        httpx.AsyncClient() as http,
        AsyncConvoso(TOKEN, base_url=tripwire.url, http_client=http) as convoso,
    ):
        assert len(await convoso.campaigns.search()) == 1
    assert len(httpx_mock.get_requests()) == 1


async def test_httpx2_mock_on_a_callers_httpx2_client(
    tripwire: Tripwire, httpx2_mock: respx.Router
) -> None:
    route = httpx2_mock.post(f"{tripwire.url}/campaigns/search").respond(200, json=ANSWER)
    async with (
        httpx2.AsyncClient(headers={"user-agent": "mine/1"}) as http,
        AsyncConvoso(TOKEN, base_url=tripwire.url, http_client=http) as convoso,
    ):
        assert len(await convoso.campaigns.search()) == 1
    assert route.calls.last.request.headers["user-agent"] == "mine/1"


# -- the detection itself ------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["httpx2", "httpx"])
def test_every_watched_hook_counts_as_mocking_while_patched(family: str) -> None:
    watched = HTTPX2 if family == "httpx2" else families.old_httpx()
    assert watched is not None
    assert not watched.mocked()
    for owner, name in watched.watched:
        with patch.object(owner, name, new=AsyncMock()):
            assert watched.mocked(), f"{owner.__name__}.{name}"
        assert not watched.mocked(), f"{owner.__name__}.{name} left patched"


def test_patching_aiohttp_counts_as_mocking_for_the_opt_in() -> None:
    aiohttp = pytest.importorskip("aiohttp")
    from convoso_async._http.mocking import aiohttp_mocked as mocked

    assert not mocked()
    with patch.object(aiohttp.ClientSession, "_request", new=AsyncMock()):
        assert mocked()
    assert not mocked()


def test_a_family_first_seen_while_patched_is_not_mocked_once_the_patch_is_gone() -> None:
    # The old httpx is looked at first when a request is sent, perhaps under a mock.
    import httpcore2

    with patch.object(httpx2.AsyncClient, "send", new=AsyncMock()):
        family = families.Family(httpx2, httpcore2)
        assert family.mocked()
    assert not family.mocked()
    with patch.object(httpx2.AsyncClient, "send", new=AsyncMock()):
        assert family.mocked()
