"""The connection pool behind a client and its `with_options` copies, and how a request goes out.

The client's own pool is made lazily, on the first request, because the
fastest transport depends on the event loop running then: our aiohttp-backed
transport on asyncio, httpx's own on trio (aiohttp is asyncio-only). On
asyncio its requests go straight to that transport's `post_form`: the
``httpx.AsyncClient`` layer (cookies, auth flows, redirects, event hooks) has
nothing to do for Convoso's form POSTs, and building an ``httpx.Request`` and
``httpx.Response`` per call cost more CPU than the rest of the pipeline
(measured in ``benchmarks/bulk_throughput.py --profile``). A caller's own
``http_client`` is used as given, through ``client.post``, so its hooks,
headers and auth all apply.
"""

from __future__ import annotations

import asyncio

import anyio
import httpx

from .aiohttp_transport import AiohttpTransport, Answer
from .defaults import USER_AGENT
from .errors import ConfigurationError

__all__ = ["Pool"]

#: What every request says; a caller's own client adds its own user agent.
_FORM_HEADERS = {"content-type": "application/x-www-form-urlencoded", "accept": "application/json"}
_OWN_HEADERS = {**_FORM_HEADERS, "user-agent": USER_AGENT}


def _running_asyncio_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:  # trio (or no loop at all)
        return None


class Pool:
    """One HTTP client (ours, made lazily, or the caller's) shared by a family of clients."""

    def __init__(self, http_client: httpx.AsyncClient | None, size: int) -> None:
        self.owned = http_client is None
        self.http = http_client
        self.size = size
        self.closed = False
        self._direct: AiohttpTransport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._urls: dict[str, httpx.URL] = {}

    def get(self) -> httpx.AsyncClient:
        """The HTTP client requests go through now (made on first use, per event loop)."""
        if self.closed:
            raise ConfigurationError("this AsyncConvoso was closed; create a new one")
        if not self.owned:
            assert self.http is not None
            return self.http
        loop = _running_asyncio_loop()
        if self.http is None or loop is not self._loop:
            # A new event loop (a second asyncio.run, say) can't use the old
            # loop's connections; start afresh rather than fail.
            if loop is not None:
                self._direct = AiohttpTransport(max_connections=self.size)
                self.http = httpx.AsyncClient(transport=self._direct, headers=_OWN_HEADERS)
            else:
                self._direct = None
                limits = httpx.Limits(
                    max_connections=self.size, max_keepalive_connections=self.size
                )
                self.http = httpx.AsyncClient(limits=limits, headers=_OWN_HEADERS)
            self._loop = loop
        return self.http

    async def post(self, url: str, body: bytes, time_limit: float) -> Answer:
        """Send one form POST and return the answer with its body read.

        ``time_limit`` bounds the whole attempt, not each read: per-read
        limits alone let a server that trickles its answer hold a call for
        minutes. Raises httpx's errors, or `TimeoutError` past the limit.
        """
        http = self.get()
        if self._direct is not None:
            limits = self._direct.timeout(time_limit, time_limit, time_limit, total=time_limit)
            return await self._direct.post_form(url, body, _OWN_HEADERS, limits)
        parsed = self._urls.get(url)
        if parsed is None:  # parsed once per URL, not per request
            parsed = self._urls[url] = httpx.URL(url)
        headers = None if self.owned else _FORM_HEADERS
        with anyio.fail_after(time_limit):
            response = await http.post(parsed, content=body, headers=headers, timeout=time_limit)
        return Answer(response.status_code, response.headers, response.content)

    async def aclose(self) -> None:
        self.closed = True
        if self.owned and self.http is not None:
            http, self.http = self.http, None
            self._direct = None
            await http.aclose()
