"""Checks of the options a caller gives: one place, one error type, the range in every message.

The rule: an option that says *how* to work (a timeout, a retry count, a
concurrency, a rate, a deadline, a budget) is checked here, wherever it is
given (the client, ``with_options``, a bulk call, a limiter, the command
line), and a mistake is a `ConfigurationError` that names the option and its
range. What says *what* to change (campaign ids, ``active``) is checked by the
resource and refused with ``TypeError``/``ValueError``, as the design says.

Every check runs before any arithmetic on the value: a Python int can be far
larger than any float (``10**400``), so numbers are compared as they are and
converted only once known to be in range.
"""

from __future__ import annotations

import math
import unicodedata
from typing import TypeVar

from ._defaults import (
    DEFAULT_BASE_URL,
    ENV_AUTH_TOKEN,
    MAX_CONCURRENCY_LIMIT,
    MAX_RESPONSE_BYTES_LIMIT,
    MAX_RETRIES_LIMIT,
)
from ._errors import ConfigurationError
from ._redaction import redact_url

__all__ = [
    "check_base_url",
    "check_callback",
    "check_concurrency",
    "check_count",
    "check_flag",
    "check_max_response_bytes",
    "check_number",
    "check_retries",
    "check_switch",
    "check_timeout",
    "check_token",
]

Kind = TypeVar("Kind")


def _kind(value: object) -> str:
    return type(value).__name__


def _shown(value: float) -> str:
    # An int past float range is not spelled out (10**400 would be 401 digits, or
    # more than int-to-str conversion allows).
    if isinstance(value, int) and abs(value) >= 10**30:
        return "a number too large" if value > 0 else "a number too small"
    return repr(value)


def _range(minimum: float, maximum: float | None, *, above: bool) -> str:
    low = f"more than {minimum:g}" if above else f"at least {minimum:g}"
    return low if maximum is None else f"{low} and at most {maximum:g}"


def check_count(name: str, value: object, *, minimum: int, maximum: int | None = None) -> int:
    """An int in ``[minimum, maximum]`` (``bool`` is refused: ``True`` is not a count)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationError(f"{name} must be an int, not {_kind(value)}")
    if value < minimum or (maximum is not None and value > maximum):
        shown = _shown(value)
        raise ConfigurationError(
            f"{name} must be an int {_range(minimum, maximum, above=False)}, not {shown}"
        )
    return value


def check_number(
    name: str,
    value: object,
    *,
    minimum: float = 0.0,
    above: bool = True,
    maximum: float | None = None,
    unit: str = "seconds",
) -> float:
    """A finite number more than (``above``) or at least ``minimum``, at most ``maximum``.

    Returned as a float; an int too large for a float is out of range, not an
    ``OverflowError``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"{name} must be a number of {unit}, not {_kind(value)}")
    wanted = _range(minimum, maximum, above=above)
    low = value <= minimum if above else value < minimum
    high = maximum is not None and value > maximum
    if isinstance(value, int) and not (low or high):
        try:
            value = float(value)
        except OverflowError:
            high = True
    if low or high or not math.isfinite(value):
        shown = _shown(value)
        raise ConfigurationError(f"{name} must be a finite number of {unit} {wanted}, not {shown}")
    return float(value)


def check_concurrency(max_concurrency: object) -> int:
    """``max_concurrency``, as the client, ``with_options`` and every bulk call take it."""
    return check_count("max_concurrency", max_concurrency, minimum=1, maximum=MAX_CONCURRENCY_LIMIT)


def check_retries(max_retries: object) -> int:
    """``max_retries``, as the client and ``with_options`` take it."""
    return check_count("max_retries", max_retries, minimum=0, maximum=MAX_RETRIES_LIMIT)


def check_timeout(timeout: object) -> float:
    """``timeout``, as the client and ``with_options`` take it: seconds for each HTTP attempt."""
    return check_number("timeout", timeout)


def check_max_response_bytes(max_response_bytes: object) -> int:
    """``max_response_bytes``, as the client and ``with_options`` take it."""
    return check_count(
        "max_response_bytes", max_response_bytes, minimum=1, maximum=MAX_RESPONSE_BYTES_LIMIT
    )


def check_switch(name: str, value: object, kind: type[Kind]) -> Kind | bool:
    """``True`` (one made by default), ``False`` (none), or your own ``kind`` object.

    ``None`` counts as ``False``: a copy's "none" where its original had none.
    """
    if value is None:
        return False
    if isinstance(value, (bool, kind)):
        return value
    raise ConfigurationError(
        f"{name} must be True, False or a {kind.__name__}, not {type(value).__name__}"
    )


def check_token(token: object) -> str:
    """The auth token, stripped; refused when absent or when it cannot be sent."""
    if token is None or (isinstance(token, str) and not token.strip()):
        raise ConfigurationError(
            f"no Convoso auth token: pass auth_token=... or set the {ENV_AUTH_TOKEN} "
            "environment variable"
        )
    if not isinstance(token, str):
        raise ConfigurationError(f"auth_token must be a string, not {type(token).__name__}")
    # A byte-order mark is what an editor left at the start of the file the token came
    # from (Python's strip() keeps it: it is not white space); it is never part of a token.
    token = token.strip().lstrip("\ufeff").strip()
    # Checked here, not at the first request: a token from bytes that were
    # not UTF-8 (lone surrogates) cannot be sent, and a control or invisible formatting
    # character (zero-width space, a BOM inside) is never part of a real token. Neither
    # the token nor the character is named.
    for position, char in enumerate(token):
        if char < " " or unicodedata.category(char) in ("Cc", "Cf", "Cs"):
            raise ConfigurationError(
                f"auth_token is not a valid token: character {position + 1} of "
                f"{len(token)} is a control or invisible character, or cannot be encoded "
                "as UTF-8 "
                f"(check how {ENV_AUTH_TOKEN} or the token file was written)"
            )
    return token


def check_base_url(url: object) -> str:
    """The API root: an http(s) URL without query or fragment, without its trailing slash.

    A message about it shows it with any password in it as ``***``.
    """
    import httpx2  # here, not above: the command line checks options without an HTTP library

    if not isinstance(url, str):
        raise ConfigurationError(f"base_url must be a string, not {type(url).__name__}")
    shown = redact_url(url)
    try:
        parsed = httpx2.URL(url)
    except (httpx2.InvalidURL, TypeError):
        raise ConfigurationError(f"base_url {shown!r} is not a valid URL") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigurationError(
            f"base_url must be an http(s) URL such as {DEFAULT_BASE_URL!r}, not {shown!r}"
        )
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise ConfigurationError(
            f"base_url {shown!r} names port {parsed.port}; a port is 1 to 65535"
        )
    if parsed.query or parsed.fragment:
        raise ConfigurationError("base_url must not carry a query or fragment")
    return url.rstrip("/")


def check_flag(name: str, value: object) -> bool:
    """A real ``bool`` (``"false"`` or ``0`` would read the wrong way round)."""
    if not isinstance(value, bool):
        raise ConfigurationError(f"{name} must be True or False, not {value!r}")
    return value


def check_callback(name: str, value: object) -> None:
    """None, or something to call (checked before the work starts, not when it is called)."""
    if value is not None and not callable(value):
        raise ConfigurationError(f"{name} must be a function (or None), not {type(value).__name__}")
