"""`FakeConvoso`: the fake's state with its front ends.

The layers, lowest first: ``._state`` (`FakeState`: campaigns, tokens, faults,
the request log and the handler core), then the front ends that wrap it,
``._transport`` (in-process, for httpx2; ``._httpx_transport`` for httpx) and
``._server`` (HTTP/1.1 on loopback), then this module, which gives the state
the methods that build those front ends. The state never imports a front end.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Literal, overload

import anyio
import anyio.to_thread
import httpx2

from ._server import Backend, ServerThread
from ._state import FakeState
from ._transport import FakeTransport

if TYPE_CHECKING:
    import httpx

__all__ = ["ClientFamily", "FakeConvoso"]

#: The HTTP client libraries `FakeConvoso.transport` serves: httpx2, and the old httpx.
ClientFamily = Literal["httpx2", "httpx"]


class FakeConvoso(FakeState):
    """A stateful Convoso look-alike for ``/campaigns/search`` and ``/campaigns/status``,
    and any other endpoint a test adds (`add_endpoint`: a handler of its own, or an echo).

    Run it in-process as an httpx2 (or httpx) transport, or as a real HTTP
    server on loopback; both share this state::

        fake = FakeConvoso(campaigns=3)
        http = httpx2.AsyncClient(transport=fake.transport(), base_url="https://fake/v1")
        async with fake.serve() as url:  # "http://127.0.0.1:PORT/v1"
            ...
        fake.statuses()  # {'1001': 'Y', '1002': 'Y', '1003': 'N'}

    ``campaigns`` is a count (generated campaigns, ids from ``"1001"``;
    default 3) or the API's campaign objects (`reference_campaigns` gives the
    API reference's own 111, 222 and 333). ``campaign_ids`` instead generates
    one campaign per id you choose: ``FakeConvoso(campaign_ids=["111", "222"])``.
    ``readonly_tokens`` may search but not change a status. ``latency`` is
    added to every answer: seconds, or a ``(low, high)`` range drawn uniformly.
    ``rate_limit`` caps the requests accepted in any sliding one-second
    window; the others get HTTP 429 with a ``Retry-After`` of ``retry_after``
    seconds. ``seed`` seeds the RNG behind
    latency jitter and fault probabilities.
    """

    @overload
    def transport(self, *, family: Literal["httpx2"] = ...) -> httpx2.AsyncBaseTransport: ...
    @overload
    def transport(self, *, family: Literal["httpx"]) -> httpx.AsyncBaseTransport: ...

    def transport(
        self, *, family: ClientFamily = "httpx2"
    ) -> httpx2.AsyncBaseTransport | httpx.AsyncBaseTransport:
        """A transport answering in-process, with no socket; works on asyncio and trio.

        For an `httpx2.AsyncClient` by default; ``family="httpx"`` gives one for
        an `httpx.AsyncClient` (httpx must then be installed). A dropped
        connection and a read timeout raise that family's own errors::

            httpx2.AsyncClient(transport=fake.transport())
            httpx.AsyncClient(transport=fake.transport(family="httpx"))
        """
        if family == "httpx2":
            return FakeTransport(self)
        if family != "httpx":
            raise ValueError(f"family must be 'httpx2' or 'httpx', not {family!r}")
        try:
            from ._httpx_transport import FakeHttpxTransport
        except ModuleNotFoundError as exc:
            if exc.name != "httpx":
                raise
            raise ModuleNotFoundError(
                "transport(family='httpx') is for an httpx.AsyncClient, and httpx is not "
                "installed: pip install httpx, or use httpx2 and transport()",
                name="httpx",
            ) from exc
        return FakeHttpxTransport(self)

    @contextlib.asynccontextmanager
    async def serve(
        self, host: str = "127.0.0.1", port: int = 0, *, backend: Backend = "asyncio"
    ) -> AsyncIterator[str]:
        """Serve HTTP on ``host:port`` from a background thread; yield the base URL.

        The server runs its own event loop (``backend``: ``"asyncio"`` or
        ``"trio"``), so the caller may run either. Port 0 picks a free port.
        Stops (closing every connection and joining the thread) on exit.
        """
        server = ServerThread(self, host, port, backend=backend)
        server.start()
        try:
            yield await anyio.to_thread.run_sync(server.wait_ready)
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(server.stop)

    @contextlib.contextmanager
    def serve_in_thread(
        self, host: str = "127.0.0.1", port: int = 0, *, backend: Backend = "asyncio"
    ) -> Iterator[str]:
        """Like `serve`, as a synchronous context manager for synchronous code."""
        server = ServerThread(self, host, port, backend=backend)
        server.start()
        try:
            yield server.wait_ready()
        finally:
            server.stop()
