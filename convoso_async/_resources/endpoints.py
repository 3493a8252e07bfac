"""Any Convoso endpoint, for ``post(path, fields)``: the path and fields a caller gives, checked.

Convoso's API has many more endpoints than this library models (leads, lists,
callbacks, DNC, users, reports...); `AsyncConvoso.post` sends to any of them
through the same pipeline as the campaign calls. This module checks what the
caller gives before anything is sent, as the campaigns resource checks its ids:
data, so a mistake is a ``TypeError`` or ``ValueError``.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Mapping
from typing import TypeAlias
from urllib.parse import unquote_to_bytes

from convoso_async._redaction import redact_url

__all__ = ["FieldValue", "check_path", "form_fields"]

#: What a form field's value may be: text, or a number or bool turned into text.
FieldValue: TypeAlias = str | int | float | bool

_EXAMPLE = "'/leads/search'"


def check_path(path: object, base_url: str) -> str:
    """An endpoint's path below ``base_url``, such as ``/leads/search``, as given.

    Refused: anything but a string; a full URL; a path not starting with ``/``;
    a query or fragment (fields go in the form body, where the token is); spaces
    or control characters; a path repeating the base URL's ``/v1``; and anything
    but plain segments below the base URL's path (see `_check_segments`).
    """
    if not isinstance(path, str):
        raise TypeError(f"path must be a string such as {_EXAMPLE}, not {type(path).__name__}")
    if "://" in path or not path.startswith("/") or path.startswith("//"):
        raise ValueError(
            f"path must be an endpoint's path below the base URL, starting with one '/', "
            f"such as {_EXAMPLE}, not {path!r}"
        )
    if "?" in path or "#" in path:
        raise ValueError(
            f"path {path!r} carries a query or fragment: pass the fields as fields={{...}} "
            "(they go in the form body, as the token does)"
        )
    if any(char <= " " or char == "\x7f" or "\ud800" <= char <= "\udfff" for char in path):
        raise ValueError(f"path {path!r} holds a space or a character that cannot be sent")
    if path.strip("/") == "":
        raise ValueError(f"path {path!r} names no endpoint; such as {_EXAMPLE}")
    _check_segments(path)
    if base_url.endswith("/v1") and (path == "/v1" or path.startswith("/v1/")):
        raise ValueError(
            f"path {path!r} repeats the base URL's /v1 ({redact_url(base_url)}): "
            f"pass {path[3:] or '/'!r}"
        )
    return path


def _check_segments(path: str) -> None:
    """Refuse a path that is not a sequence of plain segments below the base URL's path.

    A ``.`` or ``..`` segment moves the request elsewhere on the server (HTTP
    libraries resolve them; servers and proxies decode ``%2e%2e`` and resolve it
    too), with the token in its body. So a segment is refused when, decoded as
    often as it decodes (``%252e`` is ``%2e`` is ``.``), read as a server may
    (``\\`` as ``/``, ``;`` starting parameters, compatibility forms of ``.``), it
    holds a dot segment, a ``/`` or ``\\``, a control character (``%00``: a server in C
    may end the segment there), or bytes that are not UTF-8. Empty
    segments (``//``) are refused too; one trailing ``/`` is kept.
    """
    segments = path[1:].split("/")
    if segments[-1] == "":
        segments.pop()
    for segment in segments:
        if segment == "":
            raise ValueError(f"path {path!r} has an empty segment ('//'); such as {_EXAMPLE}")
        plain = _decoded(segment)
        if plain is None:
            raise ValueError(
                f"path {path!r}: segment {segment!r} is percent-encoded bytes that are not "
                "UTF-8; pass the endpoint's path as Convoso's reference writes it"
            )
        if any(char < " " or char == "\x7f" for char in plain):
            raise ValueError(
                f"path {path!r}: segment {segment!r} holds an encoded control character "
                "(NUL, CR, LF, tab...), which no endpoint's path has; a server may cut the "
                f"segment there. Pass plain segments such as {_EXAMPLE}"
            )
        if "/" in plain or "\\" in plain:
            raise ValueError(
                f"path {path!r}: segment {segment!r} holds a '/' or '\\' (encoded or not); "
                f"pass plain segments such as {_EXAMPLE}"
            )
        core = unicodedata.normalize("NFKC", plain).partition(";")[0].strip()
        if core and set(core) == {"."}:
            raise ValueError(
                f"path {path!r} leaves the base URL's path: {segment!r} is a '.' or '..' "
                f"segment (in some encoding); pass an endpoint's path below it, such as {_EXAMPLE}"
            )


def _decoded(segment: str) -> str | None:
    """``segment`` percent-decoded until nothing changes; None if that is not UTF-8."""
    text = segment
    while "%" in text:
        try:
            decoded = unquote_to_bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            return None
        if decoded == text:
            break
        text = decoded
    return text


def form_fields(fields: object) -> dict[str, str]:
    """The form fields to send, as text: ``{"list_id": 5, "active": True}`` -> ``list_id=5``,
    ``active=true``. None is no field.

    Names are non-empty strings, never one Convoso would read as ``auth_token``
    (the client sends its own), nor one it would drop (``[x]``, a name starting with NUL),
    nor two it would read as one (``first name`` and ``first_name``: the later would
    silently replace the earlier; ``tags[]`` and ``tags[x]`` make one array, as meant).
    Values are ``str``, ``int``, finite ``float`` or ``bool`` (sent ``true``/``false``,
    as Convoso writes them); ``None`` and anything else are refused rather than guessed at.
    A value is never shown in an error message: it may be a phone number or a name.
    """
    if fields is None:
        return {}
    if not isinstance(fields, Mapping):
        raise TypeError(
            "fields must be a mapping of name -> value such as {'list_id': '5'}, "
            f"not {type(fields).__name__}"
        )
    form: dict[str, str] = {}
    read_as: dict[bytes, tuple[str, bool]] = {}  # what PHP files each name under, and as an array
    for name, value in fields.items():
        if not isinstance(name, str):
            raise TypeError(f"a field name must be a string, not {type(name).__name__}")
        if not name or not _encodable(name):
            raise ValueError(f"field name {name!r} is empty or cannot be sent")
        if _files_as_token(name):
            raise ValueError(
                f"field {name!r} would be read by Convoso (PHP) as auth_token, replacing the "
                "auth token the client sends itself (auth_token=... or CONVOSO_AUTH_TOKEN): "
                "leave it out of fields"
            )
        _check_read_once(name, read_as)
        form[name] = _text(name, value)
    return form


def _text(name: str, value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        if not _encodable(value):
            raise ValueError(f"field {name!r} holds text that cannot be encoded as UTF-8")
        return value
    if isinstance(value, int):
        try:
            return str(value)
        except ValueError:  # more digits than int-to-str conversion allows
            raise ValueError(f"field {name!r} is a number too large to send") from None
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"field {name!r} is not a finite number")
        return str(value)
    if value is None:
        raise TypeError(f"field {name!r} is None: leave it out, or send '' for an empty value")
    raise TypeError(f"field {name!r} must be a str, int, float or bool, not {type(value).__name__}")


def _encodable(text: str) -> bool:
    return not any("\ud800" <= char <= "\udfff" for char in text)


def _files_as_token(name: str) -> bool:
    """Whether Convoso (PHP) could read form field ``name`` as ``auth_token``.

    The client sends its token first; a later field PHP files under the same
    name replaces it. PHP reads a form body's name by percent-decoding it (the
    client encodes it, so PHP gets the name's UTF-8 bytes back), then, in
    ``php_register_variable_ex``: the name ends at its first NUL; leading
    spaces are dropped; ``' '`` and ``'.'`` become ``'_'`` up to the first
    ``'['``; a ``'['`` with a ``']'`` anywhere after it makes the name an array
    filed under what comes before (``auth_token[]``, ``auth_token[x]``,
    ``auth_token[ ]``), which still replaces the token; an unclosed ``'['``
    becomes ``'_'`` and the rest is kept (PHP 8 also turns the rest's ``' '``,
    ``'.'`` and ``'['`` into ``'_'``; PHP 7 does not); nothing before the
    first ``'['`` means the field is dropped.

    Beyond PHP's exact reading, a name is refused when its reading differs from
    ``auth_token`` only in ASCII case, or when it reads as ``auth_token`` once
    percent-decoded again (``auth%5Ftoken``): no real field is named so, and a
    layer before PHP that folds case or decodes twice must not turn it into the token.
    """
    raw = name.encode()
    readings = _php_readings(raw) | _php_readings(unquote_to_bytes(raw.replace(b"+", b" ")))
    return any(reading.lower() == b"auth_token" for reading in readings)


def _check_read_once(name: str, read_as: dict[bytes, tuple[str, bool]]) -> None:
    """Refuse ``name`` when PHP drops it, or files it where an earlier name of ``read_as`` is."""
    readings = _php_readings(name.encode())
    if not readings:
        raise ValueError(
            f"field name {name!r} would be dropped by Convoso (PHP reads no name in it: "
            "nothing before its first '[' or NUL); name the field as Convoso's reference does"
        )
    array = _php_array(name.encode())
    for reading in readings:
        earlier = read_as.get(reading)
        if earlier is not None and not (earlier[1] and array):
            raise ValueError(
                f"fields {earlier[0]!r} and {name!r} are one field to Convoso (PHP reads both "
                f"as {reading.decode(errors='replace')!r}): the later would silently replace "
                "the earlier; send one of them"
            )
        read_as[reading] = (name, array)


def _php_array(raw: bytes) -> bool:
    """Whether PHP files the decoded name ``raw`` as an array element (``tags[]``, ``a[x]``)."""
    _, bracket, rest = raw.partition(b"\0")[0].lstrip(b" ").partition(b"[")
    return bool(bracket) and b"]" in rest


#: PHP 8 turns these into '_' after an unclosed '['.
_AFTER_OPEN_BRACKET = bytes.maketrans(b" .[", b"___")


def _php_readings(raw: bytes) -> set[bytes]:
    """The top-level ``$_POST`` keys PHP 7 and PHP 8 file the decoded name ``raw`` under."""
    name = raw.partition(b"\0")[0].lstrip(b" ")
    head, bracket, rest = name.partition(b"[")
    head = head.replace(b" ", b"_").replace(b".", b"_")
    if not head:
        return set()  # PHP drops a field without a name
    if not bracket or b"]" in rest:
        return {head}
    return {head + b"_" + rest, head + b"_" + rest.translate(_AFTER_OPEN_BRACKET)}
