"""Whether a failed request could have reached the server, known where it is knowable: the sender.

A connection never made (refused, a name that does not resolve, a TLS handshake refused,
connecting timed out, no free connection in time) means nothing was sent, so the server cannot
have processed it. Anything after (a reset, a read timeout, an answer cut short) may have come
after the server acted. Each sender says which in ``SendError.never_connected``, and the
pipeline carries it to ``APIConnectionError.never_connected``: `post()` retries on it.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import AsyncIterator
from typing import Any

import httpx
import httpx2
import pytest
from raised_errors import raised as _raised

from convoso_async import APIConnectionError, APITimeoutError, AsyncConvoso
from convoso_async._http.transport_errors import send_error
from convoso_async.testing import FakeConvoso, Fault


@pytest.mark.parametrize("family", [httpx2, httpx], ids=["httpx2", "httpx"])
@pytest.mark.parametrize(
    ("name", "unsent"),
    [
        ("ConnectError", True),
        ("ConnectTimeout", True),
        ("PoolTimeout", True),
        ("ReadTimeout", False),
        ("WriteTimeout", False),
        ("ReadError", False),
        ("WriteError", False),
        ("RemoteProtocolError", False),
    ],
)
def test_an_httpx_family_error_says_whether_the_connection_was_ever_made(
    family: object, name: str, unsent: bool
) -> None:
    error = send_error(_raised(getattr(family, name)("failed")))
    assert error.never_connected is unsent


#: The aiohttp opt-in's cases run where its extra is installed (``nox -s matrix``).
TRANSPORTS = [
    "httpx2",
    pytest.param(
        "aiohttp",
        marks=pytest.mark.skipif(
            importlib.util.find_spec("aiohttp") is None, reason="the aiohttp extra is absent"
        ),
    ),
    "caller's httpx",
]


@contextlib.asynccontextmanager
async def client_for(transport: str, base_url: str, **options: Any) -> AsyncIterator[AsyncConvoso]:
    """A client sending through the client's own httpx2 or aiohttp pool, or a caller's httpx."""
    async with contextlib.AsyncExitStack() as stack:
        if transport == "caller's httpx":
            options["http_client"] = await stack.enter_async_context(httpx.AsyncClient())
        else:
            options["transport"] = transport
        yield await stack.enter_async_context(
            AsyncConvoso(FakeConvoso.TOKEN, base_url=base_url, **options)
        )


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_refused_connection_is_never_connected_on_every_sender(
    transport: str, closed_port: int
) -> None:
    url = f"http://127.0.0.1:{closed_port}/v1"
    async with client_for(transport, url, max_retries=0) as convoso:
        with pytest.raises(APIConnectionError) as caught:
            await convoso.campaigns.search()
    assert caught.value.never_connected is True
    assert "refused" in str(caught.value)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_dropped_connection_or_a_read_timeout_may_have_reached_the_server(
    transport: str,
) -> None:
    fake = FakeConvoso()
    fake.add_fault(Fault("drop", on_requests={1}))
    fake.add_fault(Fault("slow", delay=2.0, on_requests={2}))
    async with fake.serve() as url, client_for(transport, url, max_retries=0, timeout=0.5) as c:
        with pytest.raises(APIConnectionError) as dropped:
            await c.campaigns.search()
        with pytest.raises(APITimeoutError) as late:
            await c.campaigns.search()
    assert dropped.value.never_connected is False
    assert late.value.never_connected is False
    assert [r.seq for r in fake.requests] == [1, 2]  # both reached the server
