"""Pacing: the rate limiter protocols, the in-process limiters, and the 429 pause.

Every request of a client (retries included) waits on the client's pause gate
and then on its rate limiter, if any. Anything with an ``async acquire()``
plugs in as a limiter; `convoso_async.redis_limiter.RedisRateLimiter` keeps
several processes under one account-wide rate. A limiter that also implements
`ThrottleFeedback` is told how each answer went: `AdaptiveLimiter` (what
``rate_limit="auto"`` makes) uses that to find the account's limit.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from contextvars import ContextVar
from typing import Literal, NamedTuple, Protocol, runtime_checkable

import anyio

from convoso_async import _telemetry as telemetry
from convoso_async._checks import check_number
from convoso_async._defaults import (
    AUTO_RATE_CEILING,
    AUTO_RATE_FLOOR,
    AUTO_RATE_START,
    MAX_PERIOD,
    MAX_RATE,
)
from convoso_async._errors import ConfigurationError
from convoso_async._pacing.sharedlock import SharedLock, running_loop

__all__ = [
    "AdaptiveLimiter",
    "Limiter",
    "PauseGate",
    "RateLimiter",
    "ThrottleFeedback",
    "Grant",
    "adaptive_rate",
    "check_rate_bounds",
    "decreased_rates",
    "last_grant",
    "limiter_from_option",
    "set_last_grant",
]

logger = logging.getLogger("convoso_async")

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


@runtime_checkable
class RateLimiter(Protocol):
    """What the client needs from a rate limiter: one awaitable per request.

    ``acquire()`` returns when one more request may be sent. It must be safe
    to call from many tasks at once and must give up its claim if cancelled.
    """

    async def acquire(self) -> None: ...


@runtime_checkable
class ThrottleFeedback(Protocol):
    """What a limiter implements to hear how its requests were answered (optional).

    The pipeline calls ``on_throttle`` after a 429, with the ``Retry-After``
    in seconds (``None`` when absent, or when `set_testing` is on), and
    ``on_success`` after any other answer below 500. Both run in the task that
    sent the request, right after its ``acquire()``, so a limiter may keep
    per-request notes in a `contextvars.ContextVar`. ``on_success`` runs on
    every answer and must be cheap; ``on_throttle`` may talk to a shared store.
    Neither may raise.
    """

    async def on_throttle(self, retry_after: float | None) -> None: ...

    def on_success(self) -> None: ...


#: Each event loop's clock, as an offset to `time.monotonic` (see `shared_time`).
_CLOCK_OFFSETS: dict[object, float] = {}


def shared_time() -> float:
    """``anyio.current_time()`` on one clock for every event loop of the process.

    A limiter shared by clients on several loops compares times taken in each, but each loop
    keeps its own clock: asyncio's is `time.monotonic`, trio's starts hours away from it (a
    random offset), a test's may be virtual. Each loop's clock is set against the monotonic
    one once, when the loop is first seen; within one loop, times stay exactly its own.
    """
    loop = running_loop()
    now = anyio.current_time()
    offset = _CLOCK_OFFSETS.get(loop)
    if offset is None:
        if len(_CLOCK_OFFSETS) >= 64:  # loops come and go (each asyncio.run is one)
            _CLOCK_OFFSETS.clear()
        offset = _CLOCK_OFFSETS[loop] = now - time.monotonic()
    return now - offset


class Limiter:
    """An in-process limiter: at most ``rate`` requests in any ``period`` seconds.

    Requests are spaced evenly (no burst at start), and a second guard counts
    the grants of the last window, so a task that woke late never lets the
    next ones crowd into one window. Works on asyncio and trio.

        >>> limiter = Limiter(200)            # 200 requests per second
        >>> limiter = Limiter(100, period=60) # 100 requests per minute
    """

    def __init__(self, rate: float, *, period: float = 1.0) -> None:
        rate = self.rate = check_number("rate", rate, maximum=MAX_RATE, unit="requests")
        period = self.period = check_number("period", period, maximum=MAX_PERIOD)
        self._window = period + max(period * WINDOW_SLACK, MIN_SLACK_SECONDS)
        self._interval = self._window / rate
        self._catch_up = max(self._interval, self._window * CATCH_UP)
        self._recent: deque[float] = deque(maxlen=max(1, math.floor(rate)))
        self._next = -math.inf
        self._lock = SharedLock()  # the clients sharing it may each run their own loop

    def __repr__(self) -> str:
        return f"Limiter(rate={self.rate:g}, period={self.period:g})"

    async def acquire(self) -> None:
        """Wait until one more request fits within the rate, then claim it."""
        # Waiting while holding the lock queues callers in arrival order and
        # makes a cancelled waiter leave no trace.
        async with self._lock:
            now = shared_time()
            ready = self._next
            if len(self._recent) == self._recent.maxlen:
                ready = max(ready, self._recent[0] + self._window)
            if ready > now:
                await anyio.sleep(ready - now)
                now = shared_time()
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


#: How the adaptive limiter moves (shared with the Redis limiter's adaptive mode).
#: On a 429 the rate drops to ADAPTIVE_DECREASE of what it was (the
#: multiplicative decrease of TCP CUBIC and the AWS SDKs' adaptive mode)...
ADAPTIVE_DECREASE = 0.7
#: ...then climbs back to ADAPTIVE_TARGET of the rate that met the 429: just
#: under the limit it found, so that holding there does not meet it again.
ADAPTIVE_TARGET = 0.95
#: The climb takes RECOVERY_SECONDS of busy time, along a cubic that is steep
#: at first and flat on arrival (CUBIC's concave region)...
RECOVERY_SECONDS = 5.0
#: ...the rate then holds at the target for HOLD_SECONDS: every 429 costs the
#: whole ``Retry-After`` (at least 1 s) of sending nothing, so probing often
#: would cost more than the few percent it could find...
HOLD_SECONDS = 20.0
#: ...and then probes upwards, slowly at first, as target * (1 + (t / PROBE_SECONDS)**3)
#: (CUBIC's convex region): +5% after 3.7 s, twice the target after 10 s, in
#: case the limit was raised.
PROBE_SECONDS = 10.0
#: The deepest one 429 can take the rate to, as a fraction of it: three
#: ordinary drops at once. The count of requests that got through before a 429
#: may underestimate the limit (a server counting over a longer window than
#: the period, a client just back from a pause), so it is trusted only so far.
DEEPEST_DROP = ADAPTIVE_DECREASE**3
#: Before its first 429 the rate doubles every SLOW_START_DOUBLING seconds of busy time.
SLOW_START_DOUBLING = 2.0
#: A rise is logged each time the rate has grown by this factor since the last line.
LOG_RISE_FACTOR = 1.25


def adaptive_rate(low: float, target: float, grown: float) -> float:
    """The adaptive limiter's rate, ``grown`` seconds of busy time after its last change.

    ``low`` is the rate right after the last 429 (or the start rate), and
    ``target`` the rate it recovers to; ``target`` is 0 before the first 429,
    while the rate doubles every `SLOW_START_DOUBLING` seconds. The caller
    clamps the result to its floor and ceiling. The Redis limiter's Lua
    script computes the same function.
    """
    if target <= 0:
        return low * float(2.0 ** min(grown / SLOW_START_DOUBLING, 64.0))
    if grown < RECOVERY_SECONDS:
        left = 1.0 - grown / RECOVERY_SECONDS
        return target - (target - low) * left**3
    probing = grown - RECOVERY_SECONDS - HOLD_SECONDS
    if probing <= 0:
        return target
    return target * (1.0 + min(probing / PROBE_SECONDS, 1e3) ** 3)


def decreased_rates(rate: float, recent: float, floor: float) -> tuple[float, float]:
    """After a 429 met at ``rate``: the rate to drop to, and the target to recover to.

    ``recent`` is how many requests were granted in the period before the
    429: what the server let through plus one, the best estimate of its limit
    when that is counted per period. The target is the lower of the two
    estimates (but never below `DEEPEST_DROP` of ``rate``), so a start far
    too high converges in two or three drops rather than one per 30%.
    """
    found = max(min(rate, recent), rate * DEEPEST_DROP)
    target = max(floor, found * ADAPTIVE_TARGET)
    return min(target, max(floor, rate * ADAPTIVE_DECREASE)), target


class Grant(NamedTuple):
    """What a task's last ``acquire()`` was: by whom, when, and the growth it earns."""

    owner: object
    at: float
    credit: float


# The grant of the request this task is sending: the feedback hooks run in the
# same task right after it, so this pairs each answer with its request.
_last_grant: ContextVar[Grant | None] = ContextVar("convoso_async_last_grant", default=None)


def last_grant() -> Grant | None:
    """The grant of the request this task is sending, as its limiter noted it (if it did)."""
    return _last_grant.get()


def set_last_grant(grant: Grant | None) -> None:
    """Note the grant of the request this task is about to send (for the feedback hooks)."""
    _last_grant.set(grant)


class AdaptiveLimiter:
    """A limiter that finds the account's rate limit from the 429s it meets.

    What ``rate_limit="auto"`` makes. Requests are spaced evenly at `rate`
    (never a burst, not even after an idle spell). The rate:

    - starts at ``start`` and, until the first 429, doubles every 2 s;
    - on a 429 pauses every request that waits on it for the ``Retry-After``
      and drops to 70% of what it was (or lower, when fewer requests got
      through in the last period: see `decreased_rates`). A 429 for a request
      sent before the last drop is old news (it was sent at the old rate) and
      changes nothing, so a burst of 429s in flight together counts once;
    - then climbs back, over 5 s, to 95% of the rate that met the 429 (or of
      what got through); holds there for 20 s; then probes upwards, slowly at
      first, in case the limit was raised (the shape of TCP CUBIC's window,
      as in the AWS SDKs' "adaptive" retry mode).

    The rate only grows on answers to requests that queued for their slot:
    a client sending less than it may does not talk itself into a rate it has
    never tried. It stays within ``[floor, ceiling]``.

    Each drop, and each rise of a quarter since the last line, is logged at
    INFO on the ``convoso_async`` logger.

        >>> limiter = AdaptiveLimiter(start=20, floor=2, ceiling=100)
        >>> limiter.rate   # requests per second right now
        20.0

    A client paces on it with ``AsyncConvoso(rate_limit=limiter)``. Give one
    limiter to several clients in a process to share what it learns;
    `~convoso_async.redis_limiter.RedisRateLimiter` shares it across processes.
    """

    def __init__(
        self,
        start: float = AUTO_RATE_START,
        *,
        floor: float = AUTO_RATE_FLOOR,
        ceiling: float = AUTO_RATE_CEILING,
        period: float = 1.0,
    ) -> None:
        start, floor, ceiling = check_rate_bounds(start, floor, ceiling)
        self.start = start
        self.floor = floor
        self.ceiling = ceiling
        self.period = check_number("period", period, maximum=MAX_PERIOD)
        #: How many times a 429 lowered the rate.
        self.decreases = 0
        self._low = start
        self._target = 0.0
        self._grown = 0.0
        self._decreased_at = -math.inf
        self._next = -math.inf
        self._paused_until = -math.inf
        self._logged = start
        # Grant times of the last period: how many got through before a 429.
        self._recent: deque[float] = deque()
        self._lock = SharedLock()  # the clients sharing it may each run their own loop
        telemetry.watch_limiter(self, {"convoso.rate_limiter.kind": "adaptive"})

    def __repr__(self) -> str:
        return (
            f"AdaptiveLimiter(rate={self.rate:.4g}, start={self.start:g}, floor={self.floor:g}, "
            f"ceiling={self.ceiling:g}, period={self.period:g})"
        )

    @property
    def rate(self) -> float:
        """Requests per ``period`` allowed right now."""
        rate = adaptive_rate(self._low, self._target, self._grown)
        return min(self.ceiling, max(self.floor, rate))

    async def acquire(self) -> None:
        """Wait until one more request fits within the current rate, then claim it."""
        async with self._lock:
            now = shared_time()
            ready = max(self._next, self._paused_until)
            waited = ready > now
            while ready > now:
                await anyio.sleep(ready - now)
                now = shared_time()
                # A 429 may have paused the limiter while this task slept.
                ready = max(ready, self._paused_until)
            interval = self.period / self.rate
            if waited and now - ready < max(interval, self.period * CATCH_UP):
                self._next = ready + interval  # a slightly late wake-up is made up
            else:
                self._next = now + interval
            _last_grant.set(Grant(self, now, interval if waited else 0.0))
            recent = self._recent
            recent.append(now)
            while recent[0] <= now - self.period:
                recent.popleft()

    async def on_throttle(self, retry_after: float | None) -> None:
        """A request was answered 429: pause for ``retry_after`` and lower the rate."""
        now = shared_time()
        if retry_after is not None and retry_after > 0:
            self._paused_until = max(self._paused_until, now + retry_after)
        grant = _last_grant.get()
        if grant is not None and grant.owner is self and grant.at < self._decreased_at:
            return
        before = self.rate
        recent = self._recent
        while recent and recent[0] <= now - self.period:
            recent.popleft()
        self._low, self._target = decreased_rates(before, len(recent), self.floor)
        self._grown = 0.0
        self._decreased_at = now
        self.decreases += 1
        self._logged = self._low
        logger.info(
            "rate limited (429): adaptive rate lowered from %.4g to %.4g requests per %gs, "
            "recovering towards %.4g",
            before,
            self._low,
            self.period,
            self._target,
            extra={
                "rate_before": before,
                "rate": self._low,
                "period": self.period,
                "target": self._target,
            },
        )

    def on_success(self) -> None:
        """A request was answered without a 429: the rate may grow a little."""
        grant = _last_grant.get()
        if (
            grant is None
            or grant.owner is not self
            or not grant.credit
            or grant.at < self._decreased_at
        ):
            return
        if self.rate >= self.ceiling:
            return
        # Each answer to a request that queued earns one interval of growth, so
        # the rate grows with busy time (not with the number of tasks).
        self._grown += grant.credit
        rate = self.rate
        if rate >= self._logged * LOG_RISE_FACTOR:
            self._logged = rate
            logger.info(
                "adaptive rate raised to %.4g requests per %gs",
                rate,
                self.period,
                extra={"rate": rate, "period": self.period},
            )


def check_rate_bounds(start: object, floor: object, ceiling: object) -> tuple[float, float, float]:
    """Check an adaptive limiter's start, floor and ceiling; return them as floats."""
    values = []
    for name, value in (("start", start), ("floor", floor), ("ceiling", ceiling)):
        values.append(check_number(name, value, maximum=MAX_RATE, unit="requests"))
    low, high = values[1], values[2]
    if not low <= values[0] <= high:
        raise ConfigurationError(
            f"start must lie between floor and ceiling: floor={low:g}, start={values[0]:g}, "
            f"ceiling={high:g}"
        )
    return values[0], low, high


def limiter_from_option(
    rate_limit: float | Literal["auto"] | RateLimiter | None,
) -> RateLimiter | None:
    """Turn the client's ``rate_limit`` option into a limiter (or no limiter)."""
    if rate_limit is None:
        return None
    if isinstance(rate_limit, RateLimiter):
        return rate_limit
    if rate_limit == "auto":
        return AdaptiveLimiter()
    if isinstance(rate_limit, bool) or not isinstance(rate_limit, (int, float)):
        raise ConfigurationError(
            'rate_limit must be None, a number of requests per second, "auto", or an object '
            f"with an async acquire() method; got {type(rate_limit).__name__}"
        )
    return Limiter(check_number("rate_limit", rate_limit, maximum=MAX_RATE, unit="requests"))


# Public names report the package, where users import them from (as httpx's do).
for _public in (AdaptiveLimiter, Limiter, RateLimiter):
    _public.__module__ = "convoso_async"
