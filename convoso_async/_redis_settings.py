"""A `~convoso_async.redis_limiter.RedisRateLimiter`'s options: one frozen object, checked once.

The limiter reads its options from it (``limiter.period`` is ``settings.period``), and so do
the arguments of its scripts (`~convoso_async._redis_scripts`).
"""

from __future__ import annotations

import math

import attrs

from convoso_async._checks import check_count, check_number
from convoso_async._defaults import (
    AUTO_RATE_CEILING,
    AUTO_RATE_FLOOR,
    AUTO_RATE_START,
    MAX_PERIOD,
    MAX_RATE,
    MAX_REQUEST_COUNT,
)
from convoso_async._errors import ConfigurationError
from convoso_async._pacing.ratelimit import RateLimiter, check_rate_bounds

__all__ = ["RedisLimiterSettings", "check_settings"]


@attrs.frozen
class RedisLimiterSettings:
    """A `RedisRateLimiter`'s options, as `check_settings` accepted them."""

    #: The configured rate, and in adaptive mode the rate it starts from.
    start: float
    adaptive: bool
    #: In adaptive mode, the slowest and fastest pace; None otherwise.
    floor: float | None
    ceiling: float | None
    period: float
    burst: int
    timeout: float
    retry_interval: float
    slack: float
    key: str
    fallback: RateLimiter | None

    @property
    def interval_us(self) -> int:
        """The fixed mode's spacing of slots, in µs: ``period * (1 + slack) / rate``."""
        return max(1, math.ceil(self.period * (1 + self.slack) / self.start * 1e6))


def check_settings(
    *,
    rate: object,
    adaptive: object,
    floor: object,
    ceiling: object,
    period: object,
    burst: object,
    timeout: object,
    retry_interval: object,
    slack: object,
    key: object,
    fallback: object,
) -> RedisLimiterSettings:
    """The limiter's options, each checked as the client checks its own.

    Raises:
        ConfigurationError: an option is out of range, of the wrong type, or does not fit the
            mode (a burst or a floor where they don't apply).
    """
    start, is_adaptive, low, high = _check_rates(rate, adaptive, floor, ceiling, burst)
    if not isinstance(key, str) or not key:
        raise ConfigurationError(f"key must be a non-empty string, not {key!r}")
    if fallback is not None and not isinstance(fallback, RateLimiter):
        raise ConfigurationError(
            "fallback must be a rate limiter with an async acquire() method, "
            f"not {type(fallback).__name__}"
        )
    fraction = check_number("slack", slack, above=False, unit="fractions of the period")
    if fraction >= 1:
        raise ConfigurationError(f"slack must be a fraction of the period below 1, not {slack!r}")
    return RedisLimiterSettings(
        start=start,
        adaptive=is_adaptive,
        floor=low,
        ceiling=high,
        period=check_number("period", period, maximum=MAX_PERIOD),
        burst=check_count("burst", burst, minimum=1, maximum=MAX_REQUEST_COUNT),
        timeout=check_number("timeout", timeout),
        retry_interval=check_number("retry_interval", retry_interval, above=False),
        slack=fraction,
        key=key,
        fallback=fallback,
    )


def _check_rates(
    rate: object, adaptive: object, floor: object, ceiling: object, burst: object
) -> tuple[float, bool, float | None, float | None]:
    """The start rate, the mode, and the adaptive floor and ceiling (None in fixed mode)."""
    if rate == "auto":
        adaptive, rate = True, AUTO_RATE_START
    if not isinstance(adaptive, bool):
        raise ConfigurationError(f"adaptive must be True or False, not {type(adaptive).__name__}")
    start = check_number("rate", rate, maximum=MAX_RATE, unit="requests")
    if not adaptive:
        if floor is not None or ceiling is not None:
            raise ConfigurationError(
                "floor and ceiling apply to an adaptive limiter: pass adaptive=True"
            )
        return start, False, None, None
    if burst != 1:
        raise ConfigurationError("an adaptive limiter never bursts: leave burst at 1")
    start, low, high = check_rate_bounds(
        start,
        min(AUTO_RATE_FLOOR, start) if floor is None else floor,
        max(AUTO_RATE_CEILING, start) if ceiling is None else ceiling,
    )
    return start, True, low, high
