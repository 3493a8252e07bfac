"""respx and pytest-httpx intercept the default client, written the way their docs show.

``base_url`` points at a real listening socket that counts connections: a
request that escaped the mock would reach it, and each test asserts it saw
none. On asyncio and trio.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from unittest.mock import AsyncMock, patch

import httpx
import pytest
import respx
from pytest_httpx import HTTPXMock

from convoso_async import AsyncConvoso, CampaignNotFoundError
from convoso_async._defaults import USER_AGENT

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


async def test_tripwire_counts_a_request_that_is_not_mocked(tripwire: Tripwire) -> None:
    # The guard itself works: an unmocked default client does reach it.
    async with AsyncConvoso(TOKEN, base_url=tripwire.url, max_retries=0) as convoso:
        with pytest.raises(Exception):  # noqa: B017, PT011 - the socket just hangs up
            await convoso.campaigns.search()
    assert tripwire.connections >= 1
    tripwire.connections = 0


async def test_respx_mock_context_manager(tripwire: Tripwire) -> None:
    with respx.mock:
        route = respx.post(f"{tripwire.url}/campaigns/search").mock(
            return_value=httpx.Response(200, json=ANSWER)
        )
        async with AsyncConvoso(TOKEN, base_url=tripwire.url) as convoso:
            campaigns = await convoso.campaigns.search()
    assert [c.id for c in campaigns] == ["111"]
    assert route.call_count == 1
    assert b"auth_token=" + TOKEN.encode() in route.calls.last.request.content


@respx.mock
async def test_respx_mock_decorator(tripwire: Tripwire) -> None:
    route = respx.post(f"{tripwire.url}/campaigns/status").mock(
        return_value=httpx.Response(200, json={"success": False, "code": 6026, "error": "x"})
    )
    async with AsyncConvoso(TOKEN, base_url=tripwire.url) as convoso:
        with pytest.raises(CampaignNotFoundError):
            await convoso.campaigns.activate("404")
    assert route.call_count == 1


async def test_respx_mock_using_httpx(tripwire: Tripwire) -> None:
    async with respx.mock(base_url=tripwire.url, using="httpx") as router:
        route = router.post("/campaigns/search").respond(200, json=ANSWER)
        async with AsyncConvoso(TOKEN, base_url=tripwire.url) as convoso:
            assert len(await convoso.campaigns.search()) == 1
    assert route.called


async def test_respx_fixture_style_router(tripwire: Tripwire) -> None:
    with respx.mock(base_url=tripwire.url, assert_all_called=True) as router:
        router.post("/campaigns/status").respond(200, json={"success": True})
        async with AsyncConvoso(TOKEN, base_url=tripwire.url) as convoso:
            result = await convoso.campaigns.set_status_many(["1", "2", "3"], False)
    assert sorted(result.succeeded) == ["1", "2", "3"]


async def test_pytest_httpx_fixture(tripwire: Tripwire, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(
        method="POST", url=f"{tripwire.url}/campaigns/search", json=ANSWER, is_reusable=True
    )
    async with AsyncConvoso(TOKEN, base_url=tripwire.url) as convoso:
        assert len(await convoso.campaigns.search()) == 1
        assert len(await convoso.campaigns.search()) == 1
    [first, second] = httpx_mock.get_requests()
    assert first.headers["content-type"] == "application/x-www-form-urlencoded"
    assert second.headers["user-agent"] == USER_AGENT


async def test_the_fast_path_returns_once_the_mock_is_gone(tripwire: Tripwire) -> None:
    async with AsyncConvoso(TOKEN, base_url=tripwire.url, max_retries=0) as convoso:
        with respx.mock:
            respx.post(f"{tripwire.url}/campaigns/search").respond(200, json=ANSWER)
            assert len(await convoso.campaigns.search()) == 1
        assert tripwire.connections == 0
        with pytest.raises(Exception):  # noqa: B017, PT011 - unmocked now: it reaches the socket
            await convoso.campaigns.search()
    assert tripwire.connections >= 1
    tripwire.connections = 0


async def test_unittest_mock_patch_of_async_client_send(tripwire: Tripwire) -> None:
    sent = AsyncMock(return_value=httpx.Response(200, json=ANSWER))
    with patch("httpx.AsyncClient.send", sent):
        async with AsyncConvoso(TOKEN, base_url=tripwire.url) as convoso:
            assert len(await convoso.campaigns.search()) == 1
    [request] = [call.kwargs["request"] for call in sent.await_args_list]
    assert request.url == f"{tripwire.url}/campaigns/search"


def test_every_watched_hook_counts_as_mocking_while_patched() -> None:
    from convoso_async._http.pool import _WATCHED, mocking_active

    assert not mocking_active()
    for owner, name in _WATCHED:
        with patch.object(owner, name, new=AsyncMock()):
            assert mocking_active(), f"{owner.__name__}.{name}"
        assert not mocking_active(), f"{owner.__name__}.{name} left patched"
