"""The shared limiter on a real Redis Cluster of three masters, through a slot migration."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis
from limiters import CountingFallback
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot
from redis_deployments import RedisClusterNodes, command, max_in_window, start_cluster
from redis_server import start_redis

from convoso_async._redis_connection import limiter_keys
from convoso_async.redis_limiter import RateLimiterUnavailableError, RedisRateLimiter

pytestmark = pytest.mark.redis

#: Each window is this much longer than the period: a grant recorded late (a loaded machine) is
#: then not counted in the next window. The test is whether two limiters share one budget, which
#: would otherwise be twice the rate.
SLACK = 0.2


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisClusterNodes]:
    nodes = start_cluster()
    try:
        yield nodes
    finally:
        nodes.close()


def new_key() -> str:
    return f"convoso:test:{uuid.uuid4().hex}"


def cluster_client(cluster: RedisClusterNodes) -> RedisCluster:
    return RedisCluster(host="127.0.0.1", port=cluster.servers[0].port)


async def keys_on(port: int, keys: list[str]) -> list[str]:
    """Which of ``keys`` the node on ``port`` holds (it answers MOVED for a slot it lacks)."""
    async with aioredis.Redis(port=port) as client:
        return [key for key in keys if await client.exists(key)]


async def slot_time(port: int, key: str) -> int:
    """The next free slot of the running limiters on ``key``, read at the node on ``port``.

    Its key lives from one grant to the next: a read may fall in a gap of a few milliseconds.
    """
    async with aioredis.Redis(port=port) as node:
        for _ in range(100):
            if value := await node.get(f"{{{key}}}"):
                return int(value)
            await anyio.sleep(0.01)
    return 0


async def other_master(cluster: RedisClusterNodes, slot: int) -> int:
    owner = await cluster.owner(slot)
    return next(index for index, s in enumerate(cluster.servers) if s is not owner)


def test_every_key_of_a_limiter_is_in_one_slot_by_construction() -> None:
    for key in ["convoso:acme", "a{b}c", "{", "a{b", "{a}{b}", "}{a}", "a:b:c"]:
        keys = limiter_keys(key, cluster=True)
        assert len({key_slot(name.encode()) for name in keys}) == 1, keys
    # Braces that make no hash tag can't be wrapped in one: such a key is refused, at once.
    for key in ["}", "a{}b", "{}", "x}y{z"]:
        with pytest.raises(ValueError, match="hash tag"):
            RedisRateLimiter("redis+cluster://127.0.0.1:7000", key=key, rate=10)
    # A key with a hash tag of its own keeps its name; any other is put in braces.
    assert limiter_keys("convoso:{acme}", cluster=True)[0] == "convoso:{acme}"
    assert limiter_keys("convoso:acme", cluster=True)[0] == "{convoso:acme}"
    # One server has no slots: the names people's ACL rules and dashboards use stay as they were.
    assert limiter_keys("convoso:acme", cluster=False)[0] == "convoso:acme"


@pytest.mark.timing
@pytest.mark.asyncio
async def test_a_cluster_url_and_a_cluster_client_share_one_rate_through_a_slot_migration(
    cluster: RedisClusterNodes,
) -> None:
    rate, key = 20, new_key()
    slot = key_slot(f"{{{key}}}".encode())
    target = await other_master(cluster, slot)
    fallback = CountingFallback()
    client = cluster_client(cluster)
    stamps: list[float] = []
    async with (
        client,
        RedisRateLimiter(cluster.url, key=key, rate=rate, slack=SLACK, fallback=fallback) as one,
    ):
        other = RedisRateLimiter(client, key=key, rate=rate, slack=SLACK, fallback=fallback)
        assert repr(other).startswith("RedisRateLimiter('redis+cluster://127.0.0.1:")
        assert f"127.0.0.1:{cluster.servers[0].port}" in repr(other)

        async def run(limiter: RedisRateLimiter, seconds: float) -> None:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                await limiter.acquire()
                stamps.append(time.monotonic())

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(run, one, 3.0)
                tasks.start_soon(run, other, 3.0)
                await anyio.sleep(1.0)
                before = await slot_time((await cluster.owner(slot)).port, key)
                await cluster.migrate_slot(slot, cluster.servers[target])
                migrated = time.monotonic()
                after = await slot_time(cluster.servers[target].port, key)
    assert await cluster.owner(slot) is cluster.servers[target]
    assert fallback.calls == 0, "every grant came from the cluster"
    # The limiters' next free slot is on the new owner: where it was, or later.
    assert after >= before > 0
    assert len([stamp for stamp in stamps if stamp > migrated + 0.5]) >= 5
    # Two limiters wanting 20/s each, one key: 20 in any second together, not 40.
    assert max_in_window(stamps) <= rate


@pytest.mark.asyncio
async def test_adaptive_rate_and_429_pause_are_shared_on_a_cluster_and_move_with_the_slot(
    cluster: RedisClusterNodes,
) -> None:
    key = new_key()
    keys = limiter_keys(key, cluster=True)
    slot = key_slot(keys[0].encode())
    client = cluster_client(cluster)
    async with (
        client,
        RedisRateLimiter(cluster.url, key=key, rate=50, adaptive=True) as one,
    ):
        other = RedisRateLimiter(client, key=key, rate=50, adaptive=True)
        await one.acquire()
        await one.on_throttle(None)  # a 429: the shared rate drops
        lowered = one.rate
        assert lowered < 50

        await cluster.migrate_slot(slot, cluster.servers[await other_master(cluster, slot)])
        await other.acquire()
        assert other.rate == pytest.approx(lowered)  # learned by one, seen by the other

        await other.on_throttle(2.0)  # a 429 asking for 2 s: every limiter on the key waits
        started = time.monotonic()
        await cluster.migrate_slot(slot, cluster.servers[await other_master(cluster, slot)])
        # The pause and the learned state moved with the slot, to its new owner. (The slot's
        # time and the grants live an interval and a period: they may be gone by now.)
        long_lived = [keys[1], keys[2]]
        assert await keys_on((await cluster.owner(slot)).port, long_lived) == long_lived
        with anyio.fail_after(10):
            await one.acquire()
        assert time.monotonic() - started >= 1.5


@pytest.mark.asyncio
async def test_a_user_key_with_a_hash_tag_of_its_own_is_used_as_it_is(
    cluster: RedisClusterNodes,
) -> None:
    key = f"convoso:{{{uuid.uuid4().hex}}}"
    # One request every 5 s: the key outlives the check below on a loaded machine.
    async with RedisRateLimiter(cluster.url, key=key, rate=0.2) as limiter:
        await limiter.acquire()
    owner = await cluster.owner(key_slot(key.encode()))
    assert await keys_on(owner.port, [key]) == [key]


@pytest.mark.asyncio
async def test_a_plain_url_to_a_cluster_node_says_to_use_the_cluster_url(
    cluster: RedisClusterNodes,
) -> None:
    url = f"redis://127.0.0.1:{cluster.servers[0].port}/0"
    async with RedisRateLimiter(url, key=new_key(), rate=10) as limiter:
        with pytest.raises(RateLimiterUnavailableError) as caught:
            await limiter.acquire()
    message = str(caught.value)
    assert "is a Redis Cluster node" in message
    assert "redis+cluster://" in message
    assert "fallback" not in message, "a wrong setup is not an outage"


@pytest.mark.asyncio
async def test_cluster_failures_outside_redis_error_reach_the_fallback() -> None:
    # Nothing listens there: redis-py's cluster client raises RedisClusterException, which is
    # not a RedisError.
    server = start_redis()
    port = server.port
    server.close()
    fallback = CountingFallback()
    url = f"redis+cluster://127.0.0.1:{port}"
    async with RedisRateLimiter(url, rate=10, timeout=1.0, fallback=fallback) as limiter:
        with anyio.fail_after(10):
            await limiter.acquire()
    assert fallback.calls == 1
    async with RedisRateLimiter(url, rate=10, timeout=1.0) as limiter:
        with pytest.raises(RateLimiterUnavailableError, match="is unreachable"):
            await limiter.acquire()
        await limiter.on_throttle(1.0)  # never raises


@pytest.mark.asyncio
async def test_a_cluster_url_to_a_single_server_says_so() -> None:
    server = start_redis()
    try:
        url = f"redis+cluster://127.0.0.1:{server.port}"
        async with RedisRateLimiter(url, rate=10) as limiter:
            with pytest.raises(RateLimiterUnavailableError, match="is not a Redis Cluster"):
                await limiter.acquire()
    finally:
        server.close()


@pytest.mark.asyncio
async def test_an_acl_user_with_the_documented_rules_runs_the_limiter_on_a_cluster(
    cluster: RedisClusterNodes,
) -> None:
    key = new_key()
    password = f"pw-{uuid.uuid4().hex}"
    rules = RedisRateLimiter(cluster.url, key=key, rate="auto").acl_rules
    user = f"app{uuid.uuid4().hex[:8]}"
    for server in cluster.servers:  # ACL users are per node in a cluster
        async with aioredis.Redis(port=server.port) as admin:
            await command(admin, "ACL", "SETUSER", user, "on", f">{password}", *rules.split())
    nodes = ",".join(f"127.0.0.1:{s.port}" for s in cluster.servers[:2])
    url = f"redis+cluster://{user}:{password}@{nodes}"
    async with RedisRateLimiter(url, key=key, rate="auto") as limiter:
        assert password not in repr(limiter)
        with anyio.fail_after(10):
            await limiter.acquire()
            await limiter.on_throttle(0.01)
            await limiter.acquire()
    assert limiter.rate < 10  # the 429 lowered the shared rate: every script ran


@pytest.mark.asyncio
async def test_the_cluster_client_of_a_caller_stays_usable_after_the_limiter(
    cluster: RedisClusterNodes,
) -> None:
    async with cluster_client(cluster) as client:
        limiter = RedisRateLimiter(client, key=new_key(), rate=100)
        await limiter.acquire()
        await limiter.aclose()
        pong: Any = client.ping()  # "Awaitable[bool] | bool" before redis-py 8
        assert await pong
