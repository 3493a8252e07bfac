"""`Options`: what a client and each of its `with_options` copies hold for themselves.

One frozen attrs class. Each field is one option: its keyword (the field's
``alias`` where it differs: ``rate_limit`` sets ``rate_limiter``), its default,
and its check (a converter from `._checks`, so the constructor and
``with_options``, which is `attrs.evolve`, check alike). A field holds what the
option became: ``rate_limit=5`` a `Limiter`, ``circuit_breaker=True`` a
`CircuitBreaker`. So a copy made by `attrs.evolve` keeps (shares) the very
limiter, budget and breaker it was not given. `OptionsView` gives both clients
their read-only properties, written once.

The token, base URL, ``http_client`` and ``transport`` are not here: they make
the connection pool, which copies share and cannot change.
"""

from __future__ import annotations

from typing import Literal

import attrs

from ._checks import (
    check_concurrency,
    check_max_response_bytes,
    check_retries,
    check_switch,
    check_timeout,
)
from ._defaults import (
    BREAKER_FAILURE_THRESHOLD,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
)
from ._pacing.breaker import CircuitBreaker, Guard, RetryBudget
from ._pacing.ratelimit import RateLimiter, limiter_from_option
from ._pacing.retry import RetryPolicy

__all__ = ["Options", "OptionsView"]

#: What ``circuit_breaker=True`` holds until the options know ``max_concurrency``
#: (`Options.__attrs_post_init__` swaps it for a breaker sized by it); never seen outside.
#: A bare instance, never initialised: a marker only, so no gauge ever reports it.
_SIZED_BY_CONCURRENCY = object.__new__(CircuitBreaker)


def _rate_limiter(rate_limit: float | Literal["auto"] | RateLimiter | None) -> RateLimiter | None:
    return limiter_from_option(rate_limit)


def _retry_budget(retry_budget: object) -> RetryBudget | None:
    given = check_switch("retry_budget", retry_budget, RetryBudget)
    if isinstance(given, bool):
        return RetryBudget() if given else None
    return given


def _circuit_breaker(circuit_breaker: object) -> CircuitBreaker | None:
    given = check_switch("circuit_breaker", circuit_breaker, CircuitBreaker)
    if isinstance(given, bool):
        return _SIZED_BY_CONCURRENCY if given else None
    return given


@attrs.frozen(kw_only=True, eq=False)
class Options:
    """A client's options, each checked as it is given (fields in the order they are checked).

    ``attrs.evolve(options, timeout=5)`` is a copy with one option changed
    and checked; the limiter, budget and breaker not given are shared.
    """

    timeout: float = attrs.field(default=DEFAULT_TIMEOUT, converter=check_timeout)
    max_retries: int = attrs.field(default=DEFAULT_MAX_RETRIES, converter=check_retries)
    max_concurrency: int = attrs.field(default=DEFAULT_MAX_CONCURRENCY, converter=check_concurrency)
    max_response_bytes: int = attrs.field(
        default=DEFAULT_MAX_RESPONSE_BYTES, converter=check_max_response_bytes
    )
    rate_limiter: RateLimiter | None = attrs.field(
        default=None, alias="rate_limit", converter=_rate_limiter
    )
    retry_budget: RetryBudget | None = attrs.field(
        default=attrs.Factory(RetryBudget), converter=_retry_budget
    )
    circuit_breaker: CircuitBreaker | None = attrs.field(
        default=_SIZED_BY_CONCURRENCY, converter=_circuit_breaker
    )
    # Derived, not options: made again by each copy from the fields above.
    retry_policy: RetryPolicy = attrs.field(init=False, repr=False)
    # For post() to any endpoint: retried only when it cannot have been processed.
    careful_policy: RetryPolicy = attrs.field(init=False, repr=False)
    guard: Guard | None = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        # A frozen class sets what it derives with object.__setattr__ (as attrs documents).
        if self.circuit_breaker is _SIZED_BY_CONCURRENCY:
            # Requests in flight together fail together when the service stalls, so a
            # run must outlast two full rounds of them before it says "down".
            threshold = max(BREAKER_FAILURE_THRESHOLD, 2 * self.max_concurrency)
            object.__setattr__(self, "circuit_breaker", CircuitBreaker(failure_threshold=threshold))
        object.__setattr__(self, "retry_policy", RetryPolicy(self.max_retries))
        object.__setattr__(self, "careful_policy", RetryPolicy(self.max_retries, idempotent=False))
        guarded = self.retry_budget is not None or self.circuit_breaker is not None
        guard = Guard(self.retry_budget, self.circuit_breaker) if guarded else None
        object.__setattr__(self, "guard", guard)


class OptionsView:
    """The read-only properties of a client's options, for `AsyncConvoso` and `Convoso` alike."""

    __slots__ = ()

    _options: Options  # the one object the client was made with (never changed: it is frozen)

    @property
    def timeout(self) -> float:
        """Seconds allowed for each HTTP attempt."""
        return self._options.timeout

    @property
    def max_retries(self) -> int:
        """Retries after the first attempt."""
        return self._options.max_retries

    @property
    def max_concurrency(self) -> int:
        """Default number of status requests in flight in bulk work."""
        return self._options.max_concurrency

    @property
    def rate_limiter(self) -> RateLimiter | None:
        """The limiter every request waits on, if any."""
        return self._options.rate_limiter

    @property
    def retry_budget(self) -> RetryBudget | None:
        """The client-wide retry budget, if any."""
        return self._options.retry_budget

    @property
    def circuit_breaker(self) -> CircuitBreaker | None:
        """The client-wide circuit breaker, if any (its ``state`` says whether it is open)."""
        return self._options.circuit_breaker

    @property
    def max_response_bytes(self) -> int:
        """The largest answer read, as sent and once decompressed."""
        return self._options.max_response_bytes
