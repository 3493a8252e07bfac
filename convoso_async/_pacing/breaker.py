"""When to stop asking: a retry budget and a circuit breaker, shared by the whole client.

Retries help when failures are rare and independent; when the service is down
they only multiply the load on it and the time a batch takes. Two guards, both
client-wide (every ``with_options`` copy and every concurrent batch shares
them), decide when asking again stops paying:

`RetryBudget`, a token bucket as in gRPC's retry throttling and the AWS SDKs'
retry quota: it starts full; every retry of a network failure, timeout or 5xx
takes one token, every answer (a success, or a Convoso error: the service is
up) gives back ``refill`` of one. While it holds a whole token, retries go ahead; empty,
a failed request fails at once with its own error, until successes fill it
again. With the defaults retries may be about half as many as successes
(Finagle's RetryBudget and the SRE book's client-side throttling reason the
same way): a 10% fault rate needs about 0.11 retries per success and never
empties it; a service failing most requests empties it in 50 retries.

`CircuitBreaker`, for when the service is down: ``failure_threshold``
failures in a row (connection failures, timeouts, HTTP 5xx) with no success
between them open it. While open, a request fails at once with
`CircuitOpenError`, before anything is sent. After ``cooldown`` seconds one
request goes through as a probe (half-open): its success closes the breaker,
its failure opens it for another ``cooldown``. A 429 neither counts as a
failure nor as a success: the service is up and said when to come back (the
client-wide pause handles it). Any other answer, a Convoso error included,
proves the service is up and ends the run of failures.

Each logs one WARNING line on the ``convoso_async`` logger when it opens (or
empties) and one INFO line when it closes (or refills).
"""

from __future__ import annotations

import time

from convoso_async import _telemetry as telemetry
from convoso_async._checks import check_count, check_number
from convoso_async._defaults import (
    BREAKER_COOLDOWN,
    BREAKER_FAILURE_THRESHOLD,
    MAX_REQUEST_COUNT,
    RETRY_BUDGET_REFILL,
    RETRY_BUDGET_TOKENS,
)
from convoso_async._errors import APIConnectionError, CircuitOpenError, ConvosoError, ServerError
from convoso_async._log import logger

__all__ = ["CircuitBreaker", "Guard", "RetryBudget", "counts_as_outage"]


def counts_as_outage(error: BaseException) -> bool:
    """Whether ``error`` says the service (or the way to it) is down: network, timeout, 5xx."""
    return isinstance(error, (APIConnectionError, ServerError))


class RetryBudget:
    """A token bucket for retries: a retry takes a token, an answer gives back ``refill``.

        convoso = AsyncConvoso(retry_budget=RetryBudget(tokens=200, refill=0.2))

    A new budget is full:

        >>> RetryBudget(tokens=200, refill=0.2)
        RetryBudget(tokens=200, refill=0.2, left=200.0)

    Args:
        tokens: the bucket's size, and what it holds at first: how many
            retries a burst of failures may use before successes must pay.
        refill: tokens one answer gives back (0.5: at most one retry per
            two answers in the long run).
    """

    def __init__(
        self, tokens: float = RETRY_BUDGET_TOKENS, refill: float = RETRY_BUDGET_REFILL
    ) -> None:
        self.capacity = check_number("tokens", tokens, minimum=1, above=False, unit="retries")
        self.refill = check_number("refill", refill, above=False, unit="retries")
        self._tokens = self.capacity
        self._empty = False

    def __repr__(self) -> str:
        return (
            f"RetryBudget(tokens={self.capacity:g}, refill={self.refill:g}, "
            f"left={self._tokens:.1f})"
        )

    @property
    def tokens(self) -> float:
        """Tokens in the bucket now."""
        return self._tokens

    def try_spend(self) -> bool:
        """Take one token for a retry; False (and no retry) when none is left."""
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        if not self._empty:
            self._empty = True
            logger.warning(
                "retry budget spent: failed requests are no longer retried until requests "
                "succeed again (each success gives back %g of a retry)",
                self.refill,
                extra={"tokens": self._tokens, "refill": self.refill},
            )
        telemetry.event(
            "convoso.retry_budget.refused",
            {"convoso.retry_budget.tokens": self._tokens},
            count="refusals",
        )
        return False

    def on_success(self) -> None:
        """An answer came: give back ``refill`` tokens, up to the bucket's size."""
        self._tokens = min(self.capacity, self._tokens + self.refill)
        if self._empty and self._tokens >= 1.0:
            self._empty = False
            logger.info(
                "retry budget refilled: failed requests are retried again",
                extra={"tokens": self._tokens, "refill": self.refill},
            )


class CircuitBreaker:
    """Stops sending while the service is down; probes it again after a cool-down.

        convoso = AsyncConvoso(circuit_breaker=CircuitBreaker(failure_threshold=20, cooldown=30))

    A new breaker is closed:

        >>> CircuitBreaker(failure_threshold=20, cooldown=30)
        CircuitBreaker(failure_threshold=20, cooldown=30, state='closed')

    Args:
        failure_threshold: failures in a row (network, timeout, 5xx; retries
            included) with no success between them that open the breaker.
        cooldown: seconds the breaker stays open before one probe goes through.

    States: ``"closed"`` (requests go), ``"open"`` (requests fail at once
    with `CircuitOpenError`, nothing sent), ``"half-open"`` (one probe is in
    flight; the others still fail at once).
    """

    def __init__(
        self,
        failure_threshold: int = BREAKER_FAILURE_THRESHOLD,
        cooldown: float = BREAKER_COOLDOWN,
    ) -> None:
        self.failure_threshold = check_count(
            "failure_threshold", failure_threshold, minimum=1, maximum=MAX_REQUEST_COUNT
        )
        self.cooldown = check_number("cooldown", cooldown, above=False)
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False
        self._last_error = ""
        telemetry.watch_breaker(self)

    def __repr__(self) -> str:
        return (
            f"CircuitBreaker(failure_threshold={self.failure_threshold}, "
            f"cooldown={self.cooldown:g}, state={self.state!r})"
        )

    @property
    def state(self) -> str:
        """``"closed"``, ``"open"`` or ``"half-open"``."""
        if self._opened_at is None:
            return "closed"
        return "half-open" if self._probing else "open"

    @property
    def is_open(self) -> bool:
        """True while requests would be refused (open, or half-open with its probe out)."""
        return self._opened_at is not None

    def admit(self) -> bool:
        """Let a request through, or raise `CircuitOpenError`. True if it is the probe."""
        if self._opened_at is None:
            return False
        waited = time.monotonic() - self._opened_at
        if self._probing or waited < self.cooldown:
            raise CircuitOpenError(
                failures=self._failures,
                last_error=self._last_error,
                retry_in=max(0.0, self.cooldown - waited),
            )
        self._probing = True
        logger.info(
            "circuit breaker half-open: sending one request to probe the service",
            extra={"state": "half-open"},
        )
        telemetry.breaker_changed(self, "half-open", {})
        return True

    def abandon(self, probe: bool) -> None:
        """The request ended without an answer either way (cancelled): free the probe slot."""
        if probe:
            self._probing = False

    def on_success(self) -> None:
        """An answer came: the service is up. Closes the breaker."""
        self._failures = 0
        if self._opened_at is not None:
            self._opened_at = None
            self._probing = False
            logger.info(
                "circuit breaker closed: the service answered; sending again",
                extra={"state": "closed"},
            )
            telemetry.breaker_changed(self, "closed", {})

    def on_failure(self, error: BaseException, probe: bool) -> None:
        """A network failure, timeout or 5xx: one more in the run; opens at the threshold."""
        self._failures += 1
        self._last_error = type(error).__name__
        if probe or (self._opened_at is None and self._failures >= self.failure_threshold):
            self._opened_at = time.monotonic()
            self._probing = False
            logger.warning(
                "circuit breaker open after %d failures in a row with no success (last: %s): "
                "requests fail at once, unsent, for %gs, then one probes the service",
                self._failures,
                self._last_error,
                self.cooldown,
                extra={
                    "state": "open",
                    "failures": self._failures,
                    "last_error": self._last_error,
                    "cooldown": self.cooldown,
                },
            )
            telemetry.breaker_changed(
                self,
                "open",
                {
                    "convoso.circuit_breaker.failures": self._failures,
                    "convoso.circuit_breaker.cooldown": self.cooldown,
                    "error.type": self._last_error,
                },
            )


class Guard:
    """The budget and the breaker a client's requests consult; either may be absent."""

    __slots__ = ("breaker", "budget")

    def __init__(self, budget: RetryBudget | None, breaker: CircuitBreaker | None) -> None:
        self.budget = budget
        self.breaker = breaker

    def admit(self) -> bool:
        """Before an attempt: raise `CircuitOpenError` if the breaker refuses; True for a probe."""
        return False if self.breaker is None else self.breaker.admit()

    def may_retry(self, error: BaseException) -> bool:
        """After a retryable failure: whether the breaker and the budget allow another attempt.

        A 429 is not charged: the server is up and told us when to come back.
        """
        if self.breaker is not None and self.breaker.is_open:
            return False
        if self.budget is None or not counts_as_outage(error):
            return True
        return self.budget.try_spend()

    def record(self, error: BaseException | None, probe: bool) -> None:
        """After an attempt that got an answer or a network failure."""
        if error is None or (
            isinstance(error, ConvosoError)
            and not counts_as_outage(error)
            and getattr(error, "status_code", None) != 429
        ):
            if self.breaker is not None:
                self.breaker.on_success()
            if self.budget is not None:
                self.budget.on_success()
        elif counts_as_outage(error):
            if self.breaker is not None:
                self.breaker.on_failure(error, probe)
        elif self.breaker is not None:
            self.breaker.abandon(probe)  # a 429 probe proves nothing either way

    def abandon(self, probe: bool) -> None:
        """The attempt was cancelled: it proves nothing."""
        if self.breaker is not None:
            self.breaker.abandon(probe)


# Public names report the package, where users import them from (as httpx's do).
for _public in (CircuitBreaker, RetryBudget):
    _public.__module__ = "convoso_async"
