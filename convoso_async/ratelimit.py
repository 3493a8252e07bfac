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

#: How much longer than ``period`` the in-process limiter's window is: a
#: fraction of the period, but never less than ``MIN_SLACK_SECONDS``. The
#: server sees requests later and less evenly than they leave (a new
#: connection's set-up delays the first requests, a busy event loop wakes
#: tasks late); measured on loopback on a loaded 2-core machine, arrivals
#: were squeezed by up to ~20 ms, so 10 ms of slack let 41 of 40 through.
WINDOW_SLACK = 0.01
MIN_SLACK_SECONDS = 0.02

#: How much lateness one grant may make up on the next ones (a fraction of the
#: window). Without catch-up a limiter at 1000/s loses every late wake-up and
#: reaches only ~85% of its rate; the window guard still caps any window.
CATCH_UP = 0.05

#: No HTTP client sends more than this per second; a larger rate is a mistake.
MAX_RATE = 1e6
MAX_PERIOD = 366 * 86400.0


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
        if not 0 < rate <= MAX_RATE or not math.isfinite(rate):
            raise ValueError(
                f"rate must be a positive number of requests up to {MAX_RATE:g}, not {rate!r}"
            )
        if not 0 < period <= MAX_PERIOD:
            raise ValueError(f"period must be a positive finite number of seconds, not {period!r}")
        self.rate = float(rate)
        self.period = float(period)
        self._window = period + max(period * WINDOW_SLACK, MIN_SLACK_SECONDS)
        self._interval = self._window / rate
        self._catch_up = max(self._interval, self._window * CATCH_UP)
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
            if now - ready < self._catch_up:
                # A slightly late wake-up is made up on the next grants.
                self._next = ready + self._interval
            else:
                # The first grant after an idle spell (or ever) leaves a double
                # gap: its request is the one that waits for a new connection
                # and reaches the server late, squeezed against the next. And a
                # long idle spell is never spent as a burst.
                self._next = now + 2 * self._interval


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
