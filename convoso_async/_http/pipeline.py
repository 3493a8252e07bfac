"""The request pipeline every endpoint goes through, written once.

One call of `Pipeline.post` is: for each attempt, wait out any client-wide
pause, take a slot from the rate limiter, send a form-encoded POST with
``auth_token`` in the body, decode Convoso's envelope, and map failures onto
the error tree; the retry policy decides whether to go again. Resources above
it only declare an `Endpoint` and give its fields; a call comes back as a `Reply`.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlencode

from convoso_async import _telemetry as telemetry
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
from convoso_async._log import logger
from convoso_async._options import Options
from convoso_async._pacing.ratelimit import PauseGate, ThrottleFeedback
from convoso_async._pacing.retry import RetryPolicy, is_testing, parse_retry_after
from convoso_async._redaction import (
    MIN_SECRET_LENGTH,
    redact_secret,
    redact_url,
    redact_userinfo,
    telemetry_url,
)

from .answer import SendError
from .endpoint import Endpoint, Reply
from .pool import Pool
from .transport_errors import convoso_error

__all__ = ["Pipeline", "decode_answer"]

T = TypeVar("T")

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


class Pipeline:
    """Sends one logical request with pacing, retries and error mapping.

    Several clients made by ``with_options`` share one pipeline's token and
    pause gate (and, through their `Options`, whatever limiter, budget and
    breaker they were not given), each with its own timeout and retry policy.
    """

    def __init__(
        self, *, base_url: str, auth_token: str, pause: PauseGate, options: Options
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = auth_token
        self.pause = pause
        self._read(options)

    def _read(self, options: Options) -> None:
        """Pace on the options' limiter and consult their budget and breaker."""
        self.options = options
        self.limiter = options.rate_limiter
        self.guard = options.guard  # the client-wide retry budget and circuit breaker
        # An adaptive or shared limiter hears how each answer went.
        limiter = self.limiter
        self._feedback = limiter if isinstance(limiter, ThrottleFeedback) else None

    def __repr__(self) -> str:
        return f"Pipeline(base_url={redact_url(self.base_url)!r}, limiter={self.limiter!r})"

    def with_options(self, options: Options) -> Pipeline:
        """The same pipeline (token, pause gate) reading another copy's options."""
        twin = copy.copy(self)
        twin._read(options)
        return twin

    async def post(
        self,
        pool: Pool,
        endpoint: Endpoint[T],
        fields: dict[str, str],
        *,
        time_limit: float,
        max_bytes: int,
        policy: RetryPolicy,
    ) -> Reply[T]:
        """POST ``fields`` (plus the token) to ``endpoint``: its decoded answer, or the error,
        with the attempts it took.

        Each attempt has ``time_limit`` seconds and reads at most ``max_bytes``.
        A failure comes back as the reply's ``error``, never raised (a
        cancellation goes on), so the attempts travel with it.
        """
        path = endpoint.path
        subject = endpoint.subject_of(fields)
        body = urlencode({"auth_token": self._token, **fields}).encode()
        url = self.base_url + path
        under_way = [0]  # the number of the attempt under way, for the reply

        async def attempt(number: int) -> dict[str, Any]:
            under_way[0] = number
            return await self._attempt(
                pool, url, path, body, (time_limit, max_bytes), subject, number
            )

        on_retry = _retry_log(path, subject, policy.max_retries)
        try:
            payload = await policy.call(attempt, on_retry=on_retry, guard=self.guard)
            return Reply(endpoint.decode(payload), attempts=under_way[0])
        except Exception as error:
            return Reply(error=endpoint.read_error(error), attempts=under_way[0])

    async def _attempt(
        self,
        pool: Pool,
        url: str,
        path: str,
        body: bytes,
        limits: tuple[float, int],
        campaign_id: str | None,
        number: int,
    ) -> dict[str, Any]:
        # Make the pool (an SSL context takes tens of ms) before taking a
        # slot, so the first request is not late against its grant.
        pool.prepare()
        observed = telemetry.active()
        if observed is None:
            await self._wait_turn()
            return await self._exchange(pool, url, path, body, limits, campaign_id, number, None)
        waiting = time.perf_counter()
        await self._wait_turn()
        observed.waited(time.perf_counter() - waiting, number)
        with observed.attempt(telemetry_url(url), number, campaign_id) as note:
            return await self._exchange(pool, url, path, body, limits, campaign_id, number, note)

    async def _wait_turn(self) -> None:
        """Wait out any client-wide pause, then take a slot from the rate limiter."""
        await self.pause.wait()
        if self.limiter is not None:
            await self.limiter.acquire()
            # A 429 may have paused the client while this task queued on the
            # limiter: wait it out, then take a fresh slot so the pacing
            # holds (keeping the old slot would release a burst at the end).
            while self.pause.remaining > 0:
                await self.pause.wait()
                await self.limiter.acquire()

    async def _exchange(
        self,
        pool: Pool,
        url: str,
        path: str,
        body: bytes,
        limits: tuple[float, int],
        campaign_id: str | None,
        number: int,
        note: telemetry.Attempt | None,
    ) -> dict[str, Any]:
        """Send the request, decode the answer, map a failure (``note`` hears the status)."""
        started = time.perf_counter()
        try:
            response = await pool.post(url, body, *limits)
        except SendError as exc:
            error = self._network_error(exc, path, campaign_id)
            if logger.isEnabledFor(logging.DEBUG):
                elapsed = time.perf_counter() - started
                logger.debug(
                    "POST %s%s failed after %.1fms (attempt %d): %s",
                    path,
                    _about(campaign_id),
                    elapsed * 1000,
                    number,
                    type(error).__name__,
                    extra={
                        "method": "POST",
                        "path": path,
                        "campaign_id": campaign_id,
                        "elapsed": elapsed,
                        "attempt": number,
                        "error": type(error).__name__,
                    },
                )
            raise error from None
        status = response.status_code
        if note is not None:
            note.answered(status)
        if logger.isEnabledFor(logging.DEBUG):
            elapsed = time.perf_counter() - started
            logger.debug(
                "POST %s%s -> %d in %.1fms (attempt %d)",
                path,
                _about(campaign_id),
                status,
                elapsed * 1000,
                number,
                extra={
                    "method": "POST",
                    "path": path,
                    "campaign_id": campaign_id,
                    "status_code": status,
                    "elapsed": elapsed,
                    "attempt": number,
                },
            )
        if self._feedback is not None and status != 429 and status < 500:
            self._feedback.on_success()
        try:
            return decode_answer(
                status,
                response.headers,
                response.content,
                path=path,
                campaign_id=campaign_id,
                secret=self._token,
                base_url=self.base_url,
            )
        except APIStatusError as error:
            retry_after = None if is_testing() else error.retry_after
            if retry_after is not None:
                # Told to wait: every task of this client waits, not only this one.
                self.pause.pause_for(retry_after)
                if note is not None:
                    note.paused(retry_after)
            if error.status_code == 429 and self._feedback is not None:
                # The limiter slows down (and a shared one pauses its other processes).
                await self._feedback.on_throttle(retry_after)
            raise

    def _network_error(self, exc: SendError, path: str, campaign_id: str | None) -> ConvosoError:
        detail = redact_userinfo(redact_secret(exc.detail, self._token), self.base_url)
        return convoso_error(exc, detail, path=path, campaign_id=campaign_id)


def _retry_log(
    path: str, campaign_id: str | None, max_retries: int
) -> Callable[[BaseException, int, float], None]:
    """What a retry of a call to ``path`` tells telemetry and the log before its wait."""

    def on_retry(error: BaseException, retry_number: int, delay: float) -> None:
        observed = telemetry.active()
        if observed is not None:
            observed.retrying(error, retry_number, delay)
        logger.info(
            "retrying POST %s%s in %.2fs after %s (retry %d of %d)",
            path,
            _about(campaign_id),
            delay,
            type(error).__name__,
            retry_number,
            max_retries,
            extra={
                "method": "POST",
                "path": path,
                "campaign_id": campaign_id,
                "delay": delay,
                "error": type(error).__name__,
                "retry": retry_number,
                "max_retries": max_retries,
            },
        )

    return on_retry


def _about(campaign_id: str | None) -> str:
    return "" if campaign_id is None else f" campaign={campaign_id}"


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
    if len(secret) >= MIN_SECRET_LENGTH and secret.encode() in content:
        # A server that echoes the token back (in an error text, a code, a
        # bad field) must not carry it into any message built from the body.
        content = content.replace(secret.encode(), b"***")
    try:
        payload = json.loads(content)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        payload = _NOT_JSON
    if isinstance(payload, dict) and payload.get("success") is False:
        error = _api_error(payload, status_code, campaign_id)
        if status_code == 404 and type(error) is APIError:
            error = APIError(
                f"{error.message}; {_unknown_path(path, base_url)}",
                code=error.code,
                status_code=404,
                campaign_id=campaign_id,
            )
        raise error
    if status_code == 401:
        raise AuthenticationError("HTTP 401", status_code=401, campaign_id=campaign_id)
    if status_code == 403:
        raise PermissionDeniedError("HTTP 403", status_code=403, campaign_id=campaign_id)
    if not 200 <= status_code < 300:
        retry_after = parse_retry_after(headers.get("retry-after"))
        raise APIStatusError(
            status_code,
            path=path,
            campaign_id=campaign_id,
            retry_after=retry_after,
            detail=_unknown_path(path, base_url) if status_code == 404 else "",
        )
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
