"""The aiohttp opt-in (``transport="aiohttp"``): aiohttp's pool, behaving as httpx2.

For CPU-bound bulk work: per request, stock httpx2 spends two to three times
the CPU of raw aiohttp (``benchmarks/bulk_throughput.py``). Only the socket
work is aiohttp's; what a user of httpx2 can observe stays httpx2's, from
httpx2's public API:

- the request head is the one ``httpx2.AsyncClient.build_request`` makes
  (names, order, values, ``Accept-Encoding`` by the decoders installed,
  cookies from an ``httpx2.Cookies`` jar), built once and reused;
- the TLS context is ``httpx2.create_ssl_context()``'s, ALPN ``http/1.1``;
- answers are read raw and decoded by an ``httpx2.Response`` (so ``gzip``,
  ``deflate, gzip``, ``br``, ``zstd``, unknown codings and broken bodies
  behave as in httpx2), the size cap checked slice by slice;
- heads up to httpcore2's limit (100 KiB, any number of headers), no
  redirects, nothing read from the environment (the pool steps aside to
  stock httpx2 where a proxy variable is set).

aiohttp is an extra (``pip install 'convoso-async[aiohttp]'``); this module is
imported only when it is asked for. Measured in ``benchmarks/bulk_throughput.py``.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from typing import Any

import aiohttp
import httpcore2
import httpx2

from convoso_async._defaults import KEEPALIVE_EXPIRY

from .answer import HttpAnswer, RawHeaders, SendError, too_large
from .httpx_sender import FORM_HEADERS
from .transport_errors import aiohttp_send_error

__all__ = ["MAX_HEAD_BYTES", "AiohttpSender", "decode_body"]

#: The largest response head (status line and headers) httpcore2 reads: h11's buffer.
MAX_HEAD_BYTES: int = httpcore2.AsyncHTTP11Connection.MAX_INCOMPLETE_EVENT_SIZE

#: Raw bytes handed to the decoder at a time, so a compressed body's decoded size is
#: checked against the cap every few KiB rather than after it all decompressed.
_DECODE_SLICE = 16 * 1024

#: The user agent of requests this sender makes.
USER_AGENT_LIBRARY = f"aiohttp/{aiohttp.__version__}"


class _NoTransport(httpx2.AsyncBaseTransport):
    """For the client that only builds request heads (it never sends)."""


class _Slices(httpx2.SyncByteStream):
    def __init__(self, raw: bytes) -> None:
        self._raw = raw

    def __iter__(self) -> Iterator[bytes]:
        for start in range(0, len(self._raw), _DECODE_SLICE):
            yield self._raw[start : start + _DECODE_SLICE]


def _encoded(raw_headers: RawHeaders) -> bool:
    return any(
        key.lower() == b"content-encoding" and value.strip().lower() != b"identity"
        for key, value in raw_headers
    )


def decode_body(status: int, raw_headers: RawHeaders, raw: bytes, limit: int, url: str) -> bytes:
    """The body as httpx2 gives it; `SendError` (``"too large"``) past ``limit`` decoded bytes.

    Raises `SendError` (``"decode"``) when it does not decode, as httpx2 raises
    ``DecodingError``.
    """
    if not _encoded(raw_headers):
        return raw
    response = httpx2.Response(status, headers=list(raw_headers), stream=_Slices(raw))
    parts: list[bytes] = []
    size = 0
    try:
        for part in response.iter_bytes():
            size += len(part)
            if size > limit:
                raise too_large(limit)
            parts.append(part)
    except httpx2.DecodingError as exc:
        raise SendError("decode", str(exc)) from None
    return b"".join(parts)


def _head_size(status_line_size: int, raw_headers: RawHeaders) -> int:
    return status_line_size + sum(len(k) + len(v) + 4 for k, v in raw_headers) + 2


class AiohttpSender:
    """Form POSTs on an `aiohttp.ClientSession` of ``size`` connections; asyncio only.

    Args:
        size: the connection pool's size.
        ssl_context: the TLS context (httpx2's, from the pool).
        base_url: where requests go: one Host, so one request head.
        user_agent: the User-Agent header.

    The session is made in the running event loop by `prepare` (or the first request).
    """

    def __init__(
        self,
        *,
        size: int,
        ssl_context: ssl.SSLContext,
        base_url: str,
        user_agent: str,
    ) -> None:
        self.size = size
        self._ssl_context = ssl_context
        self._base_url = base_url
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}
        # httpx2 builds every request head: the same names, order and values as
        # httpx2.AsyncClient sends, cookies included.
        self._builder = httpx2.AsyncClient(
            headers={**FORM_HEADERS, "user-agent": user_agent},
            transport=_NoTransport(),
            trust_env=False,
        )
        self._prefix: list[tuple[str, str]] | None = None

    def __repr__(self) -> str:
        return f"<AiohttpSender size={self.size}>"

    def prepare(self) -> None:
        """Make the session (in the running event loop) and the request head now."""
        self._get_session()
        self._head(self._base_url, b"")

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # httpcore2 offers ALPN http/1.1 on every TLS connection; so do we.
            self._ssl_context.set_alpn_protocols(["http/1.1"])
            connector = aiohttp.TCPConnector(
                limit=self.size, keepalive_timeout=KEEPALIVE_EXPIRY, ssl=self._ssl_context
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,  # httpx2 decodes, above
                cookie_jar=aiohttp.DummyCookieJar(),  # httpx2's jar is the one kept
                trust_env=False,  # proxies are httpx2's business: the pool steps aside
                # httpcore2 (h11) reads a head of up to 100 KiB, one line or many.
                max_line_size=MAX_HEAD_BYTES,
                max_field_size=MAX_HEAD_BYTES,
                max_headers=MAX_HEAD_BYTES // 4,
            )
        return self._session

    def _timeout(self, limit: float) -> aiohttp.ClientTimeout:
        timeout = self._timeouts.get(limit)
        if timeout is None:
            # The attempt as a whole, and each phase (httpx2's meanings: waiting for
            # a free connection, opening one, between bytes of the answer).
            timeout = aiohttp.ClientTimeout(
                total=limit, connect=limit, sock_connect=limit, sock_read=limit
            )
            if len(self._timeouts) < 64:
                self._timeouts[limit] = timeout
        return timeout

    def _head(self, url: str, body: bytes) -> list[tuple[str, str]]:
        """The request head httpx2 would send for this POST, in its order and casing."""
        if self._builder.cookies.jar:
            request = self._builder.build_request("POST", url, content=body)
            return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
        if self._prefix is None:
            # Every request goes to base_url + a path: one Host, one head.
            request = self._builder.build_request("POST", self._base_url, content=b"")
            self._prefix = [
                (k.decode("latin-1"), v.decode("latin-1"))
                for k, v in request.headers.raw
                if k.lower() != b"content-length"
            ]
        return [*self._prefix, ("Content-Length", str(len(body)))]

    def _keep_cookies(self, url: str, status: int, raw_headers: RawHeaders) -> None:
        response = httpx2.Response(
            status, headers=list(raw_headers), request=httpx2.Request("POST", url)
        )
        self._builder.cookies.extract_cookies(response)

    async def post(self, url: str, body: bytes, time_limit: float, max_bytes: int) -> HttpAnswer:
        """POST a form; the answer, decoded, within ``time_limit`` seconds.

        Raises `SendError` (``"too large"`` past ``max_bytes``, as sent or decoded).
        """
        try:
            async with self._get_session().post(
                url,
                data=body,
                headers=self._head(url, body),
                timeout=self._timeout(time_limit),
                allow_redirects=False,
            ) as answer:
                raw_headers = answer.raw_headers
                if _head_size(len(answer.reason or "") + 15, raw_headers) > MAX_HEAD_BYTES:
                    self._drop_connection(answer)
                    raise SendError(
                        "connection", f"the answer's head is larger than {MAX_HEAD_BYTES} bytes"
                    )
                raw = await _read_capped(answer, url, max_bytes)
                status = answer.status
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise aiohttp_send_error(exc) from exc
        if any(key.lower() == b"set-cookie" for key, _ in raw_headers):
            self._keep_cookies(url, status, raw_headers)
        content = decode_body(status, raw_headers, raw, max_bytes, url)
        headers: Any = httpx2.Headers(list(raw_headers))
        return HttpAnswer(status, content, headers)

    def _drop_connection(self, answer: aiohttp.ClientResponse) -> None:
        """Close the answer's connection, as httpcore2 does after a protocol error.

        A short body was read with the head, and aiohttp has already put the
        connection back in the pool: take it out (it is idle, so nobody uses it).
        """
        protocol = getattr(answer, "_protocol", None)
        answer.close()
        connector = self._session.connector if self._session is not None else None
        for idle in getattr(connector, "_conns", {}).values():
            for entry in list(idle):
                if protocol is not None and entry[0] is protocol:
                    idle.remove(entry)
                    entry[0].close()
                    return

    async def aclose(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()


async def _read_capped(answer: aiohttp.ClientResponse, url: str, limit: int) -> bytes:
    length = answer.content_length
    if length is not None and length <= limit:
        return await answer.read()  # aiohttp reads exactly Content-Length bytes
    if length is None:
        parts: list[bytes] = []
        size = 0
        async for part in answer.content.iter_any():
            size += len(part)
            if size > limit:
                break
            parts.append(part)
        else:
            return b"".join(parts)
    answer.close()  # stop reading: the connection goes, not back to the pool
    raise too_large(limit)
