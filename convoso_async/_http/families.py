"""The httpx family: httpx2 (the maintained httpx, ours by default) and the old httpx.

The two are the same API in two packages with different classes: a caller's
own client may be either, their exceptions are different classes, and a
mocking tool patches one family only. Everything this library needs to know
about which is which lives here:

- `family_of`: the family of a caller's client (``httpx`` is never imported
  here: a caller holding an ``httpx.AsyncClient`` has imported it already);
- `Family.mocked`: whether a mocking tool (respx in any mode, pytest-httpx,
  pytest-httpx2, ``unittest.mock`` on the client's methods) has patched that
  family right now, one identity test per patch point;
- `send_error`: a family's exception as this library's neutral `SendError`,
  with what really went wrong (a certificate, a refused connection, a name
  that does not resolve) in its message.

After ``httpx2.alias_httpx()``, ``import httpx`` is httpx2: one family.
"""

from __future__ import annotations

import errno
import socket
import ssl
import sys
from types import ModuleType

import httpcore2
import httpx2

from convoso_async._defaults import USER_AGENT_PREFIX

from .answer import SendError, never_connected

__all__ = ["HTTPX2", "Family", "family_of", "old_httpx", "send_error"]


_UNKNOWN = object()


def _library_of(value: object) -> str:
    return str(getattr(value, "__module__", "") or "").split(".")[0]


def _genuine(owner: type, name: str) -> object:
    """What ``owner.name`` is when nothing patched it (`_UNKNOWN` if it is patched now)."""
    value = vars(owner).get(name)
    if value is None:
        return None  # inherited: a patch would add it to this class
    if _library_of(value) != owner.__module__.split(".")[0]:
        return _UNKNOWN  # patched before we looked: learnt once the patch is gone
    return value


class Family:
    """One httpx family: its module, its user agent, the points a mocking tool patches."""

    def __init__(self, httpx_module: ModuleType, httpcore_module: ModuleType | None) -> None:
        self.module = httpx_module
        self.name: str = httpx_module.__name__
        self.version: str = httpx_module.__version__
        #: What the client's own requests say they are: the library, the language, the HTTP library.
        self.user_agent = f"{USER_AGENT_PREFIX} {self.name}/{self.version}"
        # Where mocking tools hook in: respx (httpcore mode patches the pools'
        # handle_async_request, httpx mode AsyncClient._transport_for_url),
        # pytest-httpx (AsyncHTTPTransport.handle_async_request), pytest-httpx2
        # (respx on httpcore2), unittest.mock users (what AsyncClient.stream calls).
        client, transport = httpx_module.AsyncClient, httpx_module.AsyncHTTPTransport
        watched: list[tuple[type, str]] = [
            (client, "stream"),
            (client, "build_request"),
            (client, "send"),
            (client, "_transport_for_url"),
            (transport, "handle_async_request"),
        ]
        self.httpcore = httpcore_module
        if httpcore_module is not None:  # the old httpx imports it on first use
            watched += [
                (httpcore_module.AsyncConnectionPool, "handle_async_request"),
                (httpcore_module.AsyncHTTPConnection, "handle_async_request"),
                (httpcore_module.AsyncHTTPProxy, "handle_async_request"),
            ]
        self.watched = tuple(watched)
        self._originals = [_genuine(owner, name) for owner, name in self.watched]

    def __repr__(self) -> str:
        return f"<Family {self.name} {self.version}>"

    def mocked(self) -> bool:
        """True while a mocking tool has replaced part of this family."""
        for index, (owner, name) in enumerate(self.watched):
            original = self._originals[index]
            if owner.__dict__.get(name) is original:
                continue
            if original is _UNKNOWN:
                # First seen patched: the genuine one is known once the patch is gone.
                learnt = _genuine(owner, name)
                self._originals[index] = learnt
                if learnt is not _UNKNOWN:
                    continue
            return True
        return False

    def owns(self, client: object) -> bool:
        return isinstance(client, self.module.AsyncClient)


HTTPX2 = Family(httpx2, httpcore2)

_old: Family | None = None


def old_httpx() -> Family | None:
    """The old httpx family, if a caller (or a test tool) imported it; never imports it."""
    global _old
    module = sys.modules.get("httpx")
    if module is None or module is httpx2:  # not imported, or aliased to httpx2
        return None
    httpcore = sys.modules.get("httpcore")
    if _old is None or _old.module is not module or _old.httpcore is not httpcore:
        _old = Family(module, httpcore)
    return _old


def family_of(client: object) -> Family | None:
    """The family ``client`` is an ``AsyncClient`` of, or None."""
    if HTTPX2.owns(client):
        return HTTPX2
    old = old_httpx()
    return old if old is not None and old.owns(client) else None


def _errors_of(module: ModuleType) -> tuple[type[BaseException], ...]:
    return (module.HTTPError, module.StreamError, module.InvalidURL)


def is_send_error(exc: BaseException) -> bool:
    """Whether ``exc`` is an exception of either httpx family."""
    if isinstance(exc, _errors_of(httpx2)):
        return True
    old = old_httpx()
    return old is not None and isinstance(exc, _errors_of(old.module))


def send_error(exc: BaseException) -> SendError:
    """A family's exception (``exc``) as a `SendError` that says what went wrong.

    Classified by the family's own exception type, by name, so both families
    map alike: a timeout is a timeout, a decoding failure a decoding failure.
    """
    names = {cls.__name__ for cls in type(exc).__mro__}
    if "DecodingError" in names:
        return SendError("decode", str(exc) or "the answer's Content-Encoding does not decode")
    timed_out = "TimeoutException" in names
    cause = _root_cause(exc)
    if cause is not None and type(cause).__module__.startswith("aiohttp"):
        # A caller's client on an aiohttp transport (httpx-aiohttp, say) maps any
        # aiohttp connection error, a dropped keep-alive one too, to ConnectTimeout:
        # decide from aiohttp's own error.
        timed_out = isinstance(cause, TimeoutError) or type(cause).__name__ in {
            "ServerTimeoutError",
            "ConnectionTimeoutError",
        }
    # Whether the connection was ever made, from aiohttp's own error when one is in
    # the chain (it may not be the root: a refusal's OSError lies below it), for the
    # same reason: the httpx class such a transport raises says nothing about it.
    aiohttp_link = next((e for e in _chain(exc) if _library_of(type(e)) == "aiohttp"), None)
    unsent = never_connected(exc if aiohttp_link is None else aiohttp_link)
    detail = describe(exc)
    if timed_out:
        return SendError("timeout", detail, never_connected=unsent)
    if "TransportError" not in names:
        detail = f"{type(exc).__name__}: {detail}"
    return SendError("connection", detail, never_connected=unsent)


def _root_cause(exc: BaseException) -> BaseException | None:
    seen = 0
    cause = exc.__cause__ or exc.__context__
    while cause is not None and seen < 8:
        nxt = cause.__cause__ or cause.__context__
        if nxt is None:
            return cause
        cause, seen = nxt, seen + 1
    return cause


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc``, its causes, and what exception groups among them hold (trio's connect)."""
    found: list[BaseException] = []
    todo: list[BaseException] = [exc]
    while todo and len(found) < 16:
        current = todo.pop(0)
        if current in found:
            continue
        found.append(current)
        todo.extend(getattr(current, "exceptions", ()))  # an ExceptionGroup's members
        following = current.__cause__ or current.__context__
        if following is not None:
            todo.append(following)
    return found


def describe(exc: BaseException) -> str:
    """The failure in words, with its cause: a certificate, a refusal, a name, a reset.

    An HTTP library's message is often only the class name (an httpx family's on
    trio, say); the cause in the chain says what to do about it.
    """
    message = str(exc) or type(exc).__name__
    for link in _chain(exc):
        reason = _reason(link)
        if reason is not None:
            return message if reason in message else f"{reason} ({message})"
    return message


def _reason(exc: BaseException) -> str | None:
    if isinstance(exc, ssl.SSLCertVerificationError):
        # (aiohttp's certificate error is one too, without the attributes)
        why = getattr(exc, "verify_message", None) or getattr(exc, "reason", None)
        if why is None:
            return None  # its cause, further down the chain, says more
        return (
            f"the server's TLS certificate was not trusted ({why}): check the base URL, or "
            "the CA certificates (SSL_CERT_FILE, SSL_CERT_DIR)"
        )
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed: {getattr(exc, 'reason', None) or exc}"
    if isinstance(exc, socket.gaierror):
        return f"the host name did not resolve ({exc.strerror or exc})"
    if isinstance(exc, ConnectionRefusedError) or getattr(exc, "errno", None) == errno.ECONNREFUSED:
        return "the connection was refused: nothing listens at that address and port"
    if isinstance(exc, ConnectionResetError):
        return "the connection was reset by the peer"
    return None
