"""The shared limiter through a failover: a primary demoted behind a stable endpoint, a Sentinel
promoting the replica of a killed primary, and the errors of a server that is not (yet) the
primary: each is met again on a fresh connection, once."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator

import anyio
import pytest
import redis.asyncio as aioredis
from redis.asyncio.sentinel import MasterNotFoundError
from redis_deployments import (  # noqa: F401  (registers `primary_and_replica`)
    SentinelSetup,
    StandInRedis,
    SwitchProxy,
    command,
    max_in_window,
    primary_and_replica_fixture,
    sentinel,
    start_sentinel,
    wait_for_role,
)
from redis_server import RedisServer

from convoso_async._pacing.ratelimit import Limiter
from convoso_async.redis_limiter import RedisRateLimiter

pytestmark = pytest.mark.redis

#: How much longer than the period each window is taken to be, so that a grant recorded late on
#: a loaded machine is not counted in the next window (see test_redis_workers.py).
SLACK = 0.2
#: While Redis is away each limiter paces with a fallback this slow: with the shared rate it
#: stays within the rate in any window that holds grants of both.
FALLBACK_RATE = 5
RATE = 40
RETRY_INTERVAL = 0.5


class RecordingLimiter:
    """A fallback: paces with an in-process limiter and notes when it granted."""

    def __init__(self, rate: float) -> None:
        self.inner = Limiter(rate)
        self.stamps: list[float] = []

    def __repr__(self) -> str:
        return "RecordingLimiter()"

    async def acquire(self) -> None:
        await self.inner.acquire()
        self.stamps.append(time.monotonic())


class Grants:
    """Runs ``acquire()`` in a loop in the background; every grant's time, and its source."""

    def __init__(self, limiter: RedisRateLimiter, fallback: RecordingLimiter) -> None:
        self.limiter = limiter
        self.fallback = fallback
        self.stamps: list[float] = []
        self.from_redis: list[float] = []

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        while True:
            before = len(self.fallback.stamps)
            await self.limiter.acquire()
            now = time.monotonic()
            self.stamps.append(now)
            if len(self.fallback.stamps) == before:
                self.from_redis.append(now)

    def check_back_on_redis(self, since: float) -> None:
        """Within ``RETRY_INTERVAL`` of ``since`` (plus a second for a loaded machine) the
        fallback stopped and Redis granted again; no window held more than the rate."""
        settled = since + RETRY_INTERVAL + 1.0
        assert [t for t in self.fallback.stamps if t > settled] == [], "never back on Redis"
        assert len([t for t in self.from_redis if t > settled]) >= 10
        assert max_in_window(self.stamps) <= RATE


async def holds_key(server: RedisServer, key: str) -> bool:
    """Whether ``server`` holds ``key`` within a second: the slot's key of a limiter that keeps
    asking lives from one grant to the next, with gaps of a few milliseconds."""
    async with aioredis.Redis(port=server.port) as client:
        for _ in range(100):
            if await client.exists(key):
                return True
            await anyio.sleep(0.01)
    return False


@pytest.fixture
def sentinel_setup() -> Iterator[SentinelSetup]:
    setup = start_sentinel()
    try:
        yield setup
    finally:
        setup.close()


def limiter_for(redis: aioredis.Redis | str, fallback: RecordingLimiter) -> RedisRateLimiter:
    return RedisRateLimiter(
        redis,
        key=f"convoso:test:{uuid.uuid4().hex}",
        rate=RATE,
        slack=SLACK,
        timeout=1.0,
        fallback=fallback,
        retry_interval=RETRY_INTERVAL,
    )


@pytest.mark.asyncio
@pytest.mark.parametrize("form", ["url", "client"])
async def test_a_primary_demoted_behind_a_repointed_endpoint_is_left_for_the_new_primary(
    primary_and_replica: tuple[RedisServer, RedisServer], form: str
) -> None:
    primary, replica = primary_and_replica
    fallback = RecordingLimiter(FALLBACK_RATE)
    async with SwitchProxy(("127.0.0.1", primary.port)) as proxy:
        endpoint = f"redis://127.0.0.1:{proxy.port}/0"
        client = aioredis.Redis(port=proxy.port) if form == "client" else None
        limiter = limiter_for(client or endpoint, fallback)
        grants = Grants(limiter, fallback)
        with anyio.fail_after(45):
            async with anyio.create_task_group() as tasks:
                await tasks.start(grants.run)
                await anyio.sleep(1.0)
                # The primary hands over to its replica (writes paused until the replica caught
                # up), then becomes a replica itself; the endpoint follows a moment later.
                async with aioredis.Redis(port=primary.port) as admin:
                    await command(admin, "FAILOVER", "TO", "127.0.0.1", replica.port)
                await wait_for_role(replica, "master")
                await wait_for_role(primary, "slave")
                await anyio.sleep(0.3)
                proxy.upstream = ("127.0.0.1", replica.port)
                repointed = time.monotonic()
                await anyio.sleep(RETRY_INTERVAL + 2.5)
                # The shared state lives on the new primary.
                assert await holds_key(replica, limiter.key)
                tasks.cancel_scope.cancel()
        await limiter.aclose()
        if client is not None:
            await client.aclose()
    grants.check_back_on_redis(repointed)


@pytest.mark.asyncio
async def test_grants_resume_after_sentinel_promotes_the_replica_of_a_killed_primary(
    sentinel_setup: SentinelSetup,
) -> None:
    setup = sentinel_setup
    sentinels = sentinel([("127.0.0.1", setup.sentinel.port)], socket_timeout=1.0)
    client = sentinels.master_for(setup.service, socket_timeout=1.0)
    fallback = RecordingLimiter(FALLBACK_RATE)
    limiter = limiter_for(client, fallback)
    assert f"'redis+sentinel://127.0.0.1:{setup.sentinel.port}/{setup.service}'" in repr(limiter)
    grants = Grants(limiter, fallback)

    async def promoted() -> float:
        while True:
            with contextlib.suppress(MasterNotFoundError):  # while the primary is down
                _, port = await sentinels.discover_master(setup.service)
                if port == setup.replica.port:
                    return time.monotonic()
            await anyio.sleep(0.05)

    with anyio.fail_after(45):
        async with anyio.create_task_group() as tasks:
            await tasks.start(grants.run)
            await anyio.sleep(1.0)
            setup.primary.kill()
            killed = time.monotonic()
            promoted_at = await promoted()
            await anyio.sleep(RETRY_INTERVAL + 2.5)
            assert await holds_key(setup.replica, limiter.key)
            tasks.cancel_scope.cancel()
    await client.aclose()
    for sentinel_client in sentinels.sentinels:  # discover_master's connections, ours to close
        await sentinel_client.aclose()
    assert any(killed < t < promoted_at for t in fallback.stamps), "the fallback bridged the gap"
    grants.check_back_on_redis(promoted_at)


# --- one retry on a fresh connection, for each error a demoted or starting server gives ----------

#: The acquire script's answer: no wait, reserved at 1 µs, rate and target 0 (fixed mode).
GRANT = b"*4\r\n$1\r\n0\r\n$1\r\n1\r\n$1\r\n0\r\n$1\r\n0\r\n"


class FirstConnectionFails(StandInRedis):
    """A stand-in Redis on loopback: the first connection's script call gets ``error``, every
    later connection's gets a grant. The handshake (HELLO, CLIENT SETINFO...) is a server's."""

    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error
        self.scripts_on: list[int] = []  # the connection number of each script call

    def reply(self, number: int, request: list[bytes]) -> bytes | None:
        if request[0].upper() != b"EVALSHA":
            return None
        self.scripts_on.append(number)
        return f"-{self.error}\r\n".encode() if number == 0 else GRANT


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "error",
    [
        "READONLY You can't write against a read only replica.",
        "LOADING Redis is loading the dataset in memory",
        "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
    ],
)
@pytest.mark.parametrize("form", ["url", "client"])
@pytest.mark.parametrize("protocol", ["", "?protocol=2", "?protocol=3"])
async def test_a_server_that_is_not_the_primary_yet_is_asked_again_on_a_fresh_connection(
    error: str, form: str, protocol: str
) -> None:
    async with FirstConnectionFails(error) as server, contextlib.AsyncExitStack() as stack:
        url = server.url + protocol
        client = None
        if form == "client":
            client = aioredis.Redis.from_url(url)
            stack.push_async_callback(client.aclose)  # also when the limiter raises
        async with RedisRateLimiter(client or url, key="k", rate=100) as limiter:
            with anyio.fail_after(10):
                await limiter.acquire()
    assert server.scripts_on == [0, 1]  # asked once more, on a connection of its own
