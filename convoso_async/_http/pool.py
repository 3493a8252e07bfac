"""The connection pool behind a client and its `with_options` copies, and how a request goes out.

The rule: the client's own pool behaves as ``httpx.AsyncClient()`` does in
everything a user can observe; only its speed differs. On asyncio it sends
through aiohttp's connection pool (``aiohttp_transport``), fed exactly what
httpx would put on the wire and decoding answers with httpx's own code. It
steps aside for ``httpx.AsyncClient`` with httpx's own transport whenever that
is the only way to behave as httpx:

- while a mocking tool has patched httpx, httpcore or aiohttp (respx in either
  mode, pytest-httpx, ``unittest.mock`` on ``AsyncClient.send``...): checked on
  every request, one identity test per patched attribute;
- for a client whose base URL goes through a proxy (``HTTP_PROXY`` and the
  rest, as httpx reads them, ``NO_PROXY`` included);
- on trio, where aiohttp cannot run.

The environment is read once, when the client is made, as httpx reads it
then: proxies, and ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` (else certifi) for the
TLS context both paths share. Each event loop (or trio run) gets its own
connections, closed when that loop shuts down: a client used by two
``asyncio.run`` calls leaves nothing behind from the first.

A caller's own ``http_client`` is used as given, through ``client.stream``, so
its transport, hooks, headers and auth all apply. On every path an answer
larger than ``max_response_bytes`` (as sent or once decoded) stops being read,
its connection is closed and the call fails with `ResponseDecodeError`.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import AsyncGenerator

import aiohttp
import anyio
import httpcore
import httpx
from httpx._utils import URLPattern, get_environment_proxies

from convoso_async._defaults import USER_AGENT
from convoso_async._errors import ConfigurationError

from .aiohttp_transport import AiohttpTransport, Answer, too_large

__all__ = ["Pool", "mocking_active"]

#: What every request says; a caller's own client adds its own user agent.
_FORM_HEADERS = {"content-type": "application/x-www-form-urlencoded", "accept": "application/json"}
_OWN_HEADERS = {**_FORM_HEADERS, "user-agent": USER_AGENT}

# Where mocking tools hook in: respx (httpcore mode patches the pools'
# handle_async_request, httpx mode AsyncClient._transport_for_url),
# pytest-httpx (AsyncHTTPTransport.handle_async_request), unittest.mock users
# (what AsyncClient.stream calls: build_request, send), aioresponses
# (ClientSession._request: httpx ignores it, so must we).
_WATCHED: tuple[tuple[type, str], ...] = (
    (httpx.AsyncClient, "stream"),
    (httpx.AsyncClient, "build_request"),
    (httpx.AsyncClient, "send"),
    (httpx.AsyncClient, "_transport_for_url"),
    (httpx.AsyncHTTPTransport, "handle_async_request"),
    (httpcore.AsyncConnectionPool, "handle_async_request"),
    (httpcore.AsyncHTTPConnection, "handle_async_request"),
    (httpcore.AsyncHTTPProxy, "handle_async_request"),
    (aiohttp.ClientSession, "_request"),
)


def _genuine(owner: type, name: str) -> object:
    value = vars(owner).get(name)
    if value is None:
        return None  # inherited: a patch would add it to this class
    library = owner.__module__.split(".")[0]
    if getattr(value, "__module__", "").split(".")[0] != library:
        return object()  # already patched when we were imported: never equal, always mocked
    return value


_ORIGINALS = tuple(_genuine(owner, name) for owner, name in _WATCHED)


def mocking_active() -> bool:
    """True while a mocking tool has replaced part of httpx, httpcore or aiohttp."""
    for (owner, name), original in zip(_WATCHED, _ORIGINALS, strict=True):
        if owner.__dict__.get(name) is not original:
            return True
    return False


def _running() -> object:
    """The running event loop, or the running trio run's token."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        try:
            import trio
        except ImportError:  # pragma: no cover - anyio runs on asyncio or trio only
            raise RuntimeError("no event loop is running") from None
        return trio.lowlevel.current_trio_token()


def _env_proxy(url: httpx.URL) -> str | None:
    """The proxy ``httpx.AsyncClient(trust_env=True)`` made now would use for ``url``."""
    found = get_environment_proxies()
    for proxy in found.values():
        if proxy is not None:
            try:
                httpx.Proxy(proxy)
            except (ValueError, httpx.InvalidURL):
                # httpx.AsyncClient() refuses it too. Not named: it may hold a password.
                raise ConfigurationError(
                    "the proxy environment (HTTP_PROXY, HTTPS_PROXY or ALL_PROXY) names a "
                    "proxy httpx cannot use; fix it or unset it"
                ) from None
    mounts = {URLPattern(key): proxy for key, proxy in found.items()}
    for pattern, proxy in sorted(mounts.items()):  # httpx's order: most specific first
        if pattern.matches(url):
            return proxy
    return None


def _env_ca() -> tuple[str, str] | None:
    """Where ``httpx.create_ssl_context()`` made now would load its CAs from (None: certifi)."""
    for variable, kind, exists in (
        ("SSL_CERT_FILE", "cafile", os.path.isfile),
        ("SSL_CERT_DIR", "capath", os.path.isdir),
    ):
        where = os.environ.get(variable)
        if where:
            if not exists(where):
                raise ConfigurationError(f"{variable}={where!r} does not exist")
            return kind, where
    return None


#: TLS contexts by where their CAs came from (and that file's state): building
#: one loads ~150 certificates (tens of ms), so clients trusting the same
#: CAs share one. Not observable: nothing else touches it.
_CONTEXTS: dict[tuple[object, ...], ssl.SSLContext] = {}


def _shared_context(ca: tuple[str, str] | None) -> ssl.SSLContext:
    """``httpx.create_ssl_context()``'s context for CAs from ``ca`` (None: certifi)."""
    try:
        if ca is None:
            key: tuple[object, ...] = ("certifi",)
        else:
            stat = os.stat(ca[1])
            key = (*ca, stat.st_mtime_ns, stat.st_size)
        context = _CONTEXTS.get(key)
        if context is None:
            if ca is None:
                context = httpx.create_ssl_context(trust_env=False)  # certifi, as httpx
            elif ca[0] == "cafile":
                context = ssl.create_default_context(cafile=ca[1])
            else:
                context = ssl.create_default_context(capath=ca[1])
            if len(_CONTEXTS) < 16:
                _CONTEXTS[key] = context
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(f"cannot load CA certificates: {exc}") from None
    return context


class _Run:
    """The HTTP clients of one event loop (or one trio run)."""

    def __init__(
        self, marker: object, http: httpx.AsyncClient, fast: AiohttpTransport | None
    ) -> None:
        self.marker = marker
        self.http = http  # what Pool.get() shows
        self.fast = fast
        self.stock: httpx.AsyncClient | None = None if fast is not None else http
        self.guard: AsyncGenerator[None, None] | None = None
        self.closed = False

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        await self.http.aclose()
        if self.stock is not None and self.stock is not self.http:
            await self.stock.aclose()


async def _close_with_the_run(run: _Run) -> AsyncGenerator[None, None]:
    # An async generator left suspended is closed by the event loop as it shuts
    # down (asyncio.run, anyio.run and trio.run all do), inside that loop: the
    # one place this run's connections can still be closed properly.
    try:
        yield
    finally:
        await run.aclose()


class _NoTransport(httpx.AsyncBaseTransport):
    """For the client that only builds requests (so it makes no SSL context)."""


class Pool:
    """One HTTP client (ours, made lazily per event loop, or the caller's) shared by a family.

    Args:
        http_client: the caller's client, used as given; None to make our own.
        size: our own pool's size.
        base_url: where requests go (decides the proxy, if any).
        max_response_bytes: the largest answer read, as sent and once decoded.
    """

    def __init__(
        self,
        http_client: httpx.AsyncClient | None,
        size: int,
        *,
        base_url: str,
        max_response_bytes: int,
    ) -> None:
        self.owned = http_client is None
        self.http = http_client
        self.size = size
        self.max_response_bytes = max_response_bytes
        self.closed = False
        self._base_url = base_url
        self._run: _Run | None = None
        self._urls: dict[str, httpx.URL] = {}
        self._prefix: list[tuple[str, str]] | None = None
        self._cookies = httpx.Cookies()
        self._has_cookies = False
        self._request_builder: httpx.AsyncClient | None = None
        self._ssl: ssl.SSLContext | None = None
        self._proxy: str | None = None
        self._ca: tuple[str, str] | None = None
        if self.owned:
            self._proxy = _env_proxy(httpx.URL(base_url))
            self._ca = _env_ca()

    # -- our own clients -------------------------------------------------------------

    def _ssl_context(self) -> ssl.SSLContext:
        """httpx's TLS context, from the environment as it was when the client was made."""
        if self._ssl is None:
            self._ssl = _shared_context(self._ca)
        return self._ssl

    def _stock_client(self) -> httpx.AsyncClient:
        """``httpx.AsyncClient()`` as ours would be: httpx's transport, same settings."""
        limits = httpx.Limits(max_connections=self.size, max_keepalive_connections=self.size)
        client = httpx.AsyncClient(
            limits=limits,
            headers=_OWN_HEADERS,
            verify=self._ssl_context(),
            proxy=self._proxy,
            trust_env=False,  # read once, at construction, above
        )
        client._cookies = self._cookies  # one cookie jar for every path, as one client has
        return client

    def _start_run(self, marker: object) -> _Run:
        # Everything a first request needs is made here, before the pipeline
        # takes a slot from the rate limiter, so that request is not late.
        if isinstance(marker, asyncio.AbstractEventLoop) and self._proxy is None:
            fast = AiohttpTransport(max_connections=self.size, ssl_context=self._ssl_context())
            fast.prepare()
            http = httpx.AsyncClient(transport=fast, headers=_OWN_HEADERS, trust_env=False)
            if not mocking_active():  # a patched build_request must not shape our head
                self._head(self._base_url, b"")
            return _Run(marker, http, fast)
        return _Run(marker, self._stock_client(), None)

    def _current(self) -> _Run:
        if self.closed:
            raise ConfigurationError("this AsyncConvoso was closed; create a new one")
        marker = _running()
        run = self._run
        if run is None or run.marker is not marker:
            # A new event loop (a second asyncio.run, say) can't use the old
            # loop's connections, which that loop closed as it ended.
            run = self._run = self._start_run(marker)
        return run

    def get(self) -> httpx.AsyncClient:
        """The HTTP client requests go through now (made on first use, per event loop)."""
        if not self.owned:
            if self.closed:
                raise ConfigurationError("this AsyncConvoso was closed; create a new one")
            assert self.http is not None
            return self.http
        return self._current().http

    def _head(self, url: str, body: bytes) -> list[tuple[str, str]]:
        """The request head httpx would send for this POST, in its order and casing."""
        if self._has_cookies:
            request = self._builder().build_request("POST", url, content=body)
            return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
        if self._prefix is None:
            # Every request goes to base_url + a path: one Host, one head.
            request = self._builder().build_request("POST", self._base_url, content=b"")
            self._prefix = [
                (k.decode("latin-1"), v.decode("latin-1"))
                for k, v in request.headers.raw
                if k.lower() != b"content-length"
            ]
        return [*self._prefix, ("Content-Length", str(len(body)))]

    def _builder(self) -> httpx.AsyncClient:
        if self._request_builder is None:
            self._request_builder = httpx.AsyncClient(
                headers=_OWN_HEADERS, transport=_NoTransport(), trust_env=False
            )
            self._request_builder._cookies = self._cookies
        return self._request_builder

    def _keep_cookies(self, url: str, answer: Answer) -> None:
        response = httpx.Response(
            answer.status_code, headers=answer.headers, request=httpx.Request("POST", url)
        )
        self._cookies.extract_cookies(response)
        self._has_cookies = bool(self._cookies.jar)

    # -- sending -------------------------------------------------------------------------

    async def post(self, url: str, body: bytes, time_limit: float) -> Answer:
        """Send one form POST and return the answer with its body read and decoded.

        ``time_limit`` bounds the whole attempt, not each read: per-read
        limits alone let a server that trickles its answer hold a call for
        minutes. Raises httpx's errors, `TimeoutError` past the limit, or
        `ResponseDecodeError` for an answer past ``max_response_bytes``.
        """
        if not self.owned:
            assert self.http is not None
            return await self._post_httpx(self.get(), url, body, time_limit)
        run = self._current()
        if run.guard is None:
            run.guard = _close_with_the_run(run)
            await run.guard.asend(None)
        fast = run.fast
        if fast is not None and not mocking_active():
            limits = fast.timeout(time_limit, time_limit, time_limit, total=time_limit)
            head = self._head(url, body)
            answer = await fast.post_form(url, body, head, limits, self.max_response_bytes)
            if any(key.lower() == b"set-cookie" for key, _ in answer.raw_headers):
                self._keep_cookies(url, answer)
            return answer
        if run.stock is None:
            run.stock = self._stock_client()
        return await self._post_httpx(run.stock, url, body, time_limit)

    async def _post_httpx(
        self, http: httpx.AsyncClient, url: str, body: bytes, time_limit: float
    ) -> Answer:
        parsed = self._urls.get(url)
        if parsed is None:  # parsed once per URL, not per request
            parsed = self._urls[url] = httpx.URL(url)
        headers = None if self.owned else _FORM_HEADERS
        limit = self.max_response_bytes
        with anyio.fail_after(time_limit):
            async with http.stream(
                "POST", parsed, content=body, headers=headers, timeout=time_limit
            ) as response:
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > limit:
                    raise too_large(url, limit)
                parts: list[bytes] = []
                size = 0
                async for part in response.aiter_bytes():
                    size += len(part)
                    if size > limit or response.num_bytes_downloaded > limit:
                        raise too_large(url, limit)  # leaving the block closes the connection
                    parts.append(part)
        return Answer(response.status_code, b"".join(parts), headers=response.headers)

    async def aclose(self) -> None:
        self.closed = True
        run, self._run = self._run, None
        if not self.owned or run is None:
            return
        try:
            here = _running()
        except RuntimeError:
            here = None
        if run.marker is here:
            await run.aclose()
            if run.guard is not None:
                await run.guard.aclose()
