"""What the library shows of a secret: never the secret itself.

Two kinds of secret can reach text the library writes: the auth token (sent in
the form body only, but a server may echo it back, or an HTTP library's message
quote it): any text that may carry it goes through `redact`, the one place it
is masked; and a password inside a URL: the base URL's ``user:password@`` (HTTP Basic
credentials), a Redis URL's, or a Redis URL's ``?password=``. Wherever a URL is
shown (a ``repr``, an error message, a log line, the command line's stderr) it
goes through `redact_url`; OpenTelemetry's ``url.full`` gets `telemetry_url`,
the form its conventions name.

The URLs are read as text, not parsed: what a parser refuses (a bad port, a
stray bracket) is exactly what an error message about that URL has to show.
"""

from __future__ import annotations

from typing import overload
from urllib.parse import unquote

__all__ = ["MIN_SECRET_LENGTH", "redact", "redact_url", "telemetry_url"]

#: Shorter secrets are not searched for in text: "t" would be found in every
#: word. Convoso's tokens are far longer; only toy tokens in tests are this short.
MIN_SECRET_LENGTH = 8

_MASK = "***"


@overload
def redact(text: str, token: str, url: str = "") -> str: ...


@overload
def redact(text: bytes, token: str) -> bytes: ...


def redact(text: str | bytes, token: str, url: str = "") -> str | bytes:
    """``text`` with ``token`` (if long enough to search for) and ``url``'s credentials masked.

    ``text`` is a message (an HTTP library's, about ``url``: it may quote the URL,
    or its ``user:password@`` part alone) or an answer's raw body (bytes: the
    token only, before anything is built from it).

    >>> redact("refused: https://u:pw@h/v1 (token 0123456789)", "0123456789", "https://u:pw@h/v1")
    'refused: https://u:***@h/v1 (token ***)'
    """
    if isinstance(text, bytes):
        if len(token) < MIN_SECRET_LENGTH or token.encode() not in text:
            return text
        return text.replace(token.encode(), _MASK.encode())
    if len(token) >= MIN_SECRET_LENGTH and token in text:
        text = text.replace(token, _MASK)
    return _redact_userinfo(text, url)


def _split(url: str) -> tuple[str, str, str, str]:
    """``url`` as (up to and with ``//``, userinfo, the rest of the authority, what follows).

    The authority ends at the first ``/``, ``?`` or ``#`` after ``//``, and its
    userinfo at the last ``@`` in it, as RFC 3986 (and ``urllib.parse``) read it.
    """
    head, slashes, rest = url.partition("//")
    if not slashes:
        return url, "", "", ""
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, tail = rest[:end], rest[end:]
    userinfo, at, host = authority.rpartition("@")
    if not at:
        return head + slashes, "", authority, tail
    return head + slashes, userinfo, host, tail


def redact_url(url: str) -> str:
    """``url`` with its password (in the user part or the query) replaced by ``***``.

    >>> redact_url("redis://app:s3cret@cache:6379/0")
    'redis://app:***@cache:6379/0'
    >>> redact_url("https://key@api.example.com/v1")
    'https://***@api.example.com/v1'
    >>> redact_url("https://api.convoso.com/v1")
    'https://api.convoso.com/v1'
    """
    start, userinfo, host, tail = _split(url)
    if userinfo:
        user, colon, _ = userinfo.partition(":")
        # Without a colon the whole user part may be a password in the writer's mind.
        start = f"{start}{user}:{_MASK}@" if colon else f"{start}{_MASK}@"
    path, question, query = tail.partition("?")
    if question and "password" in query.lower():
        query, hash_, fragment = query.partition("#")
        pieces = []
        for piece in query.split("&"):
            name = piece.partition("=")[0]
            pieces.append(f"{name}={_MASK}" if unquote(name).lower() == "password" else piece)
        tail = f"{path}?{'&'.join(pieces)}{hash_}{fragment}"
    return f"{start}{host}{tail}"


def telemetry_url(url: str) -> str:
    """``url`` for OpenTelemetry's ``url.full``: credentials as ``REDACTED:REDACTED``.

    The HTTP semantic conventions forbid credentials in ``url.full`` and name this form.

    >>> telemetry_url("http://user:pw@h:8080/v1/leads/insert")
    'http://REDACTED:REDACTED@h:8080/v1/leads/insert'
    """
    start, userinfo, host, tail = _split(url)
    return f"{start}REDACTED:REDACTED@{host}{tail}" if userinfo else url


def _redact_userinfo(text: str, url: str) -> str:
    """``text`` (an HTTP library's message about ``url``) with ``url``'s credentials masked.

    A library may quote the URL it was given, or its ``user:password@`` part alone.
    """
    userinfo = _split(url)[1]
    if not userinfo:
        return text
    shown = _split(redact_url(url))[1]  # "user:***" or "***"
    text = text.replace(f"{userinfo}@", f"{shown}@")
    if len(userinfo) >= MIN_SECRET_LENGTH:
        text = text.replace(userinfo, shown)
    return text
