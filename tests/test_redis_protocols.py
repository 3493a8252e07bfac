"""The shared limiter speaks RESP2 and RESP3, whichever redis-py (6, 7, 8) and server it meets.

redis-py 8 speaks RESP3 unless told otherwise; 6 and 7 speak RESP2. A URL's ``?protocol=2`` or
``?protocol=3`` is honoured on every version, and a server that cannot speak RESP3 (Redis before
6, some servers compatible with it) is told apart from one that is down: its message says to add
``?protocol=2``.
"""

from __future__ import annotations

import uuid

import anyio
import pytest
import redis.asyncio as aioredis
from redis_deployments import StandInRedis, command
from redis_server import RedisServer, redis_server_fixture  # noqa: F401

from convoso_async.redis_limiter import RateLimiterUnavailableError, RedisRateLimiter

pytestmark = pytest.mark.redis

#: The acquire script's answer: no wait, reserved at 1 µs, rate and target 0 (fixed mode).
GRANT = b"*4\r\n$1\r\n0\r\n$1\r\n1\r\n$1\r\n0\r\n$1\r\n0\r\n"


async def resp_of_other_clients(server: RedisServer) -> set[str]:
    """The protocol (``resp=``) of every connection to ``server`` but the asking one."""
    async with aioredis.Redis(port=server.port, protocol=2) as admin:
        own = await command(admin, "CLIENT", "ID")
        listing = await command(admin, "CLIENT", "LIST")
    text = listing.decode() if isinstance(listing, bytes) else str(listing)
    found = set()
    for line in text.splitlines():
        fields = dict(item.partition("=")[::2] for item in line.split())
        if fields.get("id") != str(own):
            found.add(fields.get("resp", "2"))  # Redis before 7 does not say: RESP2
    return found


@pytest.mark.asyncio
@pytest.mark.parametrize("protocol", ["2", "3"])
@pytest.mark.parametrize("form", ["url", "client"])
async def test_a_chosen_protocol_is_spoken_in_every_mode(
    redis_server: RedisServer, protocol: str, form: str
) -> None:
    url = f"redis://127.0.0.1:{redis_server.port}/0?protocol={protocol}"
    key = f"convoso:{uuid.uuid4().hex}"
    async with aioredis.Redis.from_url(url) as client:
        redis: aioredis.Redis | str = client if form == "client" else url
        with anyio.fail_after(10):
            async with (
                RedisRateLimiter(redis, key=key, rate="auto") as adaptive,
                RedisRateLimiter(redis, key=f"{key}:fixed", rate=100, burst=2) as fixed,
            ):
                await adaptive.acquire()
                await adaptive.on_throttle(0.01)
                await adaptive.acquire()
                await fixed.acquire()
                await fixed.on_throttle(None)
                await fixed.acquire()
                assert await resp_of_other_clients(redis_server) == {protocol}
    assert adaptive.rate < 10  # the 429 went through the throttle script and its reply was read


class FixedGrants(StandInRedis):
    """A stand-in that grants every script call at once."""

    def reply(self, number: int, request: list[bytes]) -> bytes | None:
        return GRANT if request[0].upper() == b"EVALSHA" else None


@pytest.mark.asyncio
@pytest.mark.parametrize("protocol", ["", "?protocol=2", "?protocol=3"])
async def test_the_stand_in_redis_speaks_either_handshake(protocol: str) -> None:
    async with FixedGrants() as server:
        async with RedisRateLimiter(server.url + protocol, key="k", rate=100) as limiter:
            with anyio.fail_after(10):
                await limiter.acquire()
        hellos = [words for _, words in server.commands if words[0].upper() == b"HELLO"]
    if protocol == "?protocol=3":
        assert hellos == [[b"HELLO", b"3"]]
    if protocol == "?protocol=2":
        assert hellos == []


@pytest.mark.asyncio
@pytest.mark.parametrize("form", ["url", "client"])
async def test_a_server_without_resp3_is_told_to_use_protocol_2(form: str) -> None:
    async with FixedGrants(knows_hello=False) as server:
        url = f"{server.url}?protocol=3"
        async with aioredis.Redis.from_url(url) as client:
            limiter = RedisRateLimiter(client if form == "client" else url, key="k", rate=100)
            with pytest.raises(RateLimiterUnavailableError) as caught, anyio.fail_after(10):
                await limiter.acquire()
            await limiter.aclose()
        # What the message says to do works.
        async with RedisRateLimiter(f"{server.url}?protocol=2", key="k", rate=100) as fixed:
            with anyio.fail_after(10):
                await fixed.acquire()
    message = str(caught.value)
    assert "cannot speak RESP3" in message
    assert "add ?protocol=2 to the Redis URL, or give your client protocol=2" in message
    assert "unreachable" not in message
    assert "fallback=" not in message  # a setup to fix, not an outage


class OddAnswer(StandInRedis):
    """A stand-in whose script calls get an error the limiter has no words for."""

    def reply(self, number: int, request: list[bytes]) -> bytes | None:
        if request[0].upper() == b"EVALSHA":
            return b"-ERR something the limiter has never seen\r\n"
        return None


@pytest.mark.asyncio
async def test_an_error_with_no_explanation_is_still_one_sentence() -> None:
    async with OddAnswer() as server, RedisRateLimiter(server.url, key="k", rate=100) as limiter:
        with pytest.raises(RateLimiterUnavailableError) as caught, anyio.fail_after(10):
            await limiter.acquire()
    message = str(caught.value)
    assert message.endswith(
        "failed (ResponseError: something the limiter has never seen); give the limiter a "
        "fallback= limiter to keep going while Redis fails"
    )
