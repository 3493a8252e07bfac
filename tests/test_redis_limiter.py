"""The Redis-backed limiter against a real redis-server on loopback."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import math
import os
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis
import redis.asyncio as aioredis
import trio
from limiters import CountingFallback
from redis.asyncio.cluster import RedisCluster
from redis_deployments import sentinel
from redis_server import RedisServer, redis_server_fixture, start_redis  # noqa: F401

from convoso_async._errors import ConfigurationError, ConvosoError
from convoso_async._pacing.ratelimit import Limiter, RateLimiter
from convoso_async.redis_limiter import (
    DEFAULT_SLACK,
    RateLimiterUnavailableError,
    RedisRateLimiter,
)

pytestmark = pytest.mark.redis

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "pw-S3CRET-9d8c7b"


def interval(rate: float, period: float = 1.0) -> float:
    """The spacing the limiter promises between two grants, in seconds."""
    return period * (1 + DEFAULT_SLACK) / rate


def interval_us(rate: float) -> int:
    """`interval` in the microseconds the limiter keeps at Redis."""
    return math.ceil(interval(rate) * 1e6)


async def key_exists(server: RedisServer, key: str) -> bool:
    async with aioredis.Redis.from_url(server.url) as client:
        return bool(await client.exists(key))


# --- pacing ---------------------------------------------------------------


@pytest.mark.timing
@pytest.mark.asyncio
async def test_grants_are_spaced_by_the_rate(redis_server: RedisServer) -> None:
    async with RedisRateLimiter(redis_server.url, rate=20) as limiter:
        assert isinstance(limiter, RateLimiter)
        start = time.monotonic()
        with anyio.fail_after(10):
            for _ in range(6):
                await limiter.acquire()
        elapsed = time.monotonic() - start
    # Five intervals between six grants: the sixth slot is 5 intervals after
    # the first, which came no earlier than `start`.
    assert elapsed >= 5 * interval(20) * 0.999
    assert elapsed < 5 * interval(20) + 3.0


@pytest.mark.timing
@pytest.mark.asyncio
async def test_burst_goes_at_once_then_requests_are_spaced(redis_server: RedisServer) -> None:
    async with RedisRateLimiter(redis_server.url, rate=2, burst=3) as limiter:
        start = time.monotonic()
        with anyio.fail_after(10):
            for _ in range(3):
                await limiter.acquire()
            burst_done = time.monotonic()
            await limiter.acquire()
        fourth_done = time.monotonic()
    # Without a burst, the third grant would come two intervals after the first; what is left
    # of those 1.03 s is room for a loaded machine's three round trips to Redis.
    assert burst_done - start < 2 * interval(2)
    assert fourth_done - start >= interval(2) * 0.999


@pytest.mark.asyncio
async def test_state_is_one_short_lived_key(redis_server: RedisServer) -> None:
    async with (
        aioredis.Redis.from_url(redis_server.url) as client,
        RedisRateLimiter(client, key="app:limit", rate=1, burst=3) as limiter,
    ):
        # A burst reserves three slots at once: the key then lives three intervals (3 s), room
        # enough for the checks below on a loaded machine.
        for _ in range(3):
            await limiter.acquire()
        assert await client.keys("*") == [b"app:limit"]
        assert await client.type("app:limit") == b"string"
        # The key lives only until the last reserved slot has passed.
        ttl_ms = await client.pttl("app:limit")
        assert 0 < ttl_ms <= 3 * interval(1) * 1000 + 1


@pytest.mark.asyncio
@pytest.mark.parametrize("skew", [-3600.0, 3600.0])
async def test_slots_are_timed_by_the_redis_clock(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch, skew: float
) -> None:
    async with (
        aioredis.Redis.from_url(redis_server.url) as client,
        RedisRateLimiter(client, key="k", rate=1) as limiter,
    ):
        start = time.monotonic()  # before the Redis clock is read, so the wait is >= 0.3 s
        seconds, micros = await client.time()
        next_slot_us = seconds * 1_000_000 + micros + 300_000
        await client.set("k", str(next_slot_us), px=10_000)
        # A limiter that trusted this process's wall clock would wait an hour
        # (clock behind) or go at once (clock ahead).
        real_time = time.time
        monkeypatch.setattr(time, "time", lambda: real_time() + skew)
        with anyio.fail_after(5):
            await limiter.acquire()
        assert time.monotonic() - start >= 0.25


@pytest.mark.asyncio
async def test_script_is_reloaded_after_script_flush(redis_server: RedisServer) -> None:
    async with (
        aioredis.Redis.from_url(redis_server.url) as client,
        RedisRateLimiter(client, rate=1, burst=2) as limiter,
    ):
        await limiter.acquire()
        await client.script_flush()
        with anyio.fail_after(5):
            await limiter.acquire()  # at once (the burst), through the script loaded again
        # Two slots of a second reserved: the key lives two seconds, not the millisecond it
        # would at 1000/s, which a loaded machine could let pass before this check.
        assert await client.exists("convoso:ratelimit")


@pytest.mark.asyncio
async def test_cancelled_waiters_lose_at_most_one_slot(redis_server: RedisServer) -> None:
    # Read at Redis, not on a clock: the key holds the time of the next free slot, and moves one
    # interval on per reserved slot. One slot every 2 s: the waiters are cancelled long before
    # the first of them could be granted, however slowly this machine runs.
    async with (
        aioredis.Redis.from_url(redis_server.url) as client,
        RedisRateLimiter(client, key="k", rate=0.5) as limiter,
    ):

        async def next_slot() -> int:
            return int(await client.get("k") or 0)

        await limiter.acquire()
        before = await next_slot()
        granted = 0

        async def wait_for_a_slot() -> None:
            nonlocal granted
            await limiter.acquire()
            granted += 1

        # Four tasks wait; once one of them has reserved a slot at Redis (the others queue in
        # this process), all are cancelled.
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tasks:
                for _ in range(4):
                    tasks.start_soon(wait_for_a_slot)
                # The reservation happens at Redis, so polling Redis is the only way to see it.
                while await next_slot() == before:  # noqa: ASYNC110
                    await anyio.sleep(0.005)
                tasks.cancel_scope.cancel()
        assert granted == 0
        assert await next_slot() == before + interval_us(0.5)  # 1 slot lost, not 4

        # Nothing was left held: with the lost slot forgotten, the next call goes at once.
        await client.delete("k")
        with anyio.fail_after(10):
            await limiter.acquire()
        assert await next_slot() > before


# --- several processes ----------------------------------------------------

WORKER = """
import asyncio, json, sys, time
import redis.asyncio as aioredis
from convoso_async.redis_limiter import RedisRateLimiter

url, key, rate, duration, tasks = sys.argv[1:6]

async def main():
    async with aioredis.Redis.from_url(url) as client:
        limiter = RedisRateLimiter(client, key=key, rate=float(rate))
        await client.ping()  # connect before the start signal
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        stamps = []
        asked = time.time()  # before this process's first request for a slot
        end = time.monotonic() + float(duration)

        async def run():
            while time.monotonic() < end:
                await limiter.acquire()
                stamps.append(time.time())

        await asyncio.gather(*(run() for _ in range(int(tasks))))
        print(json.dumps({"asked": asked, "stamps": stamps}), flush=True)

asyncio.run(main())
"""


@pytest.mark.timing
def test_four_processes_share_one_rate(redis_server: RedisServer) -> None:
    rate, duration = 50, 2.0
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), *sys.path])}
    args = [redis_server.url, "shared", str(rate), str(duration), "2"]
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )
        for _ in range(4)
    ]
    try:
        for worker in workers:
            assert worker.stdout is not None
            assert worker.stdout.readline().strip() == "ready"
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        results = [worker.communicate(timeout=30)[0] for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    per_worker = [json.loads(output) for output in results]
    stamps = sorted(stamp for worker in per_worker for stamp in worker["stamps"])
    first_ask = min(worker["asked"] for worker in per_worker)

    assert all(worker["stamps"] for worker in per_worker), "every process got grants"
    # Slots are one interval apart at Redis and each grant comes at its slot or later (a loaded
    # machine only makes it later), so the k-th grant of all four processes together comes no
    # sooner than k intervals after the first request. Four limiters of their own would each
    # grant the full rate. (Real time on both sides: Redis's TIME and time.time() share a clock.)
    early = [k for k, stamp in enumerate(stamps) if stamp - first_ask < k * interval(rate) - 1e-3]
    assert early == [], f"{len(early)} grants came before their slot"
    assert len(stamps) >= rate * duration / 4, "the processes all but stopped"


# --- Redis slow or gone ---------------------------------------------------


@pytest.mark.asyncio
async def test_stopped_redis_raises_unavailable_promptly(redis_server: RedisServer) -> None:
    async with RedisRateLimiter(redis_server.url, key="k", rate=100, timeout=1.0) as limiter:
        await limiter.acquire()
        redis_server.stop()
        start = time.monotonic()
        with pytest.raises(RateLimiterUnavailableError) as caught:
            await limiter.acquire()
        assert time.monotonic() - start < 1.0 + 2.0
    error = caught.value
    assert isinstance(error, ConvosoError)
    assert error.key == "k"
    assert f"127.0.0.1:{redis_server.port}" in str(error)
    assert "'k'" in str(error)


@pytest.mark.timing
@pytest.mark.asyncio
async def test_frozen_redis_fails_every_waiting_caller_within_one_timeout(
    redis_server: RedisServer,
) -> None:
    timeout = 0.5
    async with RedisRateLimiter(redis_server.url, rate=1000, timeout=timeout) as limiter:
        await limiter.acquire()
        redis_server.pause()
        try:
            errors: list[BaseException] = []

            async def call() -> None:
                try:
                    await limiter.acquire()
                except RateLimiterUnavailableError as exc:
                    errors.append(exc)

            start = time.monotonic()
            with anyio.fail_after(20 * timeout + 5):
                async with anyio.create_task_group() as tasks:
                    for _ in range(10):
                        tasks.start_soon(call)
            elapsed = time.monotonic() - start
        finally:
            redis_server.resume()
    assert len(errors) == 10
    assert "did not answer within 0.5s" in str(errors[0])
    # Callers queued behind the first share its failure instead of each
    # waiting out a timeout of their own (which would take 10 timeouts);
    # half of that leaves room for a loaded machine.
    assert elapsed < 5 * timeout


@pytest.mark.asyncio
async def test_fallback_paces_during_an_outage_and_warns_once_per_outage(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="convoso_async")
    fallback = CountingFallback()
    # rate=1: each Redis grant leaves the key for a second, long enough to see.
    limiter = RedisRateLimiter(
        redis_server.url, key="k", rate=1, fallback=fallback, retry_interval=0.05
    )

    def warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]

    async with limiter:
        await limiter.acquire()
        assert fallback.calls == 0

        redis_server.stop()
        with anyio.fail_after(10):
            for _ in range(20):  # spans several retry intervals, so Redis is retried
                await limiter.acquire()
                await anyio.sleep(0.01)
        assert fallback.calls == 20
        assert len(warnings()) == 1
        assert "CountingFallback()" in warnings()[0]

        redis_server.start()  # empty: the key appears only if Redis is used again
        await anyio.sleep(0.1)
        with anyio.fail_after(10):
            await limiter.acquire()
        assert fallback.calls == 20
        assert await key_exists(redis_server, "k")
        assert any("answers again" in r.getMessage() for r in caplog.records)

        redis_server.stop()
        with anyio.fail_after(10):
            await limiter.acquire()
        assert fallback.calls == 21
        assert len(warnings()) == 2


@pytest.mark.asyncio
async def test_fallback_does_not_wait_on_frozen_redis_every_call(
    redis_server: RedisServer,
) -> None:
    timeout = 0.3
    fallback = CountingFallback()
    async with RedisRateLimiter(
        redis_server.url, rate=1000, timeout=timeout, fallback=fallback, retry_interval=60
    ) as limiter:
        await limiter.acquire()
        redis_server.pause()
        try:
            start = time.monotonic()
            with anyio.fail_after(60 * timeout):
                for _ in range(20):
                    await limiter.acquire()
            elapsed = time.monotonic() - start
        finally:
            redis_server.resume()
    assert fallback.calls == 20
    # One probe waits out its timeout; asking Redis each call would take 20
    # (half of that leaves room for a loaded machine).
    assert elapsed < 10 * timeout


# --- secrets, misuse, lifecycle -------------------------------------------


@pytest.mark.asyncio
async def test_password_never_shows_in_repr_or_errors() -> None:
    server = start_redis(password=PASSWORD)
    try:
        limiter = RedisRateLimiter(server.url, key="k", rate=100, timeout=1.0)
        assert PASSWORD not in repr(limiter)
        assert ":***@127.0.0.1" in repr(limiter)
        async with limiter:
            await limiter.acquire()  # the password really is used
            server.stop()
            with pytest.raises(RateLimiterUnavailableError) as caught:
                await limiter.acquire()
    finally:
        server.close()
    assert PASSWORD not in str(caught.value)
    assert PASSWORD not in caught.value.server
    assert PASSWORD not in repr(caught.value)


@pytest.mark.asyncio
async def test_wrong_password_is_reported_without_it() -> None:
    server = start_redis(password=PASSWORD)
    wrong = "wrong-PW-1234"
    try:
        url = f"redis://:{wrong}@127.0.0.1:{server.port}/0"
        async with RedisRateLimiter(url, rate=100, timeout=1.0) as limiter:
            with pytest.raises(RateLimiterUnavailableError) as caught:
                await limiter.acquire()
    finally:
        server.close()
    assert "AuthenticationError" in str(caught.value)
    assert wrong not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@cache:6379/0", "redis://:***@cache:6379/0"),
        ("redis://app:s3cret@cache:6379/2", "redis://app:***@cache:6379/2"),
        ("rediss://s3cret@cache", "rediss://***@cache"),
        ("redis://cache:6379/0?password=s3cret&db=1", "redis://cache:6379/0?password=***&db=1"),
        ("unix:///run/redis.sock?db=0", "unix:///run/redis.sock?db=0"),
        ("redis+cluster://:s3cret@n1:7000,n2:7001", "redis+cluster://:***@n1:7000,n2:7001"),
        ("rediss+cluster://app:s3cret@n1:7000", "rediss+cluster://app:***@n1:7000"),
    ],
)
def test_repr_hides_the_password(url: str, shown: str) -> None:
    limiter = RedisRateLimiter(url, rate=10)
    assert "s3cret" not in repr(limiter)
    assert repr(limiter).startswith(f"RedisRateLimiter({shown!r}, key='convoso:ratelimit'")


@pytest.mark.parametrize(
    ("make", "shown"),
    [
        (
            lambda: aioredis.Redis(host="cache", port=6380, db=3, password="s3cret"),
            "redis://:***@cache:6380/3",
        ),
        (
            lambda: aioredis.Redis(host="cache", port=6380, password="s3cret", ssl=True),
            "rediss://:***@cache:6380/0",
        ),
        (
            lambda: sentinel(
                [("s1", 26379), ("s2", 26380)], sentinel_kwargs={"password": "s3cret-sentinel"}
            ).master_for("mymaster", username="app", password="s3cret"),
            "redis+sentinel://app:***@s1:26379,s2:26380/mymaster",
        ),
        (
            lambda: RedisCluster(host="n1", port=7000, password="s3cret"),
            "redis+cluster://:***@n1:7000",
        ),
        (
            lambda: RedisCluster(host="n1", port=7000, username="app", password="s3cret", ssl=True),
            "rediss+cluster://app:***@n1:7000",
        ),
    ],
)
def test_repr_of_a_callers_client_names_where_it_points_without_its_password(
    make: Callable[[], aioredis.Redis | RedisCluster], shown: str
) -> None:
    limiter = RedisRateLimiter(make(), rate=10)
    assert "s3cret" not in repr(limiter)
    assert repr(limiter).startswith(f"RedisRateLimiter({shown!r}, key=")


def test_trio_gets_a_clear_error() -> None:
    limiter = RedisRateLimiter("redis://127.0.0.1:1/0", rate=10)
    with pytest.raises(ConfigurationError, match=r"needs asyncio.*trio"):
        trio.run(limiter.acquire)


def test_one_limiter_serves_successive_event_loops(redis_server: RedisServer) -> None:
    # A script's second asyncio.run(), or a test per event loop: a closed loop's connections
    # can't serve the next loop, so each loop opens its own, and every loop's grant is the next
    # slot of the one key. One request a minute with a burst of ten: the grants go at once and
    # each moves the key's TAT (the next free slot) on by exactly one interval.
    name = "successive-loops"
    limiter = RedisRateLimiter(
        f"{redis_server.url}?client_name={name}", key="k", rate=1, period=60, burst=10
    )
    step = math.ceil(interval(1, period=60) * 1e6)
    admin = redis.Redis.from_url(redis_server.url)

    # Before redis-py 8 a command's result is typed "Awaitable[T] | T": as Any, it type-checks
    # on every version.
    def connections_received() -> int:
        stats: Any = admin.info("stats")
        return int(stats["total_connections_received"])

    def limiter_connections() -> list[int]:
        clients: Any = admin.client_list()
        return [int(client["id"]) for client in clients if client["name"] == name]

    async def acquire_and_close() -> None:
        await limiter.acquire()
        await limiter.aclose()

    def still_open() -> list[int]:
        deadline = time.monotonic() + 10  # the server learns of a close a moment later
        while limiter_connections() and time.monotonic() < deadline:
            time.sleep(0.01)
        return limiter_connections()

    slots: list[int] = []
    opened: list[int] = []
    left_open: list[list[int]] = []
    # What earlier tests left for the collector is not this test's to answer for: garbage, and
    # the loop an older pytest-asyncio leaves set (unclosed) after its tests, which the first
    # asyncio.run() below would drop (it sets the loop to None as it ends).
    asyncio.set_event_loop(None)
    gc.collect()
    try:
        with warnings.catch_warnings():
            # An unclosed connection of a finished loop would warn when collected: none may.
            warnings.simplefilter("error", ResourceWarning)
            for run in (limiter.acquire, acquire_and_close, limiter.acquire, limiter.aclose):
                before = connections_received()
                asyncio.run(run())
                opened.append(connections_received() - before)
                slot: Any = admin.get("k")
                slots.append(int(slot or 0))
                # Each loop closed the limiter's connections as it shut down, without aclose()
                # and without the garbage collector.
                left_open.append(still_open())
            gc.collect()

        assert opened == [1, 1, 1, 0]  # a fresh connection per loop; closing opens none
        first = slots[0]
        assert [slot - first for slot in slots] == [0, step, 2 * step, 2 * step]
        assert left_open == [[], [], [], []]
    finally:
        admin.close()


@pytest.mark.asyncio
async def test_aclose_leaves_a_callers_client_open(redis_server: RedisServer) -> None:
    async with aioredis.Redis.from_url(redis_server.url) as client:
        limiter = RedisRateLimiter(client, rate=1000)
        await limiter.acquire()
        await limiter.aclose()
        pong: Any = client.ping()  # "Awaitable[bool] | bool" before redis-py 8
        assert await pong


def test_sync_client_is_rejected_with_a_hint() -> None:
    with pytest.raises(ConfigurationError, match="synchronous"):
        RedisRateLimiter(redis.Redis(), rate=10)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda: RedisRateLimiter("redis://h", rate=0), ConfigurationError),
        (lambda: RedisRateLimiter("redis://h", rate=True), ConfigurationError),
        (lambda: RedisRateLimiter("redis://h", rate=10, period=float("inf")), ConfigurationError),
        (lambda: RedisRateLimiter("redis://h", rate=10, burst=0), ConfigurationError),
        (lambda: RedisRateLimiter("redis://h", rate=10, burst=1.5), ConfigurationError),  # type: ignore[arg-type]
        (lambda: RedisRateLimiter("redis://h", rate=10, timeout=0), ConfigurationError),
        (lambda: RedisRateLimiter("redis://h", rate=10, key=""), ConfigurationError),
        (lambda: RedisRateLimiter("redis://h", rate=10, slack=1.0), ConfigurationError),
        (lambda: RedisRateLimiter("redis://h", rate=10, fallback=10), ConfigurationError),  # type: ignore[arg-type]
        (lambda: RedisRateLimiter("redis://h", rate=10**400), ConfigurationError),
        (
            lambda: RedisRateLimiter("redis://h", rate=10, retry_interval=10**400),
            ConfigurationError,
        ),
        (lambda: RedisRateLimiter("http://:s3cret@h", rate=10), ConfigurationError),
    ],
)
def test_bad_arguments_are_rejected(make: Callable[[], object], error: type[Exception]) -> None:
    with pytest.raises(error) as caught:
        make()
    assert "s3cret" not in str(caught.value)


def test_fallback_limiter_is_named_in_repr() -> None:
    limiter = RedisRateLimiter("redis://h", rate=10, fallback=Limiter(2.5))
    assert repr(limiter).endswith("burst=1, fallback=Limiter(rate=2.5, period=1))")
