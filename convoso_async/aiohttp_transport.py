"""The default transport on asyncio: an httpx transport that sends through aiohttp.

httpx's own connection pool slows down as concurrency grows (every waiting
request is checked against every connection on each change, encode/httpx#3215),
and aiohttp's does not. `httpx-aiohttp` bridges the two, but per request it
re-parses the URL, builds a timeout object and streams the body through two
iterators, and it reports a dropped connection as ``httpx.ConnectTimeout``.
Convoso's answers are small JSON documents, so this transport reads each
body whole (httpx decodes any Content-Encoding) and maps aiohttp's errors
onto the httpx exception that means the same thing. Measured in ``benchmarks/bulk_throughput.py``.

Use it yourself with ``httpx.AsyncClient(transport=AiohttpTransport())``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import NamedTuple

import aiohttp
import httpx

__all__ = ["AiohttpTransport", "Answer"]


_PROTOCOL_ERRORS = (
    aiohttp.ServerDisconnectedError,
    aiohttp.ClientPayloadError,
    aiohttp.ClientResponseError,
)


class Answer(NamedTuple):
    """An HTTP answer, body read: what the pipeline needs of a response."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes


def _as_httpx_error(exc: Exception, request: httpx.Request | None) -> httpx.RequestError:
    """The httpx exception that means what an aiohttp one does (the original as __cause__)."""
    message = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ClientPayloadError) and isinstance(
        exc.__cause__, aiohttp.http_exceptions.ContentEncodingError
    ):
        return httpx.DecodingError(message, request=request)
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(message, request=request)
    if isinstance(exc, (aiohttp.ServerTimeoutError, asyncio.TimeoutError)):
        return httpx.ReadTimeout(message, request=request)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx.ConnectError(message, request=request)
    if isinstance(exc, _PROTOCOL_ERRORS):
        return httpx.RemoteProtocolError(message, request=request)
    if isinstance(exc, aiohttp.InvalidURL):
        return httpx.UnsupportedProtocol(message, request=request)
    return httpx.ReadError(message, request=request)


class AiohttpTransport(httpx.AsyncBaseTransport):
    """An asyncio-only httpx transport on an `aiohttp.ClientSession`.

    Args:
        max_connections: the connection pool's size (open connections at once).
        keepalive_expiry: seconds an idle connection is kept.

    The session is made on the first request, in the running event loop.
    Bodies are read whole; redirects are not followed (Convoso sends none).
    """

    def __init__(self, *, max_connections: int = 100, keepalive_expiry: float = 5.0) -> None:
        self.max_connections = max_connections
        self._keepalive_expiry = keepalive_expiry
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[tuple[float | None, ...], aiohttp.ClientTimeout]
        self._timeouts = {}

    def __repr__(self) -> str:
        return f"AiohttpTransport(max_connections={self.max_connections})"

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self.max_connections, keepalive_timeout=self._keepalive_expiry
            )
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    def timeout(
        self,
        connect: float | None,
        read: float | None,
        pool: float | None,
        *,
        total: float | None = None,
    ) -> aiohttp.ClientTimeout:
        """aiohttp's timeout for httpx's limits, plus an optional whole-request bound."""
        key = (connect, read, pool, total)
        timeout = self._timeouts.get(key)
        if timeout is None:
            # pool: waiting for a free connection; connect: opening one;
            # read: between bytes of the answer (httpx's meanings).
            timeout = aiohttp.ClientTimeout(
                total=total, connect=pool, sock_connect=connect, sock_read=read
            )
            if len(self._timeouts) < 64:
                self._timeouts[key] = timeout
        return timeout

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        limits = request.extensions.get("timeout") or {}
        timeout = self.timeout(limits.get("connect"), limits.get("read"), limits.get("pool"))
        try:
            async with self._get_session().request(
                request.method,
                str(request.url),
                data=request.content or None,
                headers=dict(request.headers),
                timeout=timeout,
                allow_redirects=False,
                auto_decompress=False,  # httpx.Response decodes Content-Encoding itself
            ) as answer:
                status, raw_headers, body = answer.status, answer.raw_headers, await answer.read()
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise _as_httpx_error(exc, request) from exc
        return httpx.Response(
            status,
            headers=raw_headers,
            content=body,
            request=request,
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def post_form(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout: aiohttp.ClientTimeout
    ) -> Answer:
        """POST a form and return the answer, decoded, without building httpx models.

        The client's own hot path: an `httpx.Request` and `httpx.Response` per
        call cost more CPU than the rest of the pipeline together. Errors are
        the same httpx exceptions `handle_async_request` raises.
        """
        try:
            async with self._get_session().post(
                url,
                data=body,
                headers=headers,
                timeout=timeout,
                allow_redirects=False,
                auto_decompress=True,
            ) as answer:
                return Answer(answer.status, answer.headers, await answer.read())
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise _as_httpx_error(exc, None) from exc

    async def aclose(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()
