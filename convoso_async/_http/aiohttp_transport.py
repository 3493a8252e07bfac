"""The fast sender on asyncio: aiohttp's connection pool, answers read and decoded as httpx does.

httpx's own connection pool slows down as concurrency grows (every waiting
request is checked against every connection on each change, encode/httpx#3215),
and aiohttp's does not. `httpx-aiohttp` bridges the two, but per request it
re-parses the URL, builds a timeout object and streams the body through two
iterators, and it reports a dropped connection as ``httpx.ConnectTimeout``.

Only the socket work is aiohttp's. What a user of httpx can observe is
httpx's: the caller hands over the exact headers httpx would send (see
``connections``), the TLS context httpx would build, and gets back the raw
body decoded by httpx's own decoders (so ``deflate, gzip``, ``br``, ``zstd``
and broken bodies behave as in httpx), headers with httpx's semantics, and
response-head limits as httpcore's (100 KiB, any number of headers). aiohttp
follows no redirect, reads no environment, keeps no cookies and decompresses
nothing. Errors are the httpx exceptions that mean the same thing.
Measured in ``benchmarks/bulk_throughput.py``.

Use it yourself with ``httpx.AsyncClient(transport=AiohttpTransport())``.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence

import aiohttp
import httpx
from httpcore._async.http11 import AsyncHTTP11Connection
from httpx._decoders import SUPPORTED_DECODERS, ContentDecoder, IdentityDecoder, MultiDecoder

from convoso_async._errors import ResponseDecodeError

__all__ = ["MAX_HEAD_BYTES", "AiohttpTransport", "Answer", "decode_body"]

#: The largest response head (status line and headers) httpcore reads: h11's buffer.
MAX_HEAD_BYTES: int = AsyncHTTP11Connection.MAX_INCOMPLETE_EVENT_SIZE

#: Raw bytes handed to a decoder at a time, so a compressed body's decoded size is
#: checked against the cap every few KiB rather than after it all decompressed.
_DECODE_SLICE = 16 * 1024

_PROTOCOL_ERRORS = (
    aiohttp.ServerDisconnectedError,
    aiohttp.ClientPayloadError,
    aiohttp.ClientResponseError,
)

RawHeaders = Sequence[tuple[bytes, bytes]]


class Answer:
    """An HTTP answer, body read and decoded: what the pipeline needs of a response.

    ``headers`` behave as ``httpx.Headers`` (they are one, built on first use
    from the raw list): repeated headers read as one comma-joined value.
    """

    __slots__ = ("_headers", "_raw_headers", "content", "status_code")

    def __init__(
        self,
        status_code: int,
        content: bytes,
        *,
        headers: httpx.Headers | None = None,
        raw_headers: RawHeaders = (),
    ) -> None:
        self.status_code = status_code
        self.content = content
        self._headers = headers
        self._raw_headers = raw_headers

    @property
    def headers(self) -> httpx.Headers:
        if self._headers is None:
            self._headers = httpx.Headers(list(self._raw_headers))
        return self._headers

    @property
    def raw_headers(self) -> RawHeaders:
        """The headers as received (empty when built from an ``httpx.Response``)."""
        return self._raw_headers

    def __repr__(self) -> str:
        return f"Answer(status_code={self.status_code}, {len(self.content)} bytes)"


def _decoder_for(raw_headers: RawHeaders) -> ContentDecoder | None:
    """httpx's decoder for these headers (``Response._get_content_decoder``), None for identity."""
    decoders: list[ContentDecoder] = []
    for key, value in raw_headers:
        if key.lower() != b"content-encoding":
            continue
        for item in value.decode("latin-1").split(","):
            decoder_cls = SUPPORTED_DECODERS.get(item.strip().lower())
            if decoder_cls is not None:  # unknown codings are passed through, as httpx does
                decoders.append(decoder_cls())
    if not decoders:
        return None
    return decoders[0] if len(decoders) == 1 else MultiDecoder(children=decoders)


def decode_body(raw_headers: RawHeaders, raw: bytes, limit: int, url: str) -> bytes:
    """The body as httpx would give it, or `ResponseDecodeError` past ``limit`` decoded bytes.

    Raises ``httpx.DecodingError`` (from httpx's decoders) when it does not decode.
    """
    decoder = _decoder_for(raw_headers)
    if decoder is None or isinstance(decoder, IdentityDecoder):
        return raw
    parts: list[bytes] = []
    size = 0
    for start in range(0, len(raw), _DECODE_SLICE):
        part = decoder.decode(raw[start : start + _DECODE_SLICE])
        size += len(part)
        if size > limit:
            raise too_large(url, limit)
        parts.append(part)
    part = decoder.flush()
    if size + len(part) > limit:
        raise too_large(url, limit)
    parts.append(part)
    return b"".join(parts)


def too_large(url: str, limit: int) -> ResponseDecodeError:
    """The error for an answer past ``max_response_bytes`` (the body was not kept)."""
    path = httpx.URL(url).path
    return ResponseDecodeError(
        f"POST {path}: the answer is larger than max_response_bytes ({limit:,} bytes); "
        "it was not read further and its connection was closed. Raise max_response_bytes "
        "if answers this large are expected"
    )


def _head_size(status_line_size: int, raw_headers: RawHeaders) -> int:
    return status_line_size + sum(len(k) + len(v) + 4 for k, v in raw_headers) + 2


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
        keepalive_expiry: seconds an idle connection is kept (httpx's default).
        ssl_context: the TLS context for https; None builds httpx's default
            (``httpx.create_ssl_context()``) on first use.

    The session is made on the first request, in the running event loop.
    Bodies are read whole; redirects are not followed.
    """

    def __init__(
        self,
        *,
        max_connections: int = 100,
        keepalive_expiry: float = 5.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.max_connections = max_connections
        self._keepalive_expiry = keepalive_expiry
        self._ssl_context = ssl_context
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[tuple[float | None, ...], aiohttp.ClientTimeout]
        self._timeouts = {}

    def __repr__(self) -> str:
        return f"AiohttpTransport(max_connections={self.max_connections})"

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            if self._ssl_context is None:
                self._ssl_context = httpx.create_ssl_context()
            # httpcore offers ALPN http/1.1 on every TLS connection; so do we.
            self._ssl_context.set_alpn_protocols(["http/1.1"])
            connector = aiohttp.TCPConnector(
                limit=self.max_connections,
                keepalive_timeout=self._keepalive_expiry,
                ssl=self._ssl_context,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,  # httpx's decoders decode, below
                cookie_jar=aiohttp.DummyCookieJar(),  # httpx's cookie jar is the caller's
                trust_env=False,  # the caller applied httpx's view of the environment
                # httpcore (h11) reads a head of up to 100 KiB, one line or many.
                max_line_size=MAX_HEAD_BYTES,
                max_field_size=MAX_HEAD_BYTES,
                max_headers=MAX_HEAD_BYTES // 4,
            )
        return self._session

    def prepare(self) -> None:
        """Make the session now (in the running event loop) rather than on the first request."""
        self._get_session()

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
                headers=list(request.headers.multi_items()),
                timeout=timeout,
                allow_redirects=False,
            ) as answer:
                status, raw_headers, body = answer.status, answer.raw_headers, await answer.read()
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise _as_httpx_error(exc, request) from exc
        return httpx.Response(
            status,
            headers=list(raw_headers),
            content=body,
            request=request,
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def post_form(
        self,
        url: str,
        body: bytes,
        headers: list[tuple[str, str]],
        timeout: aiohttp.ClientTimeout,
        max_bytes: int,
    ) -> Answer:
        """POST a form and return the answer, decoded, without building httpx models.

        The client's own hot path: an `httpx.Request` and `httpx.Response` per
        call cost more CPU than the rest of the pipeline together. ``headers``
        are sent as given, in order (aiohttp adds none when these name them).
        An answer past ``max_bytes`` (as sent or decoded) stops the read, closes
        its connection and raises `ResponseDecodeError`. Other errors are the
        httpx exceptions httpx would raise.
        """
        try:
            async with self._get_session().post(
                url, data=body, headers=headers, timeout=timeout, allow_redirects=False
            ) as answer:
                raw_headers = answer.raw_headers
                if _head_size(len(answer.reason or "") + 15, raw_headers) > MAX_HEAD_BYTES:
                    self._drop_connection(answer)
                    raise httpx.RemoteProtocolError(
                        f"the answer's head is larger than {MAX_HEAD_BYTES} bytes"
                    )
                raw = await _read_capped(answer, max_bytes, url)
                status = answer.status
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise _as_httpx_error(exc, None) from exc
        return Answer(
            status, decode_body(raw_headers, raw, max_bytes, url), raw_headers=raw_headers
        )

    def _drop_connection(self, answer: aiohttp.ClientResponse) -> None:
        """Close the answer's connection, as httpcore does after a protocol error.

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


async def _read_capped(answer: aiohttp.ClientResponse, limit: int, url: str) -> bytes:
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
    raise too_large(url, limit)
