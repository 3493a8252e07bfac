"""One 429 pause and one learned rate for every process on a Redis key, over a real redis-server.

Worker processes run bulk changes against a fake Convoso on loopback; every assertion is on the
fake's own log (who arrived when, who got a 429) or on the limiters' state, with generous bounds.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis
from redis_server import (  # noqa: F401
    RedisServer,
    Worker,
    finish_workers,
    redis_server_fixture,
    start_worker,
)

from convoso_async._pacing.ratelimit import adaptive_rate
from convoso_async.redis_limiter import RedisRateLimiter
from convoso_async.testing import FakeConvoso, Fault

pytestmark = pytest.mark.redis

WORKER = Path(__file__).with_name("redis_adaptive_worker.py")


def start_workers(specs: list[dict[str, Any]], tmp_path: Path) -> list[Worker]:
    return [
        start_worker(WORKER, tmp_path / f"worker{number}.json", json.dumps(spec))
        for number, spec in enumerate(specs)
    ]


def finish(workers: list[Worker]) -> list[dict[str, Any]]:
    return finish_workers(workers, timeout=180)


def specs_for(groups: list[list[str]], url: str, redis_url: str, **common: Any) -> list[Any]:
    key = f"convoso:test:{uuid.uuid4().hex}"
    return [{"url": url, "redis": redis_url, "key": key, "ids": ids, **common} for ids in groups]


def test_one_workers_429_pauses_every_worker_on_the_key(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    fake = FakeConvoso(campaigns=150)
    # Request 40 gets a 429 asking for 2 s; the three workers pace at 30/s together.
    fake.add_fault(Fault("rate_limit", on_requests={40}, retry_after=2))
    ids = list(fake.statuses())
    groups = [ids[n::3] for n in range(3)]
    with fake.serve_in_thread() as url:
        results = finish(start_workers(specs_for(groups, url, redis_server.url, rate=30), tmp_path))
    assert sorted(i for r in results for i in r["succeeded"]) == sorted(ids)
    log = fake.requests
    throttled = [r for r in log if r.status == 429]
    assert len(throttled) == 1
    met = throttled[0]
    # Who met the 429 does not matter: nobody sends in the middle of its Retry-After.
    # (Without the shared pause the other two workers would send ~20 in that second.)
    during = [r for r in log if met.time + 0.5 <= r.time < met.time + 1.5]
    assert len(during) <= 2, [(round(r.time - met.time, 3), r.campaign_id) for r in during]
    # And everyone resumes after it.
    after = {r.campaign_id for r in log if r.time >= met.time + 2}
    assert len(after & set(groups[0])) > 0
    assert len(after & set(groups[1])) > 0
    assert len(after & set(groups[2])) > 0


@pytest.mark.timing
def test_four_workers_learn_one_shared_rate_near_the_accounts_limit(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    limit = 40
    fake = FakeConvoso(campaigns=600, rate_limit=limit)
    ids = list(fake.statuses())
    groups = [ids[n::4] for n in range(4)]
    with fake.serve_in_thread() as url:
        specs = specs_for(groups, url, redis_server.url, rate=5 * limit, adaptive=True)
        results = finish(start_workers(specs, tmp_path))
    assert sorted(i for r in results for i in r["succeeded"]) == sorted(ids)
    statuses = [r.status for r in fake.requests]
    throttled = statuses.count(429)
    assert 1 <= throttled <= 0.05 * len(statuses)
    # Each worker paces on the account's limit, shared, not on a quarter of it.
    for result in results:
        assert 0.5 * limit <= result["rate"] <= 1.3 * limit, results


def test_redis_stopped_mid_run_the_adaptive_fallback_carries_every_campaign(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    limit = 40
    fake = FakeConvoso(campaigns=200, rate_limit=limit)
    ids = list(fake.statuses())
    groups = [ids[:100], ids[100:]]
    with fake.serve_in_thread() as url:
        specs = specs_for(groups, url, redis_server.url, rate=20, adaptive=True, fallback=limit / 2)
        workers = start_workers(specs, tmp_path)
        deadline = time.monotonic() + 60
        while len(fake.requests) < 40 and time.monotonic() < deadline:
            time.sleep(0.02)
        redis_server.stop()
        results = finish(workers)
    for group, result in zip(groups, results, strict=True):
        assert sorted(result["succeeded"]) == sorted(group)
        assert result["failed"] == {}
    assert set(fake.statuses().values()) == {"N"}
    # The workers kept pacing (each on its own fallback): the fake limited only a few.
    statuses = [r.status for r in fake.requests]
    assert statuses.count(429) <= 0.1 * len(statuses)


# --- the shared state, in one process -----------------------------------------------------------


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # redis.asyncio runs on asyncio only


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("low", "target", "grown"),
    [(10, 0, 0), (10, 0, 3.3), (28, 38, 0), (28, 38, 2.5), (28, 38, 17), (28, 38, 31), (5, 9, 60)],
)
async def test_the_lua_model_is_the_python_model(
    redis_server: RedisServer, low: float, target: float, grown: float
) -> None:
    key = f"convoso:test:{uuid.uuid4().hex}"
    async with aioredis.Redis.from_url(redis_server.url) as client:
        # Typed "Awaitable[int] | int" before redis-py 8: as Any, awaited on every version.
        written: Any = client.hset(
            f"{key}:adaptive", mapping={"low": low, "target": target, "grown": grown}
        )
        await written
        limiter = RedisRateLimiter(client, key=key, rate=10, adaptive=True)
        await limiter.acquire()
    expected = min(limiter.ceiling or 0, max(limiter.floor or 0, adaptive_rate(low, target, grown)))
    assert limiter.rate == pytest.approx(expected, rel=1e-9)


@pytest.mark.anyio
async def test_429s_for_slots_reserved_before_the_drop_lower_the_shared_rate_once(
    redis_server: RedisServer,
) -> None:
    key = f"convoso:test:{uuid.uuid4().hex}"
    async with (
        RedisRateLimiter(redis_server.url, key=key, rate=40, adaptive=True) as one,
        RedisRateLimiter(redis_server.url, key=key, rate=40, adaptive=True) as other,
    ):
        reserved = anyio.Event()

        async def sent_then_429(limiter: RedisRateLimiter) -> None:
            await limiter.acquire()
            await reserved.wait()
            await limiter.on_throttle(None)

        async with anyio.create_task_group() as group:
            for limiter in (one, other, one, other):
                group.start_soon(sent_then_429, limiter)
            await anyio.sleep(0.3)
            reserved.set()
        async with aioredis.Redis.from_url(redis_server.url) as client:
            read: Any = client.hgetall(f"{key}:adaptive")  # "Awaitable[dict] | dict" before 8
            state = await read
        dropped_once = float(state[b"low"])
        assert dropped_once < 40
        # A request whose slot came after the drop, met by a 429: the shared rate drops again.
        await other.acquire()
        await other.on_throttle(None)
        await one.acquire()
        assert one.rate < dropped_once


@pytest.mark.anyio
async def test_a_429_pauses_other_limiters_on_the_key_on_the_redis_clock(
    redis_server: RedisServer,
) -> None:
    key = f"convoso:test:{uuid.uuid4().hex}"
    async with (
        RedisRateLimiter(redis_server.url, key=key, rate=100) as one,
        RedisRateLimiter(redis_server.url, key=key, rate=100) as other,
    ):
        await one.acquire()
        await one.on_throttle(1.0)
        started = time.monotonic()
        await other.acquire()
        assert time.monotonic() - started >= 0.9  # a lower bound, never an upper one


@pytest.mark.anyio
async def test_a_redis_that_lost_the_state_is_seeded_with_the_rate_last_seen(
    redis_server: RedisServer,
) -> None:
    key = f"convoso:test:{uuid.uuid4().hex}"
    async with RedisRateLimiter(redis_server.url, key=key, rate=50, adaptive=True) as limiter:
        await limiter.acquire()
        await limiter.on_throttle(None)
        learned = limiter.rate
        assert learned < 50
        async with aioredis.Redis.from_url(redis_server.url) as client:
            await client.flushall()  # as a restart without persistence would
        await limiter.acquire()
        assert limiter.rate == pytest.approx(learned)
