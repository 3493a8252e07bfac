"""The connection pool behind a client and its `with_options` copies: which sender sends.

The rule: the client's own pool is a stock ``httpx2.AsyncClient`` (httpx2's
own transport, the pool sized ``max_concurrency``), on asyncio and trio
alike, so every tool that works with httpx2 works with it: respx on
httpcore2 and pytest-httpx2, ``unittest.mock``, proxies and CA trust read
from the environment by httpx2 itself when the client is made.

Two detours, each where it is the only way to keep that promise:

- while a mocking tool patches the *old* httpx (``with respx.mock:``,
  ``respx.mock(using="httpx")``, pytest-httpx's ``httpx_mock``), requests go
  through a stock ``httpx.AsyncClient`` instead, so the mock answers them
  and nothing reaches the network unmocked;
- with ``transport="aiohttp"`` (the opt-in), requests go through aiohttp on
  asyncio, and through stock httpx2 on trio, where a proxy variable is set,
  or while httpx2, httpcore2 or aiohttp is patched (how a patch is seen: `mocking`).

Each event loop (or trio run) gets its own clients, closed when that loop
shuts down: a client used by two ``asyncio.run`` calls leaves nothing behind
from the first. A caller's own ``http_client`` is used as given, always.
"""

from __future__ import annotations

import asyncio
import ssl
import urllib.request
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any, Literal, Protocol

from convoso_async._defaults import USER_AGENT_PREFIX
from convoso_async._errors import ConfigurationError

from .answer import HttpAnswer
from .families import HTTPX2, Family, family_of, old_httpx
from .httpx_sender import HttpxSender, shared_ssl_context, stock_client
from .mocking import aiohttp_mocked

if TYPE_CHECKING:
    from .aiohttp_sender import AiohttpSender

__all__ = ["Pool", "Transport"]

#: What ``AsyncConvoso(transport=...)`` takes.
Transport = Literal["httpx2", "aiohttp"]


class Sender(Protocol):
    async def post(
        self, url: str, body: bytes, time_limit: float, max_bytes: int
    ) -> HttpAnswer: ...

    async def aclose(self) -> None: ...


def _running() -> object:
    """The running event loop, or the running trio run's token."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        try:
            import trio  # only reached off asyncio: on trio, trio is imported already
        except ImportError:  # pragma: no cover - anyio runs on asyncio or trio only
            raise RuntimeError("no event loop is running") from None
        return trio.lowlevel.current_trio_token()


def _proxy_in_environment() -> bool:
    """Whether any proxy variable is set (``NO_PROXY`` aside): then httpx2 decides, not aiohttp."""
    return any(scheme != "no" for scheme in urllib.request.getproxies_environment())


class _Run:
    """The senders of one event loop (or one trio run), made as they are needed."""

    def __init__(self, marker: object, pool: Pool, first: Any | None) -> None:
        self.marker = marker
        self._pool = pool
        self._first = first  # a stock httpx2 client made with the pool, for the first run
        self.fast: AiohttpSender | None = None
        self._stock: dict[str, HttpxSender] = {}
        self.guard: AsyncGenerator[None, None] | None = None
        self.closed = False

    def stock(self, family: Family) -> HttpxSender:
        sender = self._stock.get(family.name)
        if sender is None:
            client = self._first if family is HTTPX2 else None
            self._first = None
            if client is None:
                assert self._pool.ssl_context is not None, "only the pool's own clients are stock"
                client = stock_client(family, self._pool.size, self._pool.ssl_context)
            sender = HttpxSender(client, family, owned=True)
            self._stock[family.name] = sender
        return sender

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        for sender in self._stock.values():
            await sender.aclose()
        if self._first is not None:
            await self._first.aclose()
        if self.fast is not None:
            await self.fast.aclose()


async def _close_with_the_run(run: _Run) -> AsyncGenerator[None, None]:
    # An async generator left suspended is closed by the event loop as it shuts
    # down (asyncio.run, anyio.run and trio.run all do), inside that loop: the
    # one place this run's connections can still be closed properly.
    try:
        yield
    finally:
        await run.aclose()


class Pool:
    """The HTTP clients of one `AsyncConvoso` and its `with_options` copies.

    Ours (per event loop) or the caller's; the pipeline is handed the pool on each call.

    Args:
        http_client: the caller's ``httpx2.AsyncClient`` or ``httpx.AsyncClient``,
            used as given; None to make our own.
        size: our own pool's size.
        base_url: where requests go.
        transport: ``"httpx2"`` (stock httpx2) or ``"aiohttp"`` (the opt-in).

    Raises:
        ConfigurationError: CA certificates or a proxy from the environment that
            httpx2 cannot use, as ``httpx2.AsyncClient()`` made now would refuse them.
    """

    def __init__(
        self,
        http_client: object | None,
        size: int,
        *,
        base_url: str,
        transport: Transport = "httpx2",
    ) -> None:
        self.size = size
        self.closed = False
        self._base_url = base_url
        self._run: _Run | None = None
        self._caller: HttpxSender | None = None
        self._first: Any | None = None
        self._fast_allowed = False
        if http_client is not None:
            family = family_of(http_client)
            assert family is not None, "the client checks http_client"
            self._caller = HttpxSender(http_client, family, owned=False)
            self.ssl_context: ssl.SSLContext | None = None
            return
        # The environment is read now, as httpx2.AsyncClient() made now reads it:
        # CA certificates here, proxies by the first stock client itself.
        self.ssl_context = shared_ssl_context()
        self._first = stock_client(HTTPX2, size, self.ssl_context)
        self._fast_allowed = transport == "aiohttp" and not _proxy_in_environment()

    def _current(self) -> _Run:
        if self.closed:
            raise ConfigurationError("this AsyncConvoso was closed; create a new one")
        marker = _running()
        run = self._run
        if run is None or run.marker is not marker:
            # A new event loop (a second asyncio.run, say) can't use the old
            # loop's connections, which that loop closed as it ended.
            first, self._first = self._first, None
            run = self._run = _Run(marker, self, first)
        return run

    def prepare(self) -> None:
        """Make what a first request needs now (before it takes a rate-limit slot)."""
        if self._caller is not None:
            if self.closed:
                raise ConfigurationError("this AsyncConvoso was closed; create a new one")
            return
        run = self._current()
        on_asyncio = isinstance(run.marker, asyncio.AbstractEventLoop)
        if self._fast_allowed and run.fast is None and on_asyncio:
            from .aiohttp_sender import USER_AGENT_LIBRARY, AiohttpSender

            assert self.ssl_context is not None
            run.fast = AiohttpSender(
                size=self.size,
                ssl_context=self.ssl_context,
                base_url=self._base_url,
                user_agent=f"{USER_AGENT_PREFIX} {USER_AGENT_LIBRARY}",
            )
            run.fast.prepare()

    def sender(self) -> Sender:
        """Who would send a request made now, in this event loop (for tests and debugging)."""
        if self._caller is not None:
            return self._caller
        self.prepare()
        return self._sender(self._current())

    def _sender(self, run: _Run) -> Sender:
        """Who sends this request: see the module's docstring."""
        old = old_httpx()
        old_mocked = old is not None and old.mocked()
        if run.fast is not None and not (old_mocked or HTTPX2.mocked() or aiohttp_mocked()):
            return run.fast
        if old_mocked and not HTTPX2.mocked():
            assert old is not None
            return run.stock(old)
        return run.stock(HTTPX2)

    async def post(self, url: str, body: bytes, time_limit: float, max_bytes: int) -> HttpAnswer:
        """Send one form POST and return the answer with its body read and decoded.

        ``time_limit`` bounds the whole attempt, not each read: per-read limits
        alone let a server that trickles its answer hold a call for minutes.
        Raises `SendError` (``"too large"`` for an answer past ``max_bytes``,
        as sent or once decoded).
        """
        if self._caller is not None:
            if self.closed:
                raise ConfigurationError("this AsyncConvoso was closed; create a new one")
            return await self._caller.post(url, body, time_limit, max_bytes)
        run = self._current()
        if run.guard is None:
            run.guard = _close_with_the_run(run)
            await run.guard.asend(None)
        return await self._sender(run).post(url, body, time_limit, max_bytes)

    async def aclose(self) -> None:
        self.closed = True
        run, self._run = self._run, None
        first, self._first = self._first, None
        if first is not None:
            await first.aclose()
        if self._caller is not None or run is None:
            return
        try:
            here = _running()
        except RuntimeError:
            here = None
        if run.marker is here:
            await run.aclose()
            if run.guard is not None:
                await run.guard.aclose()
