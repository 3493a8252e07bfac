"""The retry policy: what is retried, how long to wait, and a switch for tests.

Retried: connection failures, timeouts, and HTTP 429, 500, 502, 503, 504.
Never retried: a ``success: false`` answer or any other 4xx (sending the same
request again would get the same answer). Status changes set an absolute
state, so repeating one is safe.

A request that is not safe to repeat (``post()`` to any endpoint, unless the
caller says ``idempotent=True``) is retried only when it cannot have been
processed: no connection was made, or the answer was 429, or 503 with
``Retry-After`` (the server turned it away and said when to come back).

Waits are exponential with full jitter (uniform in ``[0, min(cap, initial *
2**(n-1))]``), except when the server said how long in ``Retry-After``: then
that, within a cap.

Tests (ours and yours) should not sleep::

    with convoso_async.set_testing():   # every retry wait and 429 pause is 0 inside
        ...
"""

from __future__ import annotations

import datetime as dt
import email.utils
import math
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, TypeVar

import anyio
import attrs
import tenacity

from convoso_async._defaults import (
    RETRY_AFTER_CAP,
    RETRY_INITIAL_BACKOFF,
    RETRY_MAX_BACKOFF,
    RETRYABLE_STATUS_CODES,
)
from convoso_async._errors import APIConnectionError, APIStatusError, CircuitOpenError, ConvosoError

if TYPE_CHECKING:
    from .breaker import Guard

__all__ = ["RetryPolicy", "is_retryable", "is_testing", "parse_retry_after", "set_testing"]

T = TypeVar("T")

_testing = False


class _Restore:
    """What `set_testing` returns: leaving its ``with`` block puts the old value back."""

    __slots__ = ("_previous",)

    def __init__(self, previous: bool) -> None:
        self._previous = previous

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc_info: object) -> None:
        global _testing
        _testing = self._previous


def set_testing(on: bool = True) -> AbstractContextManager[None]:
    """Make every retry wait and every ``Retry-After`` pause instant (or normal again).

    Retries still happen, as many as ``max_retries`` allows; only the sleeping
    goes. Meant for test suites, as a context manager that restores the
    previous setting on the way out, even when the test fails::

        @pytest.fixture(autouse=True)
        def instant_retries() -> Iterator[None]:
            with convoso_async.set_testing():
                yield

    Called without ``with``, the switch stays as set until called again.
    """
    global _testing
    previous, _testing = _testing, bool(on)
    return _Restore(previous)


def is_testing() -> bool:
    """Whether `set_testing` switched waits off."""
    return _testing


def is_retryable(error: BaseException, *, idempotent: bool = True) -> bool:
    """Whether ``error`` is worth another attempt of the request that met it.

    An idempotent request (every campaign call: setting a state twice sets it
    once): network failures and 429/500/502/503/504. Any other request only
    when it cannot have been processed: a connection never made
    (``APIConnectionError.never_connected``), 429, or 503 with ``Retry-After``.
    """
    if isinstance(error, APIConnectionError):
        return idempotent or error.never_connected
    if isinstance(error, APIStatusError):
        if idempotent:
            return error.status_code in RETRYABLE_STATUS_CODES
        return error.status_code == 429 or (
            error.status_code == 503 and error.retry_after is not None
        )
    return False


def parse_retry_after(
    value: str | None, *, cap: float = RETRY_AFTER_CAP, now: dt.datetime | None = None
) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (RFC 9110 §10.2.3), capped.

    Accepts delay-seconds or an HTTP date. Garbage gives ``None`` (the caller
    falls back to its own backoff); a past date gives 0; ``inf``, a far-future
    date, or anything over ``cap`` gives ``cap``.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    seconds: float | None
    try:
        seconds = float(text)
    except ValueError:
        seconds = _seconds_until_http_date(text, now)
    if seconds is None or math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), cap)


def _seconds_until_http_date(text: str, now: dt.datetime | None) -> float | None:
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; obsolete forms parse naive
        when = when.replace(tzinfo=dt.timezone.utc)
    now = now or dt.datetime.now(dt.timezone.utc)
    return (when - now).total_seconds()


@attrs.frozen
class RetryPolicy:
    """How many times to retry and how long to wait between attempts.

    `next_wait` is the one place that decides whether another attempt goes
    and after how long; `call` is the one loop that asks it. ``idempotent``
    says whether the requests it retries are safe to repeat (see `is_retryable`).
    """

    max_retries: int
    idempotent: bool = attrs.field(default=True, kw_only=True)
    initial_backoff: float = RETRY_INITIAL_BACKOFF
    max_backoff: float = RETRY_MAX_BACKOFF
    # tenacity's full-jitter exponential backoff: uniform in [0, min(max, initial * 2**(n-1))].
    _backoff: tenacity.wait_random_exponential = attrs.field(init=False, repr=False, eq=False)

    @_backoff.default
    def _make_backoff(self) -> tenacity.wait_random_exponential:
        return tenacity.wait_random_exponential(
            multiplier=self.initial_backoff, max=self.max_backoff
        )

    def delay(self, error: BaseException, retry_number: int) -> float:
        """Seconds to wait before retry ``retry_number`` (1-based) after ``error``.

        The server's ``Retry-After`` when it gave one (capped once, where the
        header is read: `parse_retry_after`), else exponential backoff with
        full jitter; zero under `set_testing`.
        """
        if _testing:
            return 0.0
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            return float(retry_after)
        state = tenacity.RetryCallState(None, None, (), {})  # type: ignore[arg-type]
        state.attempt_number = retry_number
        return float(self._backoff(state))

    def next_wait(
        self, error: BaseException, retry_number: int, guard: Guard | None = None
    ) -> float | None:
        """Whether retry ``retry_number`` (1-based) goes after ``error``, and after how long.

        None: it does not, because the error is not worth another attempt (see
        `is_retryable`), the retries are used up, or the ``guard`` refuses (an
        open circuit breaker, an empty retry budget: asked last, so a refused
        retry is the only one that costs nothing and a granted one costs one
        token). Otherwise the seconds to wait first (`delay`).
        """
        if not is_retryable(error, idempotent=self.idempotent) or retry_number > self.max_retries:
            return None
        if guard is not None and not guard.may_retry(error):
            return None
        return self.delay(error, retry_number)

    async def call(
        self,
        attempt: Callable[[int], Awaitable[T]],
        *,
        on_retry: Callable[[BaseException, int, float], None] | None = None,
        guard: Guard | None = None,
    ) -> T:
        """Run ``attempt(n)`` (n = 1, 2, ...) until it succeeds or `next_wait` says stop.

        ``on_retry(error, retry_number, delay)`` is called before each wait.
        With a ``guard`` (the client's retry budget and circuit breaker), an
        open breaker refuses the first attempt with `CircuitOpenError`
        (nothing sent).

        The loop is this one, not tenacity's ``AsyncRetrying``: that costs
        about 17 µs per call, success or not (measured), over 10% of a request's
        CPU with the aiohttp opt-in; tenacity computes the backoff (`delay`).
        """
        if guard is not None:
            attempt = _guarded(attempt, guard)
        number = 1
        while True:
            try:
                return await attempt(number)
            except ConvosoError as error:
                wait = self.next_wait(error, number, guard)
                if wait is None:
                    raise
                if on_retry is not None:
                    on_retry(error, number, wait)
            await anyio.sleep(wait)
            number += 1


def _guarded(attempt: Callable[[int], Awaitable[T]], guard: Guard) -> Callable[[int], Awaitable[T]]:
    """``attempt`` with the breaker asked first and told the outcome after."""
    last: list[ConvosoError] = []

    async def guarded(number: int) -> T:
        try:
            probe = guard.admit()
        except CircuitOpenError:
            if last:
                # A retry of a request already sent: it failed, with its own error.
                raise last[-1] from None
            raise  # the first attempt: nothing was sent
        try:
            result = await attempt(number)
        except ConvosoError as error:
            guard.record(error, probe)
            last.append(error)
            raise
        except BaseException:
            guard.abandon(probe)
            raise
        guard.record(None, probe)
        return result

    return guarded


# A public name reports the package, where users import it from (as httpx's do).
set_testing.__module__ = "convoso_async"
