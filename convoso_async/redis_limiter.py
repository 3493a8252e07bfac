"""One rate limit shared by every process that reaches the same Redis.

The in-process `~convoso_async._pacing.ratelimit.Limiter` paces one process. A web
backend with several workers, or a few scripts run side by side, need one
budget for the whole account: `RedisRateLimiter` keeps it in Redis.

How it works (GCRA, the "generic cell rate algorithm"): Redis holds one number
per key, the *theoretical arrival time* (TAT) of the next request, in
microseconds of the Redis server's clock. Each ``acquire()`` runs one Lua
script that reads the server clock (``TIME``), reserves the next free slot by
moving the TAT one interval on, and answers how long to wait for that slot.
The caller sleeps that long and goes. So:

- one round trip per request, no polling, and one short string per key
  (it expires as soon as the key is idle);
- slots are handed out in the order Redis receives the calls, spaced
  ``period * (1 + slack) / rate`` apart on one clock, whatever the
  processes' own clocks say;
- a caller cancelled while it waits for its slot does not give the slot back:
  that interval goes unused. Each process asks Redis for one slot at a time
  (its other tasks queue locally), so a cancellation wastes at most one
  interval per process.

A 429 seen by any process pauses them all: the client tells the limiter
(`~convoso_async._pacing.ratelimit.ThrottleFeedback`), which writes "paused until
now + Retry-After" on the Redis clock under ``KEY:pause``; no slot is handed
out before then, in any process.

In adaptive mode (``rate="auto"``, or ``adaptive=True`` with a start rate) the
rate itself lives in Redis too (a small hash under ``KEY:adaptive``, and the
last period's grants, a sorted set under ``KEY:grants``) and
follows the same rules as `~convoso_async._pacing.ratelimit.AdaptiveLimiter`: every
process paces on the one learned rate, each 429 lowers it once (a 429 for a
request whose slot came before the last drop is old news), and the answers to
requests that queued for their slot make it grow. So N workers together find
the account's limit, not each 1/N of a guess. Redis computes everything on its
own clock, in the same two scripts (``_redis_scripts``, with the arguments they take).

Redis is reached through ``redis.asyncio``, which runs on asyncio only: one
server, a Sentinel-managed primary, or a Redis Cluster (how the limiter
connects, names its keys there, and reads a failure is in ``_redis_connection``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, cast

import anyio

# Without the redis extra the module still imports (so a type hint or an isinstance check
# works); constructing a RedisRateLimiter then raises ConfigurationError naming the extra.
try:
    import redis.asyncio as aioredis
    from redis import Redis as _SyncRedis
    from redis.asyncio.cluster import RedisCluster
    from redis.cluster import RedisCluster as _SyncRedisCluster
    from redis.commands.core import AsyncScript
    from redis.exceptions import RedisClusterException, RedisError

    from convoso_async._redis_connection import (
        AsyncRedis,
        Failure,
        acl_rules,
        bounded_retry,
        check_client,
        client_secrets,
        connect,
        describe_client,
        diagnose,
        hide_secrets,
        limiter_keys,
        redact_url,
        url_secrets,
    )
except ImportError as exc:
    _missing_redis: ImportError | None = exc
else:
    _missing_redis = None

from convoso_async import _telemetry
from convoso_async._defaults import REDIS_ADAPTIVE_STATE_TTL as ADAPTIVE_STATE_TTL
from convoso_async._defaults import REDIS_KEY as DEFAULT_KEY
from convoso_async._defaults import REDIS_RETRY_INTERVAL as DEFAULT_RETRY_INTERVAL
from convoso_async._defaults import REDIS_SLACK as DEFAULT_SLACK
from convoso_async._defaults import REDIS_TIMEOUT as DEFAULT_REDIS_TIMEOUT
from convoso_async._errors import ConfigurationError, RateLimiterUnavailableError
from convoso_async._pacing.ratelimit import (
    LOG_RISE_FACTOR,
    Grant,
    RateLimiter,
    ThrottleFeedback,
    last_grant,
    set_last_grant,
)
from convoso_async._redis_scripts import (
    ACQUIRE_SCRIPT,
    THROTTLE_SCRIPT,
    AcquireReply,
    ThrottleReply,
    acquire_args,
    throttle_args,
)
from convoso_async._redis_settings import check_settings

#: Seconds one call to Redis may take: `DEFAULT_REDIS_TIMEOUT`, under its earlier name. (The
#: client's `~convoso_async._defaults.DEFAULT_TIMEOUT`, per HTTP attempt, is another default.)
DEFAULT_TIMEOUT = DEFAULT_REDIS_TIMEOUT

__all__ = [
    "ADAPTIVE_STATE_TTL",
    "DEFAULT_KEY",
    "DEFAULT_REDIS_TIMEOUT",
    "DEFAULT_RETRY_INTERVAL",
    "DEFAULT_SLACK",
    "DEFAULT_TIMEOUT",
    "RateLimiterUnavailableError",
    "RedisRateLimiter",
]

logger = logging.getLogger("convoso_async")


@dataclass
class _LoopBinding:
    """What one event loop uses: asyncio locks and connections can't cross loops."""

    loop: asyncio.AbstractEventLoop
    lock: asyncio.Lock
    script: AsyncScript
    throttle: AsyncScript
    #: Closes the limiter's own connections of this loop as the loop shuts down.
    closer: AsyncGenerator[None, None] | None = None


async def _close_with_the_loop(client: AsyncRedis) -> AsyncGenerator[None, None]:
    # An async generator left suspended is closed by asyncio.run (and anyio.run) as the loop
    # shuts down, inside that loop: the one place its connections can still be closed.
    try:
        yield
    finally:
        await client.aclose()


class RedisRateLimiter:
    """At most ``rate`` requests per ``period`` across every process sharing a Redis key.

    Give each worker process its own limiter with the same URL, key and rate:

        from fastapi import FastAPI
        from convoso_async import AsyncConvoso
        from convoso_async.redis_limiter import RedisRateLimiter

        app = FastAPI()  # run with: uvicorn app:app --workers 4
        convoso = AsyncConvoso(
            rate_limit=RedisRateLimiter("redis://localhost:6379/0", rate=10)
        )  # 10 requests per second for the four workers together

    Args:
        redis: a URL, and the limiter then owns the connection (close it
            with `aclose`): ``redis://`` / ``rediss://`` (TLS) / ``unix://``
            for one server, ``redis+cluster://host:port[,host:port...]`` /
            ``rediss+cluster://`` for a Redis Cluster. Or a client that the
            caller keeps and closes: a ``redis.asyncio.Redis`` (Sentinel's
            ``master_for()`` too) or ``redis.asyncio.cluster.RedisCluster``;
            the limiter sets its retry policy to its own (one immediate retry
            on a fresh connection, also after READONLY, LOADING or MASTERDOWN)
            so that a failover is followed and a wrong password fails at once.
        key: the Redis key of the shared state; processes using one key share
            one budget, so use the same ``rate`` and ``period`` in all of them.
            In a Cluster the limiter's keys share a hash tag, so one slot holds
            them: ``{KEY}``, ``{KEY}:pause``...; a key with a tag of its own
            (``convoso:{acme}``) is used as it is.
        rate: requests allowed per ``period``.
        period: the window, in seconds.
        burst: how many requests may go at once after an idle spell. With the
            default of 1, requests are evenly spaced and no window of
            ``period`` seconds (as the Redis clock measures) holds more than
            ``rate`` of them; a larger burst lets a window hold up to
            ``burst - 1`` more.
        timeout: seconds one ``acquire()`` waits for Redis to answer (the wait
            for the slot itself is not bounded by it).
        fallback: a limiter to use while Redis is unreachable, typically
            ``Limiter(rate / number_of_processes)``. Without one, ``acquire()``
            raises `RateLimiterUnavailableError` instead.
        retry_interval: while the fallback paces, seconds between attempts to
            reach Redis again.
        slack: how much longer than ``period`` each window is taken to be, as
            a fraction: requests that leave up to ``slack * period`` after
            their slot still don't crowd a window. An event loop that lags
            longer than that (CPU-bound work on it) can defeat it. (Not used
            in adaptive mode, which learns its margin from the 429s.)
        adaptive: learn the rate from the 429s every process meets, starting
            at ``rate`` (``rate="auto"`` does this from 10/s). The rules are
            `~convoso_async.AdaptiveLimiter`'s; the learned rate is shared.
        floor, ceiling: in adaptive mode, the slowest and fastest pace
            (defaults 0.5/s and 1000/s).

    Adaptive, four workers finding the account's limit together::

        limiter = RedisRateLimiter("redis://localhost:6379/0", key="convoso:acme", rate="auto")
        limiter.rate   # the shared rate as this process last saw it

    Whatever the mode, a 429 that any process meets pauses every process on
    the key until its ``Retry-After`` (on the Redis server's clock).

    While Redis is unreachable each process paces with ``fallback`` (give an
    `~convoso_async.AdaptiveLimiter` to keep adapting locally, say
    ``AdaptiveLimiter(start=rate / workers)``) and 429s pause only the process
    that met them. The shared state stays in Redis as it was; if Redis lost
    it (a restart without persistence), the first process to reach it again
    seeds it with the rate it saw last, not with the start rate.

    A Redis that fails says why, in `RateLimiterUnavailableError` and the
    fallback's warning: a password needed or refused, permissions missing (with
    the ACL rules `acl_rules` gives), a database it does not have, a server
    that cannot speak RESP3 (add ``?protocol=2``), a Cluster reached without
    the cluster URL, a read-only replica, a TLS handshake, a port that answers
    but is not Redis, or Redis unreachable. A URL or client redis-py would
    refuse only when connecting (``protocol=7``, an unknown option) is a
    `~convoso_async._errors.ConfigurationError` here, at once.

    ``acquire()`` must run on asyncio (``redis.asyncio`` is asyncio-only); on
    trio it raises `~convoso_async._errors.ConfigurationError`. So does the
    constructor when the ``redis`` extra is not installed, naming it.
    """

    def __init__(
        self,
        redis: aioredis.Redis | RedisCluster | str,
        *,
        key: str = DEFAULT_KEY,
        rate: float | Literal["auto"],
        period: float = 1.0,
        burst: int = 1,
        timeout: float = DEFAULT_REDIS_TIMEOUT,
        fallback: RateLimiter | None = None,
        retry_interval: float = DEFAULT_RETRY_INTERVAL,
        slack: float = DEFAULT_SLACK,
        adaptive: bool = False,
        floor: float | None = None,
        ceiling: float | None = None,
    ) -> None:
        if _missing_redis is not None:
            raise ConfigurationError(
                "RedisRateLimiter needs the 'redis' extra: pip install 'convoso-async[redis]' "
                f"({_missing_redis})"
            )
        self._settings = check_settings(
            rate=rate,
            adaptive=adaptive,
            floor=floor,
            ceiling=ceiling,
            period=period,
            burst=burst,
            timeout=timeout,
            retry_interval=retry_interval,
            slack=slack,
            key=key,
            fallback=fallback,
        )
        # The shared rate and target as last seen: the seed if Redis lost them.
        self._seen = (self.start, 0.0)
        self._logged = self.start
        # Growth earned by answers since the last acquire, in µs, sent with the next.
        self._credit_us = 0.0
        self._attach(redis)
        self._binding: _LoopBinding | None = None
        # Outage bookkeeping, shared by every task of the process.
        self._failures = 0
        self._last_error = ""
        self._down = False
        self._retry_at = -math.inf
        # Whether this outage's first 429 that could not be shared was logged.
        self._unshared_logged = False
        if self.adaptive:
            _telemetry.watch_limiter(
                self, {"convoso.rate_limiter.kind": "redis", "convoso.rate_limiter.key": self.key}
            )

    def _attach(self, redis: object) -> None:
        """Where the limiter talks: a URL (its own client) or the caller's asyncio client."""
        self._url: str | None
        self._client: AsyncRedis
        if isinstance(redis, str):
            self._url = redis
            self._server = redact_url(redis)
            self._secrets = url_secrets(redis)
            self._client = self._connect()
        elif isinstance(redis, (aioredis.Redis, RedisCluster)):
            self._url = None
            self._server = describe_client(redis)
            self._secrets = client_secrets(redis)
            try:
                check_client(redis)
            except ValueError as exc:
                raise ConfigurationError(f"the Redis client at {self._server}: {exc}") from None
            self._client = redis
        else:
            sync = isinstance(redis, (_SyncRedis, _SyncRedisCluster))
            hint = " (the synchronous client)" if sync else ""
            raise ConfigurationError(
                "redis must be a Redis URL, a redis.asyncio.Redis client or a "
                "redis.asyncio.cluster.RedisCluster client, "
                f"not {type(redis).__module__}.{type(redis).__name__}{hint}"
            )
        self._cluster = isinstance(self._client, RedisCluster)
        self._keys = limiter_keys(self.key, cluster=self._cluster)
        if self._url is None:
            # The caller's retry policy may back off for longer than `timeout` (redis-py's
            # default does), which hides a wrong password behind "did not answer", and may
            # not follow a failover: the limiter's own policy replaces it.
            self._client.set_retry(bounded_retry())

    def __repr__(self) -> str:
        text = f"RedisRateLimiter({self._server!r}, key={self.key!r}, rate={self.rate:.4g}"
        if self.adaptive:
            text += f", adaptive=True, start={self.start:g}, floor={self.floor:g}"
            text += f", ceiling={self.ceiling:g}"
        text += f", period={self.period:g}, burst={self.burst}"
        if self.fallback is not None:
            text += f", fallback={self.fallback!r}"
        return text + ")"

    @property
    def rate(self) -> float:
        """Requests per ``period``: the configured rate, or the shared adaptive rate last seen."""
        return self._seen[0]

    @property
    def acl_rules(self) -> str:
        """The rules a Redis ACL user needs for this limiter: its commands and its keys.

        ``ACL SETUSER convoso on >PASSWORD`` followed by these (on every node of a Cluster).
        """
        return acl_rules(self._keys, cluster=self._cluster)

    @property
    def key(self) -> str:
        """The Redis key of the shared state."""
        return self._settings.key

    @property
    def adaptive(self) -> bool:
        """Whether the rate is learned from the 429s (``rate="auto"`` or ``adaptive=True``)."""
        return self._settings.adaptive

    @property
    def start(self) -> float:
        """The configured rate; in adaptive mode, the rate it started from."""
        return self._settings.start

    @property
    def floor(self) -> float | None:
        """The slowest adaptive pace (None in fixed mode)."""
        return self._settings.floor

    @property
    def ceiling(self) -> float | None:
        """The fastest adaptive pace (None in fixed mode)."""
        return self._settings.ceiling

    @property
    def period(self) -> float:
        """The window of ``rate``, in seconds."""
        return self._settings.period

    @property
    def burst(self) -> int:
        """How many requests may go at once after an idle spell."""
        return self._settings.burst

    @property
    def timeout(self) -> float:
        """Seconds one call to Redis may take."""
        return self._settings.timeout

    @property
    def fallback(self) -> RateLimiter | None:
        """The limiter that paces this process while Redis is unreachable."""
        return self._settings.fallback

    @property
    def retry_interval(self) -> float:
        """While the fallback paces, seconds between attempts to reach Redis."""
        return self._settings.retry_interval

    @property
    def slack(self) -> float:
        """How much longer than ``period`` each window is taken to be, as a fraction."""
        return self._settings.slack

    async def acquire(self) -> None:
        """Wait for this process's next slot within the shared rate, then claim it.

        Raises:
            RateLimiterUnavailableError: Redis did not answer within ``timeout``
                (or failed) and no ``fallback`` was given.
            ConfigurationError: awaited outside asyncio (e.g. on trio).
        """
        binding = await self._bound()
        failures_seen = self._failures
        set_last_grant(None)
        async with binding.lock:
            if self._down and self.fallback is not None and time.monotonic() < self._retry_at:
                pass  # Redis was unreachable moments ago: don't stall every call on it.
            elif self.fallback is None and self._failures != failures_seen:
                # Redis failed while this call queued behind another: fail now
                # rather than make each queued caller wait out its own timeout.
                raise self._error(self._last_error)
            elif await self._reserve(binding):
                return
        assert self.fallback is not None  # every other path returned or raised
        await self.fallback.acquire()

    async def _reserve(self, binding: _LoopBinding) -> bool:
        """Reserve this process's next slot at Redis and wait for it; False if Redis failed.

        Raises `RateLimiterUnavailableError` for a failure when there is no fallback.
        """
        credit, self._credit_us = self._credit_us, 0.0
        args = acquire_args(self._settings, self._seen, credit)
        deadline = time.monotonic() + self.timeout
        try:
            with anyio.fail_after(self.timeout):
                reply = AcquireReply.parse(await binding.script(keys=self._keys, args=args))
        except (RedisError, RedisClusterException, OSError) as exc:
            error = self._record_failure(await self._explain(exc, deadline))
            if self.fallback is None:
                raise error from exc
            return False
        self._record_success()
        if self.adaptive:
            self._observe(reply.rate, reply.target)
            interval_us = self.period * 1e6 / self._seen[0]
            credit = interval_us if reply.wait_us > 0 else 0.0
            set_last_grant(Grant(self, reply.reserved_us, credit))
        else:
            set_last_grant(Grant(self, reply.reserved_us, 0.0))
        if reply.wait_us > 0:
            # The slot is reserved at Redis; sleeping with the lock
            # held keeps this process at one reservation at a time.
            await anyio.sleep(reply.wait_us / 1e6)
        return True

    async def on_throttle(self, retry_after: float | None) -> None:
        """A request was answered 429: pause every process on the key, and lower the rate.

        Never raises: if Redis does not answer, the 429 is passed to the
        fallback (when it listens) and only this process pauses.
        """
        grant = last_grant()
        fallback = self.fallback if isinstance(self.fallback, ThrottleFeedback) else None
        if self.fallback is not None and (
            (grant is not None and grant.owner is self.fallback)
            or (self._down and time.monotonic() < self._retry_at)
        ):
            self._log_unshared(retry_after, "while the fallback paces this process")
            if fallback is not None:
                await fallback.on_throttle(retry_after)
            return
        reserved = grant.at if grant is not None and grant.owner is self else -1
        retry_us = -1.0 if retry_after is None else max(0.0, retry_after) * 1e6
        args = throttle_args(self._settings, self._seen, retry_us, reserved)
        deadline = time.monotonic() + self.timeout
        try:
            binding = await self._bound()
            with anyio.fail_after(self.timeout):
                reply = ThrottleReply.parse(await binding.throttle(keys=self._keys, args=args))
        except (RedisError, RedisClusterException, OSError, ConfigurationError) as exc:
            self._log_unshared(retry_after, (await self._explain(exc, deadline)).what)
            if fallback is not None:
                await fallback.on_throttle(retry_after)
            return
        self._unshared_logged = False
        if self.adaptive and reply.lowered:
            self._seen = (reply.after, reply.target)
            self._logged = reply.after
            logger.info(
                "rate limited (429): shared adaptive rate on key %r lowered from %.4g to %.4g "
                "requests per %gs",
                self.key,
                reply.before,
                reply.after,
                self.period,
                extra={
                    "key": self.key,
                    "rate_before": reply.before,
                    "rate": reply.after,
                    "period": self.period,
                },
            )

    def on_success(self) -> None:
        """A request was answered without a 429: the shared rate may grow (on the next acquire)."""
        grant = last_grant()
        if grant is None:
            return
        if grant.owner is self:
            self._credit_us += grant.credit
        elif grant.owner is self.fallback and isinstance(self.fallback, ThrottleFeedback):
            self.fallback.on_success()

    def _observe(self, rate: float, target: float) -> None:
        self._seen = (rate, target)
        if not 1 / LOG_RISE_FACTOR < rate / self._logged < LOG_RISE_FACTOR:
            logger.info(
                "shared adaptive rate on key %r is now %.4g requests per %gs",
                self.key,
                rate,
                self.period,
                extra={"key": self.key, "rate": rate, "period": self.period},
            )
            self._logged = rate

    async def aclose(self) -> None:
        """Close the Redis connections, if this limiter opened them (from a URL)."""
        if self._url is None:
            return
        binding = self._binding
        if binding is not None and binding.loop.is_closed():
            # Its loop closed those connections as it shut down (see _bound).
            self._binding = None
            self._client = self._connect()
            return
        await self._client.aclose()
        if binding is not None and binding.closer is not None:
            await binding.closer.aclose()

    async def __aenter__(self) -> RedisRateLimiter:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _connect(self) -> AsyncRedis:
        assert self._url is not None
        try:
            return connect(self._url, timeout=self.timeout)
        except ValueError as exc:
            raise ConfigurationError(
                f"invalid Redis URL {self._server!r}: {hide_secrets(str(exc), self._secrets)}"
            ) from None

    async def _bound(self) -> _LoopBinding:
        """This loop's binding; the first time in a loop, arrange for the loop to close it."""
        binding = self._bind()
        if binding.closer is None and self._url is not None:
            binding.closer = _close_with_the_loop(self._client)
            await binding.closer.asend(None)
        return binding

    def _bind(self) -> _LoopBinding:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise ConfigurationError(
                "RedisRateLimiter needs asyncio (redis.asyncio is asyncio-only), but "
                f"acquire() was awaited on {_running_library()}; run the app on asyncio, "
                "or use convoso_async._pacing.ratelimit.Limiter for a per-process limit"
            ) from None
        binding = self._binding
        if binding is None or binding.loop is not loop:
            if binding is not None and self._url is not None:
                # The old loop's connections can't serve this one (a second
                # asyncio.run(), a test per loop): open fresh ones. The old
                # loop is usually closed, and its connections with it.
                self._client = self._connect()
            binding = self._binding = _LoopBinding(
                loop,
                asyncio.Lock(),
                _register(self._client, ACQUIRE_SCRIPT),
                _register(self._client, THROTTLE_SCRIPT),
            )
        return binding

    def _where(self) -> str:
        return f"Redis at {self._server} (rate limiter key {self.key!r})"

    def _fields(self) -> dict[str, object]:
        """A log record's fields saying which limiter: its Redis (no password) and key."""
        return {"server": self._server, "key": self.key}

    async def _explain(self, exc: BaseException, deadline: float) -> Failure:
        """What ``exc`` means; a look at the server may use what is left of the timeout."""
        return await diagnose(
            exc,
            self._client,
            timeout=self.timeout,
            acl=self.acl_rules,
            budget=deadline - time.monotonic(),
            scrub=self._secrets,
        )

    def _record_failure(self, failure: Failure) -> RateLimiterUnavailableError:
        advice = f"; {failure.advice}" if failure.advice else ""
        self._failures += 1
        if self.fallback is None:
            if failure.outage and advice:
                advice += ", or give the limiter a fallback= limiter to keep going while it is not"
            elif failure.outage:
                advice = "; give the limiter a fallback= limiter to keep going while Redis fails"
            self._last_error = f"{self._where()} {failure.what}{advice}"
            return self._error(self._last_error)
        if not self._down:
            logger.warning(
                "%s %s; pacing this process with %r until Redis answers again "
                "(retried every %gs)%s",
                self._where(),
                failure.what,
                self.fallback,
                self.retry_interval,
                advice,
                extra={**self._fields(), "error": failure.what, "fallback": repr(self.fallback)},
            )
        else:
            logger.debug(
                "%s still fails: %s",
                self._where(),
                failure.what,
                extra={**self._fields(), "error": failure.what},
            )
        self._down = True
        self._retry_at = time.monotonic() + self.retry_interval
        self._last_error = f"{self._where()} {failure.what}{advice}"
        return self._error(self._last_error)

    def _record_success(self) -> None:
        self._unshared_logged = False
        if self._down:
            self._down = False
            logger.info(
                "%s answers again; back to the shared rate", self._where(), extra=self._fields()
            )

    def _log_unshared(self, retry_after: float | None, why: str) -> None:
        """A 429 paused only this process: say so once per outage, at WARNING."""
        pause = "" if retry_after is None else f" (Retry-After {retry_after:g}s)"
        fields = {**self._fields(), "retry_after": retry_after, "error": why}
        if self._unshared_logged:
            logger.debug("%s: a 429%s was not shared: %s", self._where(), pause, why, extra=fields)
            return
        self._unshared_logged = True
        logger.warning(
            "%s: a 429%s could not be shared (%s); until Redis answers again, a 429 pauses "
            "only the process that met it, not the others on the key",
            self._where(),
            pause,
            why,
            extra=fields,
        )

    def _error(self, message: str) -> RateLimiterUnavailableError:
        # A fresh instance per raise: one shared instance would pile up tracebacks.
        return RateLimiterUnavailableError(message, key=self.key, server=self._server)


def _register(client: AsyncRedis, script: str) -> AsyncScript:
    """``client.register_script(script)``, for either client.

    redis-py 6 declares the method for ``redis.asyncio.Redis`` only (RedisCluster has it too):
    seen as a ``Redis``, it type-checks on every version.
    """
    return cast(aioredis.Redis, client).register_script(script)


def _running_library() -> str:
    try:
        import sniffio

        return sniffio.current_async_library()
    except Exception:  # sniffio is optional, and finds nothing outside any loop
        return "a non-asyncio event loop (or none)"
