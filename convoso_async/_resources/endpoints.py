"""Any Convoso endpoint, for ``post(path, fields)``: the path and fields a caller gives, checked.

Convoso's API has many more endpoints than this library models (leads, lists,
callbacks, DNC, users, reports...); `AsyncConvoso.post` sends to any of them
through the same pipeline as the campaign calls. This module checks what the
caller gives before anything is sent, as the campaigns resource checks its ids:
data, so a mistake is a ``TypeError`` or ``ValueError``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TypeAlias

__all__ = ["FieldValue", "check_path", "form_fields"]

#: What a form field's value may be: text, or a number or bool turned into text.
FieldValue: TypeAlias = str | int | float | bool

_EXAMPLE = "'/leads/search'"


def check_path(path: object, base_url: str) -> str:
    """An endpoint's path below ``base_url``, such as ``/leads/search``, as given.

    Refused: anything but a string; a full URL; a path not starting with ``/``;
    a query or fragment (fields go in the form body, where the token is); spaces
    or control characters; a path repeating the base URL's ``/v1``.
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
    if base_url.endswith("/v1") and (path == "/v1" or path.startswith("/v1/")):
        raise ValueError(
            f"path {path!r} repeats the base URL's /v1 ({base_url}): pass {path[3:] or '/'!r}"
        )
    return path


def form_fields(fields: object) -> dict[str, str]:
    """The form fields to send, as text: ``{"list_id": 5, "active": True}`` -> ``list_id=5``,
    ``active=true``. None is no field.

    Names are non-empty strings, never one Convoso would read as ``auth_token``
    (the client sends its own). Values are ``str``, ``int``, finite ``float`` or
    ``bool`` (sent ``true``/``false``, as Convoso writes them); ``None`` and
    anything else are refused rather than guessed at. A value is never shown in
    an error message: it may be a phone number or a name.
    """
    if fields is None:
        return {}
    if not isinstance(fields, Mapping):
        raise TypeError(
            "fields must be a mapping of name -> value such as {'list_id': '5'}, "
            f"not {type(fields).__name__}"
        )
    form: dict[str, str] = {}
    for name, value in fields.items():
        if not isinstance(name, str):
            raise TypeError(f"a field name must be a string, not {type(name).__name__}")
        if not name or not _encodable(name):
            raise ValueError(f"field name {name!r} is empty or cannot be sent")
        if _files_as_token(name):
            raise ValueError(
                f"field {name!r} would stand for the auth token, which the client sends "
                "itself (auth_token=... or CONVOSO_AUTH_TOKEN): leave it out of fields"
            )
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
    """Whether PHP (so Convoso) would read field ``name`` as ``auth_token``.

    PHP drops leading spaces, reads ``' '`` and ``'.'`` (and an unclosed ``'['``)
    as ``'_'``, and files ``a[x]`` under ``a``; case is ignored here for safety.
    """
    name = name.lstrip(" ")
    head, bracket, tail = name.partition("[")
    if bracket and "]" not in tail:
        head = f"{head}_{tail}"
    return head.replace(" ", "_").replace(".", "_").lower() == "auth_token"
