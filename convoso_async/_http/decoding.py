"""Decoding one answer: Convoso's envelope read, its failures mapped onto the error tree.

Convoso answers many errors with HTTP 200 and ``success: false``; the code,
or failing one the wording, of such an answer says which error it is
(`decode_answer` says in what order status and body are read).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from convoso_async._defaults import DEFAULT_BASE_URL
from convoso_async._errors import (
    APIError,
    APIStatusError,
    AuthenticationError,
    CampaignNotFoundError,
    ConvosoError,
    InvalidStatusError,
    PermissionDeniedError,
    RateLimitError,
    ResponseDecodeError,
    ServerError,
    UnexpectedResponseError,
)
from convoso_async._pacing.retry import parse_retry_after
from convoso_async._redaction import redact, redact_url

__all__ = ["decode_answer"]

# Convoso's error codes, then the wordings of its answers that come without a
# known code. Anything else stays a plain APIError. 401 and 403 arrive as body
# codes too (Convoso's API glossary: 401 "missing or invalid token", 403 "token
# is invalid for the office"). Wordings, gathered from the API reference, the
# issue tracker and public Convoso clients; each has a test
# (tests/test_auth_wordings.py). Permission first: "insufficient permissions
# for this auth token" is about rights, not about the token.
_ERRORS_BY_CODE: dict[int, type[APIError]] = {
    401: AuthenticationError,
    403: PermissionDeniedError,
    6026: CampaignNotFoundError,
    6080: InvalidStatusError,
}
_ERRORS_BY_TEXT: tuple[tuple[str, type[APIError]], ...] = (
    ("permission", PermissionDeniedError),  # "Insufficient permissions (for this operation)"
    ("forbidden", PermissionDeniedError),
    ("not permitted", PermissionDeniedError),
    ("authentication", AuthenticationError),  # "Invalid/Missing authentication token"
    ("auth token", AuthenticationError),  # "Auth token is invalid", "No auth token"
    ("auth_token", AuthenticationError),  # "auth_token is required"
    ("invalid token", AuthenticationError),
    ("token is invalid", AuthenticationError),
    ("token expired", AuthenticationError),
    ("expired token", AuthenticationError),
    ("token has expired", AuthenticationError),
    ("unauthorized", AuthenticationError),
    ("unauthorised", AuthenticationError),
    ("unauthenticated", AuthenticationError),
    ("invalid api key", AuthenticationError),
    ("campaign not found", CampaignNotFoundError),
    ("invalid campaign", CampaignNotFoundError),
    ("unknown campaign", CampaignNotFoundError),
    ("no such campaign", CampaignNotFoundError),
    ("status must be", InvalidStatusError),
    ("invalid status", InvalidStatusError),
)
_MESSAGE_FIELDS = ("error", "text", "message")
_MAX_MESSAGE = 300


def decode_answer(
    status_code: int,
    headers: Mapping[str, str],
    content: bytes,
    *,
    path: str,
    campaign_id: str | None = None,
    secret: str = "",
    base_url: str = "",
) -> dict[str, Any]:
    """Decode one answer: the JSON object on success, else raise the mapped error.

    Order matters: 429 and 5xx are classified by status first (they are
    retried even when a body says ``success: false``); then a ``success:
    false`` body is an `APIError` whatever the status; then any other non-2xx
    is an `APIStatusError`; then a 2xx must be a JSON object whose
    ``success``, when it has one, is ``true`` (any other value is an
    `UnexpectedResponseError`). ``base_url`` only shapes a 404's hint.
    """
    if status_code == 429 or status_code >= 500:
        retry_after = parse_retry_after(headers.get("retry-after"))
        error_cls = RateLimitError if status_code == 429 else ServerError
        raise error_cls(status_code, path=path, campaign_id=campaign_id, retry_after=retry_after)
    # A server that echoes the token back (in an error text, a code, a bad
    # field) must not carry it into any message built from the body.
    content = redact(content, secret)
    try:
        payload = json.loads(content)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        payload = _NOT_JSON
    if isinstance(payload, dict) and payload.get("success") is False:
        raise _failure(payload, status_code, path, campaign_id, base_url)
    if not 200 <= status_code < 300:
        raise _status_error(status_code, headers, path, campaign_id, base_url)
    if payload is _NOT_JSON:
        kind = headers.get("content-type", "no content type").split(";")[0]
        raise ResponseDecodeError(
            f"POST {path} answered HTTP {status_code} with a body that is not JSON ({kind}, "
            f"{len(content)} bytes)"
        )
    if not isinstance(payload, dict):
        raise ResponseDecodeError(
            f"POST {path}: expected a JSON object, got {type(payload).__name__}", path="$"
        )
    if "success" in payload and payload["success"] is not True:
        raise UnexpectedResponseError(path, payload["success"])
    return payload


def _failure(
    payload: dict[str, Any], status_code: int, path: str, campaign_id: str | None, base_url: str
) -> APIError:
    """The error a ``success: false`` answer means (a 404's says which URL to check)."""
    error = _api_error(payload, status_code, campaign_id)
    if status_code == 404 and type(error) is APIError:
        error = APIError(
            f"{error.message}; {_unknown_path(path, base_url)}",
            code=error.code,
            status_code=404,
            campaign_id=campaign_id,
        )
    return error


def _status_error(
    status_code: int,
    headers: Mapping[str, str],
    path: str,
    campaign_id: str | None,
    base_url: str,
) -> ConvosoError:
    """The error a non-2xx answer without a ``success: false`` body means (not a 429 or 5xx)."""
    if status_code == 401:
        return AuthenticationError("HTTP 401", status_code=401, campaign_id=campaign_id)
    if status_code == 403:
        return PermissionDeniedError("HTTP 403", status_code=403, campaign_id=campaign_id)
    return APIStatusError(
        status_code,
        path=path,
        campaign_id=campaign_id,
        retry_after=parse_retry_after(headers.get("retry-after")),
        detail=_unknown_path(path, base_url) if status_code == 404 else "",
    )


_NOT_JSON: Any = object()


def _unknown_path(path: str, base_url: str) -> str:
    if base_url.endswith("/v1"):
        # The base URL has Convoso's /v1: the endpoint's path is the suspect.
        return (
            f"no API answers at {path} under {redact_url(base_url)}; check the endpoint's "
            "path against Convoso's API reference"
        )
    # Almost always a base URL without Convoso's /v1, whose paths all 404.
    return (
        f"no API answers at {path} under this base URL; check it "
        f"(Convoso's is {DEFAULT_BASE_URL}: did you forget /v1?)"
    )


def _api_error(payload: dict[str, Any], status_code: int, campaign_id: str | None) -> APIError:
    message = next((payload[k] for k in _MESSAGE_FIELDS if payload.get(k)), None)
    text = "Convoso answered success: false without a message" if message is None else str(message)
    text = text[:_MAX_MESSAGE]
    code = _normalise_code(payload.get("code"))
    error_cls = _ERRORS_BY_CODE.get(code) if isinstance(code, int) else None
    if error_cls is None:
        lowered = text.lower()
        error_cls = next((cls for needle, cls in _ERRORS_BY_TEXT if needle in lowered), None)
    if error_cls is None:
        error_cls = {401: AuthenticationError, 403: PermissionDeniedError}.get(
            status_code, APIError
        )
    return error_cls(text, code=code, status_code=status_code, campaign_id=campaign_id)


def _normalise_code(code: Any) -> int | str | None:
    if code is None or isinstance(code, bool):
        return None
    if isinstance(code, int):
        return code
    if isinstance(code, str) and code.strip().isdigit():
        return int(code)
    return str(code)[:40] or None
