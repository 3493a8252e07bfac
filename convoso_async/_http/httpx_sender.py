"""Sending through an httpx-family client: a stock httpx2 one of ours, or the caller's own.

The client is used as given, through ``client.stream``, so its transport,
hooks, headers, auth, proxies and mocks all apply. What this adds is what
the pipeline needs on every path: the attempt bounded as a whole, the size
cap (an answer larger than ``max_response_bytes``, as sent or once decoded,
stops being read and its connection is closed), and the family's exceptions
turned into `SendError`.
"""

from __future__ import annotations

import os
import ssl
from typing import Any

import anyio
import httpx2

from convoso_async._errors import ConfigurationError

from .answer import HttpAnswer, SendError, too_large
from .families import Family
from .transport_errors import is_send_error, send_error

__all__ = ["FORM_HEADERS", "HttpxSender", "shared_ssl_context", "stock_client"]

#: What every request says it sends and wants.
FORM_HEADERS = {"content-type": "application/x-www-form-urlencoded", "accept": "application/json"}

#: TLS contexts by where their CAs come from (and that file's state): building one
#: loads ~150 certificates (tens of ms), so clients trusting the same CAs share one.
_CONTEXTS: dict[tuple[object, ...], ssl.SSLContext] = {}


def _ca_source() -> tuple[object, ...]:
    for variable in ("SSL_CERT_FILE", "SSL_CERT_DIR"):
        where = os.environ.get(variable)
        if where:
            try:
                stat = os.stat(where)
            except OSError:
                raise ConfigurationError(f"{variable}={where!r} does not exist") from None
            return (variable, where, stat.st_mtime_ns, stat.st_size)
    return ("default",)


def shared_ssl_context() -> ssl.SSLContext:
    """``httpx2.create_ssl_context()`` as made now (``SSL_CERT_FILE``/``SSL_CERT_DIR`` read).

    The same context httpx2.AsyncClient() would build, from httpx2's own code,
    shared by every client that trusts the same CAs.
    """
    key = _ca_source()
    context = _CONTEXTS.get(key)
    if context is None:
        try:
            context = httpx2.create_ssl_context(trust_env=True)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(f"cannot load CA certificates: {exc}") from None
        if len(_CONTEXTS) < 16:
            _CONTEXTS[key] = context
    return context


def stock_client(family: Family, size: int, ssl_context: ssl.SSLContext) -> Any:
    """``family.AsyncClient()`` as the client's own: pool of ``size``, our headers.

    The environment's proxies are read now, by the family itself (``trust_env``).
    """
    module = family.module
    limits = module.Limits(max_connections=size, max_keepalive_connections=size)
    headers = {**FORM_HEADERS, "user-agent": family.user_agent}
    try:
        return module.AsyncClient(limits=limits, headers=headers, verify=ssl_context)
    except ValueError:
        # A proxy URL the family cannot use. Not named: it may hold a password.
        raise ConfigurationError(
            f"the proxy environment (HTTP_PROXY, HTTPS_PROXY or ALL_PROXY) names a proxy "
            f"{family.name} cannot use; fix it or unset it"
        ) from None


def _raised_for(exc: Exception, url: Any) -> bool:
    """Whether ``exc`` is about the request to ``url``: the client sets ``request`` on every
    error of a request it sends; one raised elsewhere has another request, or none."""
    try:
        request = exc.request  # type: ignore[attr-defined]
    except (AttributeError, RuntimeError):  # RuntimeError: not set
        return False
    return bool(request.url == url)


class HttpxSender:
    """Sends form POSTs through one httpx-family ``AsyncClient``.

    Args:
        client: an ``httpx2.AsyncClient`` or ``httpx.AsyncClient``.
        family: its family.
        owned: the client is ours (it carries our headers, and we close it).
    """

    def __init__(self, client: Any, family: Family, *, owned: bool) -> None:
        self.client = client
        self.family = family
        self.owned = owned
        self._headers = None if owned else FORM_HEADERS
        self._urls: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"<HttpxSender {self.family.name} owned={self.owned}>"

    async def post(self, url: str, body: bytes, time_limit: float, max_bytes: int) -> HttpAnswer:
        """POST ``body`` to ``url``; the answer, read and decoded, within ``time_limit`` seconds.

        Raises `SendError` (``"too large"`` past ``max_bytes``, as sent or decoded).
        """
        parsed = self._urls.get(url)
        if parsed is None:  # parsed once per URL, not per request
            parsed = self._urls[url] = self.family.module.URL(url)
            if len(self._urls) > 64:
                self._urls.clear()
        try:
            with anyio.fail_after(time_limit):
                return await self._exchange(parsed, url, body, time_limit, max_bytes)
        except TimeoutError:
            raise SendError("timeout", f"no complete answer within {time_limit:g}s") from None
        except Exception as exc:
            if is_send_error(exc):
                error = send_error(exc)
                if error.never_connected and not _raised_for(exc, parsed):
                    # Another request's failure (a response hook's own call, after Convoso
                    # answered this one): no proof that this one never left.
                    error.never_connected = False
                raise error from exc
            raise

    async def _exchange(
        self, parsed: Any, url: str, body: bytes, time_limit: float, limit: int
    ) -> HttpAnswer:
        async with self.client.stream(
            "POST", parsed, content=body, headers=self._headers, timeout=time_limit
        ) as response:
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                raise too_large(limit)
            parts: list[bytes] = []
            size = 0
            async for part in response.aiter_bytes():
                size += len(part)
                if size > limit or response.num_bytes_downloaded > limit:
                    raise too_large(limit)  # leaving the block closes the connection
                parts.append(part)
        return HttpAnswer(response.status_code, b"".join(parts), response.headers)

    async def aclose(self) -> None:
        if self.owned:
            await self.client.aclose()
