"""Every HTTP library's transport errors as this library's, in one table.

A sender's failure becomes a neutral `SendError` (`send_error`), and a
`SendError` becomes the public error the pipeline raises (`convoso_error`).
Each HTTP family's exceptions are told apart by type: `ERROR_CLASSES` names,
per family, which of its classes mean what; they are looked up once per
family module (``isinstance`` against the family's own classes, never a
comparison of class names), so httpx2, the old httpx and aiohttp map alike.

The old httpx is never imported here, nor aiohttp: an exception of theirs
exists only once its module is in ``sys.modules``.

Whether a connection was ever made (``SendError.never_connected``): no byte
of the request left, so the server cannot have processed it, when the error
is the httpx families' ``ConnectError`` (refused, a name that does not
resolve, a TLS handshake refused), ``ConnectTimeout`` or ``PoolTimeout`` (no
free connection in time), or aiohttp's ``ClientConnectorError`` (the same
failures, its certificate, SSL, DNS and proxy-connect errors included) or
``ConnectionTimeoutError`` (connecting, or waiting for a free connection,
timed out). Everything else (a reset, a read or write error, a read
timeout, an answer cut short) may have come after the request reached the server.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
import sys
from types import ModuleType

import attrs
import httpx2

from convoso_async._errors import (
    APIConnectionError,
    APITimeoutError,
    ConvosoError,
    ResponseDecodeError,
)

from .answer import SendError

__all__ = [
    "ERROR_CLASSES",
    "aiohttp_send_error",
    "convoso_error",
    "describe",
    "is_send_error",
    "send_error",
]

#: Per family, its exception classes by what they mean (attribute paths in its
#: module; a family lacking one has none of that meaning). ``every``: all the
#: family's errors; ``decode``: the bytes came but do not decompress;
#: ``timeout``: no complete answer in time; ``connect_timeout``: connecting
#: timed out; ``described``: errors whose message says what happened without
#: their class name; ``unsent``: no connection was made (see above).
ERROR_CLASSES: dict[str, dict[str, tuple[str, ...]]] = {
    "httpx": {
        "every": ("HTTPError", "StreamError", "InvalidURL"),
        "decode": ("DecodingError",),
        "timeout": ("TimeoutException",),
        "connect_timeout": ("ConnectTimeout",),
        "described": ("TransportError",),
        "unsent": ("ConnectError", "ConnectTimeout", "PoolTimeout"),
    },
    "aiohttp": {
        "every": ("ClientError", "http_exceptions.HttpProcessingError"),
        "decode": (),
        "timeout": ("ServerTimeoutError",),
        "connect_timeout": ("ConnectionTimeoutError",),
        "described": (),  # aiohttp_send_error describes every one
        "unsent": ("ClientConnectorError", "ConnectionTimeoutError"),
    },
}

Classes = tuple[type[BaseException], ...]


@attrs.frozen
class _ErrorClasses:
    """One family module's exception classes by meaning (see `ERROR_CLASSES`)."""

    every: Classes
    decode: Classes
    timeout: Classes
    connect_timeout: Classes
    described: Classes
    unsent: Classes


def _resolve(module: ModuleType, path: str) -> type[BaseException] | None:
    value: object = module
    for name in path.split("."):
        value = getattr(value, name, None)
    return value if isinstance(value, type) and issubclass(value, BaseException) else None


_RESOLVED: dict[tuple[str, ModuleType], _ErrorClasses] = {}


def _classes(kind: str, module: ModuleType) -> _ErrorClasses:
    """``module``'s classes by meaning, looked up once per module object."""
    key = (kind, module)
    classes = _RESOLVED.get(key)
    if classes is None:
        found = {
            meaning: tuple(c for c in (_resolve(module, p) for p in paths) if c is not None)
            for meaning, paths in ERROR_CLASSES[kind].items()
        }
        classes = _RESOLVED[key] = _ErrorClasses(**found)
    return classes


def _httpx_family_of(exc: BaseException) -> _ErrorClasses | None:
    """The classes of the httpx family ``exc`` belongs to (httpx2, or the old httpx), or None."""
    mine = _classes("httpx", httpx2)
    if isinstance(exc, mine.every):
        return mine
    old = sys.modules.get("httpx")
    if old is None or old is httpx2:  # not imported, or aliased to httpx2
        return None
    theirs = _classes("httpx", old)
    return theirs if isinstance(exc, theirs.every) else None


def _aiohttp() -> _ErrorClasses | None:
    module = sys.modules.get("aiohttp")
    return None if module is None else _classes("aiohttp", module)


def is_send_error(exc: BaseException) -> bool:
    """Whether ``exc`` is an exception of either httpx family."""
    return _httpx_family_of(exc) is not None


def send_error(exc: BaseException) -> SendError:
    """An httpx family's exception (``exc``) as a `SendError` that says what went wrong."""
    family = _httpx_family_of(exc)
    assert family is not None, "only an httpx family's exception is mapped here"
    if isinstance(exc, family.decode):
        return SendError("decode", str(exc) or "the answer's Content-Encoding does not decode")
    timed_out = isinstance(exc, family.timeout)
    unsent = isinstance(exc, family.unsent)
    aiohttp = _aiohttp()
    if aiohttp is not None:
        timed_out, unsent = _as_aiohttp_says(exc, aiohttp, timed_out, unsent)
    detail = describe(exc)
    if timed_out:
        return SendError("timeout", detail, never_connected=unsent)
    if not isinstance(exc, family.described):
        detail = f"{type(exc).__name__}: {detail}"
    return SendError("connection", detail, never_connected=unsent)


def _as_aiohttp_says(
    exc: BaseException, aiohttp: _ErrorClasses, timed_out: bool, unsent: bool
) -> tuple[bool, bool]:
    """Whether ``exc`` timed out and never connected, as aiohttp's own error in its chain says.

    A caller's client on an aiohttp transport (httpx-aiohttp, say) maps any aiohttp
    connection error, a dropped keep-alive one too, to ``ConnectTimeout``: the httpx
    class says nothing about either, so aiohttp's error decides (for the connection,
    wherever it is in the chain: a refusal's OSError lies below it).
    """
    cause = _root_cause(exc)
    if cause is not None and isinstance(cause, aiohttp.every):
        timed_out = isinstance(cause, (TimeoutError, *aiohttp.timeout))
    link = next((e for e in _chain(exc) if isinstance(e, aiohttp.every)), None)
    if link is not None:
        unsent = isinstance(link, aiohttp.unsent)
    return timed_out, unsent


def aiohttp_send_error(exc: BaseException) -> SendError:
    """aiohttp's exception (or an ``asyncio.TimeoutError``) as the `SendError` httpx2's would be.

    A connect timeout or a refused connection says the request never left, as
    httpx2's ``ConnectTimeout`` and ``ConnectError`` do.
    """
    aiohttp = _aiohttp()
    assert aiohttp is not None, "only the aiohttp sender's exceptions are mapped here"
    unsent = isinstance(exc, aiohttp.unsent)
    named = exc or type(exc).__name__
    if isinstance(exc, aiohttp.connect_timeout):
        return SendError("timeout", f"connect timed out ({named})", never_connected=unsent)
    if isinstance(exc, (*aiohttp.timeout, asyncio.TimeoutError)):
        return SendError("timeout", f"read timed out ({named})")
    return SendError("connection", describe(exc), never_connected=unsent)


def convoso_error(
    exc: SendError, detail: str, *, path: str, campaign_id: str | None
) -> ConvosoError:
    """The public error for a failed send (``detail``: its message, already redacted)."""
    if exc.kind == "too large":
        return ResponseDecodeError(f"POST {path}: {detail}")
    if exc.kind == "decode":
        # The bytes arrived but do not decompress: a bad answer, not a
        # network failure, and asking again would get the same.
        return ResponseDecodeError(
            f"POST {path}: the answer's Content-Encoding does not decode: {detail}"
        )
    if exc.kind == "timeout":
        return APITimeoutError(
            f"timed out ({detail})",
            path=path,
            campaign_id=campaign_id,
            never_connected=exc.never_connected,
        )
    return APIConnectionError(
        detail, path=path, campaign_id=campaign_id, never_connected=exc.never_connected
    )


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
