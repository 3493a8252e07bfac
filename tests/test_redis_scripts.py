"""The Lua scripts on a real redis-server and their Python model, side by side.

Random sequences of acquires (at random times, some at the same microsecond), answers without a
429 (the growth they earn goes with the next acquire, as the limiter sends it) and 429s (with or
without Retry-After, for a recent slot, an old one or an unknown one) run through both, in fixed
and adaptive mode; every reply must be the same: the wait, the reservation, the rate, the
target, the pause, whether a 429 lowered the rate. The model's adaptive rules are the
in-process `AdaptiveLimiter`'s (`tests/redis_script_model.py`), so this checks the Lua against
them.

The scripts read the time from an extra argument here (`scripts_on_argument_clock`; the limiter
reads Redis's TIME, and the rest of the scripts is the same text). Each call runs in a MULTI
with a PTTL and a PERSIST of every key: the PTTLs check the expiry each key was given, and
PERSIST keeps Redis's own clock from expiring a key the driven clock still needs.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis_script_model import GRANTS, PAUSE, STATE, TAT, ScriptModel
from redis_server import RedisServer, redis_server_fixture  # noqa: F401

from convoso_async._redis_connection import limiter_keys
from convoso_async._redis_scripts import (
    ACQUIRE_SCRIPT,
    THROTTLE_SCRIPT,
    AcquireReply,
    ThrottleReply,
    acquire_args,
    scripts_on_argument_clock,
    throttle_args,
)
from convoso_async._redis_settings import RedisLimiterSettings, check_settings

pytestmark = pytest.mark.redis

ACQUIRE_ON_ARGUMENT, THROTTLE_ON_ARGUMENT = scripts_on_argument_clock()

#: A Redis-like time to start from, in µs (2026).
START_US = 1_780_000_000_000_000


@dataclass(frozen=True)
class Acquire:
    after_us: int


@dataclass(frozen=True)
class Success:
    pass


@dataclass(frozen=True)
class Throttle:
    after_us: int
    retry_after: float | None
    #: Which earlier reservation met the 429: an index from the end, or None for "unknown".
    slot: int | None


Event = Acquire | Success | Throttle

events = st.lists(
    st.one_of(
        st.builds(Acquire, st.integers(0, 3_000_000) | st.just(0)),
        st.just(Success()),
        st.builds(
            Throttle,
            st.integers(0, 3_000_000),
            st.none() | st.just(0.0) | st.floats(0.01, 120),
            st.none() | st.integers(0, 8),
        ),
    ),
    min_size=1,
    max_size=60,
)

periods = st.sampled_from([1.0, 2.5, 10.0, 60.0])


@st.composite
def fixed_settings(draw: st.DrawFn) -> RedisLimiterSettings:
    # Slots at least 10 ms apart: no key's expiry is short enough to run out inside a MULTI.
    period = draw(periods)
    return _settings(
        rate=draw(st.floats(0.5, 100 * period)),
        period=period,
        burst=draw(st.integers(1, 5)),
        slack=draw(st.floats(0, 0.5)),
    )


@st.composite
def adaptive_settings(draw: st.DrawFn) -> RedisLimiterSettings:
    period = draw(periods)
    ceiling = 100 * period
    return _settings(
        rate=draw(st.floats(0.5, ceiling)), period=period, adaptive=True, ceiling=ceiling
    )


def _settings(**given: Any) -> RedisLimiterSettings:
    options: dict[str, Any] = {
        "adaptive": False,
        "floor": None,
        "ceiling": None,
        "burst": 1,
        "timeout": 2.0,
        "retry_interval": 5.0,
        "slack": 0.0,
        "key": f"convoso:test:{uuid.uuid4().hex}",
        "fallback": None,
    }
    return check_settings(**{**options, **given})


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_server.url) as connection:
        yield connection


def run(
    client: redis.Redis, script: str, keys: list[str], args: list[Any], now: int
) -> tuple[list[Any], list[int]]:
    """The script's reply at ``now``, and each key's PTTL right after it (then made persistent)."""
    with client.pipeline(transaction=True) as pipe:
        pipe.eval(script, len(keys), *keys, *args, str(now))
        for key in keys:
            pipe.pttl(key)
        for key in keys:
            pipe.persist(key)
        answers: list[Any] = pipe.execute()
    return answers[0], [int(ttl) for ttl in answers[1 : 1 + len(keys)]]


def check_expiries(model: ScriptModel, ttls: list[int]) -> None:
    """Each key the call wrote expires when the model says (a MULTI takes no time to speak of)."""
    for index in (TAT, PAUSE, STATE, GRANTS):
        if index in model.ttls:
            expected = model.ttls[index]
            assert expected - 1000 < ttls[index] <= expected or (
                ttls[index] == -2 and expected <= 1000
            ), (index, ttls, model.ttls)


def replay(client: redis.Redis, limiter: RedisLimiterSettings, sequence: list[Event]) -> None:
    """Run ``sequence`` through Redis and the model; their replies must agree at every step."""
    keys = limiter_keys(limiter.key, cluster=False)
    model = ScriptModel()
    seen, credit, earned = (limiter.start, 0.0), 0.0, 0.0
    reserved: list[int] = []
    now = START_US
    for event in sequence:
        if isinstance(event, Success):
            credit, earned = credit + earned, 0.0  # one answer per grant, as the limiter adds it
            continue
        now += event.after_us
        if isinstance(event, Acquire):
            args = acquire_args(limiter, seen, credit)
            answer, ttls = run(client, ACQUIRE_ON_ARGUMENT, keys, args, now)
            got = AcquireReply.parse(answer)
            assert got == model.acquire(now, args), (event, model)
            credit = 0.0
            if limiter.adaptive:
                seen = (got.rate, got.target)
                earned = limiter.period * 1e6 / got.rate if got.wait_us > 0 else 0.0
            reserved.append(got.reserved_us)
        else:
            slot = -1
            if event.slot is not None and reserved:
                slot = reserved[-1 - event.slot % len(reserved)]
            retry_us = -1.0 if event.retry_after is None else event.retry_after * 1e6
            args = throttle_args(limiter, seen, retry_us, slot)
            answer, ttls = run(client, THROTTLE_ON_ARGUMENT, keys, args, now)
            reply = ThrottleReply.parse(answer)
            assert reply == model.throttle(now, args), (event, model)
            if limiter.adaptive and reply.lowered:
                seen = (reply.after, reply.target)
        check_expiries(model, ttls)


CHECKS = settings(
    max_examples=150,
    deadline=None,
    # One server for every example; each example has keys of its own.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@CHECKS
@given(limiter=fixed_settings(), sequence=events)
def test_the_fixed_rate_script_grants_what_its_model_grants(
    client: redis.Redis, limiter: RedisLimiterSettings, sequence: list[Event]
) -> None:
    replay(client, limiter, sequence)


@CHECKS
@given(limiter=adaptive_settings(), sequence=events)
def test_the_adaptive_script_grants_and_decides_what_its_model_does(
    client: redis.Redis, limiter: RedisLimiterSettings, sequence: list[Event]
) -> None:
    replay(client, limiter, sequence)


def test_the_scripts_under_test_are_the_limiters_but_for_the_clock() -> None:
    def without_clock(script: str) -> list[str]:
        return [line for line in script.splitlines() if "now =" not in line and "TIME" not in line]

    assert "redis.call('TIME')" in ACQUIRE_SCRIPT
    assert "TIME" not in ACQUIRE_ON_ARGUMENT
    assert without_clock(ACQUIRE_ON_ARGUMENT) == without_clock(ACQUIRE_SCRIPT)
    assert without_clock(THROTTLE_ON_ARGUMENT) == without_clock(THROTTLE_SCRIPT)
