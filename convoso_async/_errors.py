"""Every error this library raises, in one tree.

    ConvosoError
     ├─ ConfigurationError          bad setup: missing token, bad option
     │   └─ ScheduleError            a schedule file's problem, as "file:line: problem"
     ├─ APIError                    Convoso answered `success: false`
     │   ├─ AuthenticationError      invalid token (HTTP 401 too)
     │   ├─ PermissionDeniedError    insufficient permissions (HTTP 403 too)
     │   ├─ CampaignNotFoundError    campaign not found / invalid campaign id (6026)
     │   └─ InvalidStatusError       status must be true or false (6080)
     ├─ APIStatusError              non-2xx without a Convoso error body
     │   ├─ RateLimitError           HTTP 429; `.retry_after`
     │   └─ ServerError              HTTP 5xx
     ├─ APIConnectionError          network failure after retries
     │   └─ APITimeoutError
     ├─ ResponseDecodeError         body is not JSON or not the documented shape
     │   └─ UnexpectedResponseError  `success` neither true nor false: the outcome is unknown
     ├─ NotSentError                never sent: `.reason` says why (deadline, interrupted)
     │   └─ CircuitOpenError         the circuit breaker is open: Convoso looks down
     ├─ RateLimiterUnavailableError the shared (Redis) limiter did not answer in time
     └─ BatchError                  raised by `BatchResult.raise_for_failures()`

`ScheduleError` lives in `convoso_async.schedule`, beside the code that raises
it; every name here is importable from `convoso_async`.

No message ever carries the auth token: messages are built only from the
campaign id, the API path, the status code and Convoso's own error text.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping


class ConvosoError(Exception):
    """Base class of every error raised by convoso-async."""

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only constructors don't survive the default pickling, and
        # errors cross process boundaries (worker pools, multiprocessing).
        return (_restore, (type(self), self.args, dict(self.__dict__)))


def _restore(
    cls: type[ConvosoError], args: tuple[object, ...], state: dict[str, object]
) -> ConvosoError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class ConfigurationError(ConvosoError, ValueError):
    """The client (or a schedule, or a call's option) is set up wrongly; nothing was sent.

    Also a ``ValueError``, so code that caught the ``ValueError`` a bad option
    once raised keeps working.
    """


class APIError(ConvosoError):
    """Convoso answered with `success: false`.

    Attributes:
        message: Convoso's own error text.
        code: Convoso's numeric error code, when the answer carried one.
        status_code: the HTTP status of the answer (often 200 for API errors).
        campaign_id: the campaign the request was about, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        code: int | str | None = None,
        status_code: int | None = None,
        campaign_id: str | None = None,
    ) -> None:
        self.message = message
        self.code = code
        self.status_code = status_code
        self.campaign_id = campaign_id
        super().__init__(self._describe())

    def _describe(self) -> str:
        text = self.message
        if self.campaign_id is not None:
            text = f"campaign {self.campaign_id!r}: {text}"
        if self.code is not None:
            text = f"{text} (Convoso code {self.code})"
        return text


class AuthenticationError(APIError):
    """The auth token was rejected. Check CONVOSO_AUTH_TOKEN."""

    def _describe(self) -> str:
        return f"{super()._describe()}; check the auth token (CONVOSO_AUTH_TOKEN)"


class PermissionDeniedError(APIError):
    """The token is valid but lacks campaign management permissions."""

    def _describe(self) -> str:
        return f"{super()._describe()}; the token's user needs campaign management permissions"


class CampaignNotFoundError(APIError):
    """The campaign does not exist (Convoso code 6026)."""

    def _describe(self) -> str:
        if self.campaign_id is None:
            return super()._describe()
        text = f"campaign {self.campaign_id!r} does not exist"
        if self.code is not None:
            text = f"{text} (Convoso code {self.code})"
        return text


class InvalidStatusError(APIError):
    """Convoso refused the status value (Convoso code 6080)."""


class APIStatusError(ConvosoError):
    """An HTTP error status without a Convoso error body.

    Attributes:
        status_code: the HTTP status.
        retry_after: seconds the server asked to wait (``Retry-After``), if it did.
        path: the API path that was requested, e.g. ``/campaigns/status``.
        campaign_id: the campaign the request was about, if any.
    """

    def __init__(
        self,
        status_code: int,
        *,
        path: str = "",
        campaign_id: str | None = None,
        detail: str = "",
        retry_after: float | None = None,
    ) -> None:
        self.status_code = status_code
        self.path = path
        self.campaign_id = campaign_id
        self.detail = detail
        self.retry_after = retry_after
        super().__init__(self._describe())

    def _describe(self) -> str:
        subject = f"POST {self.path}" if self.path else "request"
        if self.campaign_id is not None:
            subject = f"{subject} for campaign {self.campaign_id!r}"
        text = f"{subject} answered HTTP {self.status_code}"
        if self.detail:
            text = f"{text}: {self.detail}"
        return text


class RateLimitError(APIStatusError):
    """HTTP 429 after every retry. `retry_after` is the server's wait, in seconds."""

    def _describe(self) -> str:
        text = super()._describe()
        hint = "the account's rate limit was exceeded; lower rate_limit or max_concurrency"
        if self.retry_after is not None:
            hint = f"{hint} (server asked to wait {self.retry_after:g}s)"
        return f"{text}; {hint}"


class ServerError(APIStatusError):
    """HTTP 5xx after every retry: Convoso (or something before it) failed."""


class APIConnectionError(ConvosoError):
    """The request could not be completed on the network, after every retry.

    Unless ``never_connected``, the outcome is unknown: the request may or may
    not have reached Convoso. Status changes are absolute, so sending one again
    is safe; for another endpoint (`AsyncConvoso.post`), check before repeating.

    Attributes:
        never_connected: True when no connection was made (refused, a name that
            does not resolve, a TLS handshake refused, connecting timed out): the
            request never left, so Convoso cannot have processed it.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str = "",
        campaign_id: str | None = None,
        never_connected: bool = False,
    ) -> None:
        self.path = path
        self.campaign_id = campaign_id
        self.message = message
        self.never_connected = never_connected
        subject = f"POST {path}" if path else "request"
        if campaign_id is not None:
            subject = f"{subject} for campaign {campaign_id!r}"
        super().__init__(f"{subject} failed: {message}")


class APITimeoutError(APIConnectionError):
    """The request timed out, after every retry. Raise `timeout` if this is routine."""


class ResponseDecodeError(ConvosoError):
    """Convoso's answer is not JSON or not of the documented shape.

    Attributes:
        path: where in the payload the problem is, e.g. ``data[3].status``.
    """

    def __init__(self, message: str, *, path: str = "") -> None:
        self.path = path
        self.message = message
        super().__init__(f"{message} at {path}" if path else message)


class UnexpectedResponseError(ResponseDecodeError):
    """Convoso answered JSON whose ``success`` is neither ``true`` nor ``false``.

    Convoso's envelope carries a JSON boolean. A string (``"false"``), a number, ``null``,
    or no ``success`` where the endpoint always sends one is read as neither success nor
    failure: the request may or may not have been applied, so check before sending it again.

    Attributes:
        endpoint: the API path that answered, e.g. ``/leads/insert``.
        value: what ``success`` held (``None`` when it was missing).
        missing: True when the answer had no ``success`` at all.
    """

    def __init__(self, endpoint: str, value: object = None, *, missing: bool = False) -> None:
        self.endpoint = endpoint
        self.value = value
        self.missing = missing
        if missing:
            found = 'no "success"'
        elif value is None:
            found = '"success": null'
        else:
            found = f'"success": {_quoted(value)} ({_json_kind(value)})'
        super().__init__(
            f"POST {endpoint}: Convoso answered {found}, neither true nor false, so whether "
            "it was applied is unknown; check before sending it again"
        )
        self.path = "success"


def _quoted(value: object) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _json_kind(value: object) -> str:
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (int, float)):
        return "a number"
    return "a list" if isinstance(value, list) else "an object"


class NotSentError(ConvosoError):
    """The request was never sent, so the campaign was not changed. Sending it later is safe.

    A bulk change marks the ids it stopped before sending with this (in
    ``BatchResult.not_sent``) when it ran out of time (``reason="deadline"``)
    or was interrupted (``reason="interrupted"``).

    Attributes:
        reason: a short word for why: ``"circuit open"``, ``"deadline"``, ``"interrupted"``.
        campaign_id: the campaign, when the error is about one.
    """

    def __init__(self, message: str, *, reason: str, campaign_id: str | None = None) -> None:
        self.reason = reason
        self.campaign_id = campaign_id
        self.message = message
        subject = "not sent" if campaign_id is None else f"campaign {campaign_id!r} not sent"
        super().__init__(f"{subject}: {message}")


class CircuitOpenError(NotSentError):
    """The circuit breaker is open: the service failed many times in a row, so nothing was sent.

    The client sends again by itself once a probe after the cool-down
    succeeds. Attributes: ``failures`` (the run that opened it),
    ``last_error`` (the kind of the last failure), ``retry_in`` (seconds until a probe).
    """

    def __init__(
        self,
        *,
        failures: int,
        last_error: str,
        retry_in: float,
        campaign_id: str | None = None,
    ) -> None:
        self.failures = failures
        self.last_error = last_error
        self.retry_in = retry_in
        super().__init__(
            f"the circuit breaker is open after {failures} failures in a row "
            f"(last: {last_error}); Convoso looks down, so nothing was sent. "
            f"The client probes again in {retry_in:.1f}s; send these later",
            reason="circuit open",
            campaign_id=campaign_id,
        )


class BatchError(ConvosoError):
    """Some campaigns of a bulk change failed, were not sent, or ended unknown.

    `failures` maps id -> error for all of them; `not_sent` and `unknown`
    hold the ids of those two kinds.
    """

    def __init__(
        self,
        failures: Mapping[str, Exception],
        *,
        total: int,
        not_sent: Iterable[str] = (),
        unknown: Iterable[str] = (),
    ) -> None:
        self.failures = dict(failures)
        self.total = total
        self.not_sent = tuple(not_sent)
        self.unknown = tuple(unknown)
        shown = list(self.failures.items())[:5]
        failed = len(self.failures) - len(self.not_sent) - len(self.unknown)
        if self.not_sent or self.unknown:
            head = (
                f"{len(self.failures)} of {total} campaigns did not succeed ({failed} failed, "
                f"{len(self.not_sent)} not sent, {len(self.unknown)} unknown):"
            )
        else:
            head = f"{failed} of {total} campaigns failed:"
        lines = [head]
        lines += [f"  {campaign_id}: {error}" for campaign_id, error in shown]
        if len(self.failures) > len(shown):
            lines.append(f"  ... and {len(self.failures) - len(shown)} more")
        super().__init__("\n".join(lines))


class RateLimiterUnavailableError(ConvosoError):
    """The shared rate limiter's Redis did not answer in time (or failed); nothing was sent.

    Attributes:
        key: the Redis key of the limiter.
        server: where Redis was expected, with any password replaced by ``***``.
    """

    def __init__(self, message: str, *, key: str = "", server: str = "") -> None:
        self.message = message
        self.key = key
        self.server = server
        super().__init__(message)


# Public names report the package, where users import them from (as httpx's do).
for _public in (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BatchError,
    CampaignNotFoundError,
    CircuitOpenError,
    ConfigurationError,
    ConvosoError,
    InvalidStatusError,
    NotSentError,
    PermissionDeniedError,
    RateLimitError,
    RateLimiterUnavailableError,
    ResponseDecodeError,
    ServerError,
    UnexpectedResponseError,
):
    _public.__module__ = "convoso_async"
