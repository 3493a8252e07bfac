"""One rate limit shared by every process that reaches the same Redis.

The in-process `~convoso_async.ratelimit.Limiter` paces one process. A web
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

Redis is reached through ``redis.asyncio``, which runs on asyncio only.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from types import TracebackType
from urllib.parse import unquote, urlsplit, urlunsplit

import anyio

try:
    import redis.asyncio as aioredis
    from redis import Redis as _SyncRedis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.commands.core import AsyncScript
    from redis.exceptions import RedisError
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "RedisRateLimiter needs the redis package: pip install 'convoso-async[redis]'"
    ) from exc

from convoso_async.errors import ConfigurationError, ConvosoError
from convoso_async.ratelimit import RateLimiter

__all__ = [
    "DEFAULT_KEY",
    "DEFAULT_RETRY_INTERVAL",
    "DEFAULT_SLACK",
    "DEFAULT_TIMEOUT",
    "RateLimiterUnavailableError",
    "RedisRateLimiter",
]

#: The Redis key that holds the shared state, unless one is given.
DEFAULT_KEY = "convoso:ratelimit"
#: Seconds one ``acquire()`` may wait for Redis to answer.
DEFAULT_TIMEOUT = 2.0
#: Seconds between attempts to reach Redis again while the fallback paces.
DEFAULT_RETRY_INTERVAL = 5.0
#: How much longer than ``period`` the shared window is. A request leaves a
#: little after its slot (reply latency, event-loop and OS scheduling); the
#: slack keeps a late one from crowding into the next window. Measured on a
#: busy 2-core machine, 4 processes: lateness median 1 ms, worst 14 ms in 3 s,
#: so the in-process limiter's 1% (10 ms at 1 s) was exceeded in about one
#: run in three; 3% (30 ms) costs 3% of the rate.
DEFAULT_SLACK = 0.03

logger = logging.getLogger("convoso_async")

# KEYS[1]: the key. ARGV[1]: emission interval in µs. ARGV[2]: tolerance in
# µs, (burst - 1) intervals. Returns the µs to wait for the reserved slot.
# Times are Redis server µs: Lua numbers are doubles, exact up to 2**53 µs
# (year 2255). string.format keeps integers out of Lua's 14-digit %g form.
_GCRA_SCRIPT = """
if redis.replicate_commands then redis.replicate_commands() end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local wait = tat - tolerance - now
if wait < 0 then wait = 0 end
local next_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', next_tat),
           'PX', string.format('%.0f', math.ceil((next_tat - now) / 1000)))
return wait
"""


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


@dataclass
class _LoopBinding:
    """What one event loop uses: asyncio locks and connections can't cross loops."""

    loop: asyncio.AbstractEventLoop
    lock: asyncio.Lock
    script: AsyncScript


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
        redis: a ``redis://`` / ``rediss://`` / ``unix://`` URL (the limiter
            then owns the connection; close it with `aclose`), or a
            ``redis.asyncio.Redis`` client that the caller keeps and closes.
        key: the Redis key of the shared state; processes using one key share
            one budget, so use the same ``rate`` and ``period`` in all of them.
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
            longer than that (CPU-bound work on it) can defeat it.

    ``acquire()`` must run on asyncio (``redis.asyncio`` is asyncio-only); on
    trio it raises `~convoso_async.errors.ConfigurationError`.
    """

    def __init__(
        self,
        redis: aioredis.Redis | str,
        *,
        key: str = DEFAULT_KEY,
        rate: float,
        period: float = 1.0,
        burst: int = 1,
        timeout: float = DEFAULT_TIMEOUT,
        fallback: RateLimiter | None = None,
        retry_interval: float = DEFAULT_RETRY_INTERVAL,
        slack: float = DEFAULT_SLACK,
    ) -> None:
        _check_positive("rate", rate, "a number of requests")
        _check_positive("period", period, "a number of seconds")
        _check_positive("timeout", timeout, "a number of seconds")
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
            raise ValueError(f"burst must be a whole number of requests >= 1, not {burst!r}")
        if not isinstance(key, str) or not key:
            raise ValueError(f"key must be a non-empty string, not {key!r}")
        if fallback is not None and not isinstance(fallback, RateLimiter):
            raise TypeError(
                "fallback must be a rate limiter with an async acquire() method, "
                f"not {type(fallback).__name__}"
            )
        if not math.isfinite(retry_interval) or retry_interval < 0:
            raise ValueError(
                f"retry_interval must be a finite number of seconds >= 0, not {retry_interval!r}"
            )
        if isinstance(slack, bool) or not isinstance(slack, (int, float)) or not 0 <= slack < 1:
            raise ValueError(f"slack must be a fraction of the period in [0, 1), not {slack!r}")
        self.key = key
        self.rate = float(rate)
        self.period = float(period)
        self.burst = burst
        self.timeout = float(timeout)
        self.fallback = fallback
        self.retry_interval = float(retry_interval)
        self.slack = float(slack)

        interval_us = max(1, math.ceil(self.period * (1 + self.slack) / self.rate * 1e6))
        self._script_args = (interval_us, (burst - 1) * interval_us)

        self._url: str | None
        if isinstance(redis, str):
            self._url = redis
            self._server = _redact_url(redis)
            self._secrets = _url_secrets(redis)
            self._client = self._connect()
        elif isinstance(redis, aioredis.Redis):
            self._url = None
            self._server = _describe_client(redis)
            password = redis.connection_pool.connection_kwargs.get("password")
            self._secrets = (password,) if isinstance(password, str) and password else ()
            self._client = redis
        else:
            hint = " (the synchronous client)" if isinstance(redis, _SyncRedis) else ""
            raise TypeError(
                "redis must be a Redis URL or a redis.asyncio.Redis client, "
                f"not {type(redis).__module__}.{type(redis).__name__}{hint}"
            )
        self._binding: _LoopBinding | None = None
        # Outage bookkeeping, shared by every task of the process.
        self._failures = 0
        self._last_error = ""
        self._down = False
        self._retry_at = -math.inf

    def __repr__(self) -> str:
        text = (
            f"RedisRateLimiter({self._server!r}, key={self.key!r}, rate={self.rate:g}, "
            f"period={self.period:g}, burst={self.burst}"
        )
        if self.fallback is not None:
            text += f", fallback={self.fallback!r}"
        return text + ")"

    async def acquire(self) -> None:
        """Wait for this process's next slot within the shared rate, then claim it.

        Raises:
            RateLimiterUnavailableError: Redis did not answer within ``timeout``
                (or failed) and no ``fallback`` was given.
            ConfigurationError: awaited outside asyncio (e.g. on trio).
        """
        binding = self._bind()
        failures_seen = self._failures
        async with binding.lock:
            if self._down and self.fallback is not None and time.monotonic() < self._retry_at:
                pass  # Redis was unreachable moments ago: don't stall every call on it.
            elif self.fallback is None and self._failures != failures_seen:
                # Redis failed while this call queued behind another: fail now
                # rather than make each queued caller wait out its own timeout.
                raise self._error(self._last_error)
            else:
                try:
                    with anyio.fail_after(self.timeout):
                        wait_us = await binding.script(keys=[self.key], args=self._script_args)
                except (RedisError, OSError) as exc:
                    error = self._record_failure(exc)
                    if self.fallback is None:
                        raise error from exc
                else:
                    self._record_success()
                    if wait_us > 0:
                        # The slot is reserved at Redis; sleeping with the lock
                        # held keeps this process at one reservation at a time.
                        await anyio.sleep(int(wait_us) / 1e6)
                    return
        assert self.fallback is not None  # every other path returned or raised
        await self.fallback.acquire()

    async def aclose(self) -> None:
        """Close the Redis connections, if this limiter opened them (from a URL)."""
        if self._url is None:
            return
        binding = self._binding
        if binding is not None and binding.loop.is_closed():
            # Those connections went with their event loop; none is left to close.
            self._binding = None
            self._client = self._connect()
            return
        await self._client.aclose()

    async def __aenter__(self) -> RedisRateLimiter:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _connect(self) -> aioredis.Redis:
        assert self._url is not None
        try:
            # One immediate retry replaces a pooled connection that a Redis
            # restart broke; redis-py's default backoff would outlast `timeout`.
            return aioredis.Redis.from_url(
                self._url,
                socket_timeout=self.timeout,
                socket_connect_timeout=self.timeout,
                retry=Retry(NoBackoff(), 1),
            )
        except ValueError as exc:
            raise ConfigurationError(
                f"invalid Redis URL {self._server!r}: {self._scrub(str(exc))}"
            ) from None

    def _bind(self) -> _LoopBinding:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise ConfigurationError(
                "RedisRateLimiter needs asyncio (redis.asyncio is asyncio-only), but "
                f"acquire() was awaited on {_running_library()}; run the app on asyncio, "
                "or use convoso_async.ratelimit.Limiter for a per-process limit"
            ) from None
        binding = self._binding
        if binding is None or binding.loop is not loop:
            if binding is not None and self._url is not None:
                # The old loop's connections can't serve this one (a second
                # asyncio.run(), a test per loop): open fresh ones. The old
                # loop is usually closed, and its connections with it.
                self._client = self._connect()
            script = self._client.register_script(_GCRA_SCRIPT)
            binding = self._binding = _LoopBinding(loop, asyncio.Lock(), script)
        return binding

    def _record_failure(self, exc: BaseException) -> RateLimiterUnavailableError:
        if isinstance(exc, TimeoutError) and not isinstance(exc, RedisError):
            what = f"did not answer within {self.timeout:g}s"
        else:
            detail = self._scrub(str(exc)).rstrip(". ")
            what = f"failed ({type(exc).__name__}: {detail})"
        self._failures += 1
        where = f"Redis at {self._server} (rate limiter key {self.key!r})"
        if self.fallback is None:
            self._last_error = (
                f"{where} {what}; check that Redis is up and reachable, or give the "
                "limiter a fallback= limiter to keep going while it is not"
            )
            return self._error(self._last_error)
        if not self._down:
            logger.warning(
                "%s %s; pacing this process with %r until Redis answers again (retried every %gs)",
                where,
                what,
                self.fallback,
                self.retry_interval,
            )
        else:
            logger.debug("%s still unreachable: %s", where, what)
        self._down = True
        self._retry_at = time.monotonic() + self.retry_interval
        self._last_error = f"{where} {what}"
        return self._error(self._last_error)

    def _record_success(self) -> None:
        if self._down:
            self._down = False
            logger.info(
                "Redis at %s (rate limiter key %r) answers again; back to the shared rate",
                self._server,
                self.key,
            )

    def _error(self, message: str) -> RateLimiterUnavailableError:
        # A fresh instance per raise: one shared instance would pile up tracebacks.
        return RateLimiterUnavailableError(message, key=self.key, server=self._server)

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


def _redact_url(url: str) -> str:
    """Return ``url`` with its password (in the user part or the query) replaced by ``***``.

    >>> _redact_url("redis://app:s3cret@cache:6379/0")
    'redis://app:***@cache:6379/0'
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable Redis URL>"
    netloc = parts.netloc
    if "@" not in netloc and "password" not in parts.query.lower():
        return url
    if "@" in netloc:
        userinfo, _, hostinfo = netloc.rpartition("@")
        user, has_password, _ = userinfo.partition(":")
        # Without a colon the whole user part may be a password in the writer's mind.
        netloc = f"{user}:***@{hostinfo}" if has_password else f"***@{hostinfo}"
    pieces = []
    for piece in parts.query.split("&"):
        name = piece.partition("=")[0]
        pieces.append(f"{name}=***" if unquote(name).lower() == "password" else piece)
    return urlunsplit((parts.scheme, netloc, parts.path, "&".join(pieces), ""))


def _url_secrets(url: str) -> tuple[str, ...]:
    """The password forms that could show up in a driver's message about ``url``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return ()
    found: list[str] = []
    userinfo = parts.netloc.rpartition("@")[0]
    if userinfo:
        found.append(userinfo.partition(":")[2] or userinfo)
    for piece in parts.query.split("&"):
        name, _, value = piece.partition("=")
        if unquote(name).lower() == "password":
            found.append(value)
    secrets = {form for raw in found if raw for form in (raw, unquote(raw))}
    return tuple(sorted(secrets, key=len, reverse=True))


def _describe_client(client: aioredis.Redis) -> str:
    """Where a caller's client points, as a URL without its password."""
    kwargs = client.connection_pool.connection_kwargs
    db = kwargs.get("db", 0)
    user = kwargs.get("username")
    userinfo = f"{user or ''}:***@" if kwargs.get("password") else (f"{user}@" if user else "")
    if "path" in kwargs:
        return f"unix://{userinfo}{kwargs['path']}?db={db}"
    return f"redis://{userinfo}{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{db}"


def _running_library() -> str:
    try:
        import sniffio

        return sniffio.current_async_library()
    except Exception:  # sniffio is optional, and finds nothing outside any loop
        return "a non-asyncio event loop (or none)"


def _check_positive(name: str, value: float, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be {what}, not {type(value).__name__}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, not {value!r}")
