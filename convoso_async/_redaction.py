"""What the library shows of a secret: never the secret itself.

Two kinds of secret can reach text the library writes: the auth token (sent in
the form body only, but a server may echo it back, or a driver name it), and a
password inside a URL: the base URL's ``user:password@`` (HTTP Basic
credentials), a Redis URL's, or a Redis URL's ``?password=``. Wherever a URL is
shown (a ``repr``, an error message, a log line, the command line's stderr) it
goes through `redact_url`; OpenTelemetry's ``url.full`` gets `telemetry_url`,
the form its conventions name.

The URLs are read as text, not parsed: what a parser refuses (a bad port, a
stray bracket) is exactly what an error message about that URL has to show.
"""

from __future__ import annotations

from urllib.parse import unquote

__all__ = ["MIN_SECRET_LENGTH", "redact_secret", "redact_url", "redact_userinfo", "telemetry_url"]

#: Shorter secrets are not searched for in text: "t" would be found in every
#: word. Convoso's tokens are far longer; only toy tokens in tests are this short.
MIN_SECRET_LENGTH = 8

_MASK = "***"


def redact_secret(text: str, secret: str) -> str:
    """``text`` with every occurrence of ``secret`` (when long enough to search for) as ``***``."""
    if len(secret) < MIN_SECRET_LENGTH or secret not in text:
        return text
    return text.replace(secret, _MASK)


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


def redact_userinfo(text: str, url: str) -> str:
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
