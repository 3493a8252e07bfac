"""Pacing: the rate limiter protocol, the in-process limiter, and the 429 pause.

Every request of a client (retries included) waits on the client's pause gate
and then on its rate limiter, if any. Anything with an ``async acquire()``
plugs in as a limiter; `convoso_async.redis_limiter.RedisRateLimiter` keeps
several processes under one account-wide rate.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Protocol, runtime_checkable

import anyio

__all__ = ["Limiter", "PauseGate", "RateLimiter", "limiter_from_option"]

#: How much longer than ``period`` the in-process limiter's window is. The
#: server sees requests a little later and less evenly than they leave; this
#: slack keeps its count in any one ``period`` at or under the rate.
WINDOW_SLACK = 0.01


@runtime_checkable
class RateLimiter(Protocol):
    """What the client needs from a rate limiter: one awaitable per request.

    ``acquire()`` returns when one more request may be sent. It must be safe
    to call from many tasks at once and must give up its claim if cancelled.
    """

    async def acquire(self) -> None: ...


class Limiter:
    """An in-process limiter: at most ``rate`` requests in any ``period`` seconds.

    Requests are spaced evenly (no burst at start), and a second guard counts
    the grants of the last window, so a task that woke late never lets the
    next ones crowd into one window. Works on asyncio and trio.

        >>> limiter = Limiter(200)            # 200 requests per second
        >>> limiter = Limiter(100, period=60) # 100 requests per minute
    """

    def __init__(self, rate: float, *, period: float = 1.0) -> None:
        if isinstance(rate, bool) or not isinstance(rate, (int, float)):
            raise TypeError(f"rate must be a number of requests, not {type(rate).__name__}")
        if not math.isfinite(rate) or rate <= 0:
            raise ValueError(f"rate must be a positive finite number, not {rate!r}")
        if not math.isfinite(period) or period <= 0:
            raise ValueError(f"period must be a positive finite number of seconds, not {period!r}")
        self.rate = float(rate)
        self.period = float(period)
        self._window = period * (1 + WINDOW_SLACK)
        self._interval = self._window / rate
        self._recent: deque[float] = deque(maxlen=max(1, math.floor(rate)))
        self._next = -math.inf
        self._lock = anyio.Lock()

    def __repr__(self) -> str:
        return f"Limiter(rate={self.rate:g}, period={self.period:g})"

    async def acquire(self) -> None:
        """Wait until one more request fits within the rate, then claim it."""
        # Waiting while holding the lock queues callers in arrival order and
        # makes a cancelled waiter leave no trace.
        async with self._lock:
            now = anyio.current_time()
            ready = self._next
            if len(self._recent) == self._recent.maxlen:
                ready = max(ready, self._recent[0] + self._window)
            if ready > now:
                await anyio.sleep(ready - now)
                now = anyio.current_time()
            self._recent.append(now)
            # A slightly late wake-up is caught up on the next grant; a long
            # idle spell is not, so it cannot be spent as a burst.
            base = ready if now - ready < self._interval else now
            self._next = base + self._interval


class PauseGate:
    """A client-wide pause: after a 429, no request of the client leaves until then."""

    def __init__(self) -> None:
        self._until = -math.inf

    @property
    def remaining(self) -> float:
        """Seconds left in the current pause (0 when not paused)."""
        return max(0.0, self._until - anyio.current_time())

    def pause_for(self, seconds: float) -> None:
        """Hold every request of the client for ``seconds`` from now (extends, never shortens)."""
        if seconds > 0:
            self._until = max(self._until, anyio.current_time() + seconds)

    async def wait(self) -> None:
        """Return once no pause is in force."""
        # Not polling: each sleep runs to the deadline; the loop only repeats
        # when another 429 extended the pause meanwhile.
        while (delay := self._until - anyio.current_time()) > 0:  # noqa: ASYNC110
            await anyio.sleep(delay)


def limiter_from_option(rate_limit: float | RateLimiter | None) -> RateLimiter | None:
    """Turn the client's ``rate_limit`` option into a limiter (or no limiter)."""
    if rate_limit is None:
        return None
    if isinstance(rate_limit, RateLimiter):
        return rate_limit
    if isinstance(rate_limit, bool) or not isinstance(rate_limit, (int, float)):
        raise TypeError(
            "rate_limit must be None, a number of requests per second, or an object with "
            f"an async acquire() method; got {type(rate_limit).__name__}"
        )
    return Limiter(rate_limit)
