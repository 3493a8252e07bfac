"""rate_limit="auto": the adaptive limiter's rules, and its convergence against a real server.

Exact timings run on trio's virtual clock (no wall time, no flakiness). The convergence tests run
over loopback against the fake with a limit the client is not told, and assert on the fake's own
counts (requests, 429s) and on the rate the limiter settled at, within generous bounds, never on
how long anything took.
"""

from __future__ import annotations

import itertools
import logging

import anyio
import pytest
from trio.testing import MockClock

import convoso_async
from convoso_async import AdaptiveLimiter, AsyncConvoso, ConfigurationError
from convoso_async._pacing.ratelimit import (
    ADAPTIVE_DECREASE,
    ADAPTIVE_TARGET,
    DEEPEST_DROP,
    HOLD_SECONDS,
    RECOVERY_SECONDS,
    SLOW_START_DOUBLING,
    adaptive_rate,
    decreased_rates,
)
from convoso_async.testing import FakeConvoso

# --- the rate's shape ---------------------------------------------------------------------------


def test_slow_start_doubles_the_rate_every_period_of_busy_time() -> None:
    assert adaptive_rate(10, 0, 0) == 10
    assert adaptive_rate(10, 0, SLOW_START_DOUBLING) == pytest.approx(20)
    assert adaptive_rate(10, 0, 3 * SLOW_START_DOUBLING) == pytest.approx(80)


def test_after_a_drop_the_rate_climbs_to_the_target_holds_then_probes() -> None:
    low, target = 28.0, 38.0
    climb = [adaptive_rate(low, target, t) for t in (0, 1, 2, 3, 4, RECOVERY_SECONDS)]
    assert climb[0] == low
    assert climb[-1] == pytest.approx(target)
    steps = [b - a for a, b in itertools.pairwise(climb)]
    assert all(s > 0 for s in steps)
    assert steps == sorted(steps, reverse=True)
    held = adaptive_rate(low, target, RECOVERY_SECONDS + HOLD_SECONDS)
    assert held == target
    probing = [adaptive_rate(low, target, RECOVERY_SECONDS + HOLD_SECONDS + t) for t in (2, 4, 8)]
    assert target < probing[0] < probing[1] < probing[2]
    assert probing[0] < 1.01 * target  # probing starts gently


def test_a_drop_recovers_towards_what_got_through_when_that_is_less() -> None:
    # Met a 429 at 200/s when only 41 went through in the last second: aim for ~41,
    # but never below DEEPEST_DROP of the rate (the server may count over a longer window).
    low, target = decreased_rates(200.0, 41.0, floor=1.0)
    assert target == pytest.approx(200 * DEEPEST_DROP * ADAPTIVE_TARGET)
    low, target = decreased_rates(60.0, 41.0, floor=1.0)
    assert target == pytest.approx(41 * ADAPTIVE_TARGET)
    assert low == target
    low, target = decreased_rates(42.0, 41.0, floor=1.0)
    assert low == pytest.approx(42 * ADAPTIVE_DECREASE)
    assert target == pytest.approx(41 * ADAPTIVE_TARGET)
    assert decreased_rates(1.0, 0.0, floor=0.9) == (0.9, 0.9)


# --- options --------------------------------------------------------------------------------------


def test_rate_limit_auto_makes_an_adaptive_limiter_at_the_documented_start() -> None:
    client = AsyncConvoso("tok-test-123456", rate_limit="auto")
    limiter = client.rate_limiter
    assert isinstance(limiter, AdaptiveLimiter)
    assert limiter.rate == convoso_async._defaults.AUTO_RATE_START
    copy = client.with_options(rate_limit="auto")
    assert isinstance(copy.rate_limiter, AdaptiveLimiter)
    assert copy.rate_limiter is not limiter
    assert client.with_options(timeout=5).rate_limiter is limiter


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"start": 0}, ConfigurationError),
        ({"start": 5, "floor": 10}, ConfigurationError),
        ({"start": 50, "ceiling": 20}, ConfigurationError),
        ({"start": True}, ConfigurationError),
        ({"start": "10"}, ConfigurationError),
        ({"start": float("nan")}, ConfigurationError),
        ({"period": 0}, ConfigurationError),
    ],
)
def test_adaptive_limiter_refuses_bad_bounds(kwargs: dict[str, object], error: type) -> None:
    with pytest.raises(error):
        AdaptiveLimiter(**kwargs)  # type: ignore[arg-type]


def test_rate_limit_refuses_another_string() -> None:
    with pytest.raises(ConfigurationError, match="auto"):
        AsyncConvoso("tok-test-123456", rate_limit="fast")  # type: ignore[arg-type]


# --- exact behaviour on trio's virtual clock ------------------------------------------------------


class TestOnVirtualClock:
    @pytest.fixture
    def anyio_backend(self) -> tuple[str, dict[str, object]]:
        return ("trio", {"clock": MockClock(autojump_threshold=0)})

    @pytest.mark.anyio
    async def test_requests_are_spaced_evenly_even_after_an_idle_spell(self) -> None:
        limiter = AdaptiveLimiter(start=10, ceiling=10)
        grants: list[float] = []
        for _ in range(5):
            await limiter.acquire()
            grants.append(anyio.current_time())
        await anyio.sleep(30)  # idle: nothing saved up to spend at once
        for _ in range(5):
            await limiter.acquire()
            grants.append(anyio.current_time())
        gaps = [b - a for a, b in itertools.pairwise(grants)]
        assert min(gaps) == pytest.approx(0.1)

    @pytest.mark.anyio
    async def test_a_burst_of_429s_sent_before_the_drop_lowers_the_rate_once(self) -> None:
        limiter = AdaptiveLimiter(start=20)
        answered = anyio.Event()

        async def request_met_by_429() -> None:
            await limiter.acquire()
            await answered.wait()  # all four are in flight together
            await limiter.on_throttle(None)

        async with anyio.create_task_group() as group:
            for _ in range(4):
                group.start_soon(request_met_by_429)
            await anyio.sleep(0.5)
            answered.set()
        assert limiter.decreases == 1
        first_drop = limiter.rate
        assert first_drop == pytest.approx(decreased_rates(20.0, 4, limiter.floor)[0])

        # A request sent after the drop and met by a 429 is news: the rate drops again.
        await limiter.acquire()
        await limiter.on_throttle(None)
        assert limiter.decreases == 2
        assert limiter.rate < first_drop

    @pytest.mark.anyio
    async def test_retry_after_pauses_every_task_waiting_on_the_limiter(self) -> None:
        limiter = AdaptiveLimiter(start=10)
        await limiter.acquire()
        thrown_at = anyio.current_time()
        await limiter.on_throttle(3.0)
        times: list[float] = []

        async def one() -> None:
            await limiter.acquire()
            times.append(anyio.current_time())

        async with anyio.create_task_group() as group:
            for _ in range(3):
                group.start_soon(one)
        assert min(times) >= thrown_at + 3.0

    @pytest.mark.anyio
    async def test_the_rate_grows_only_on_answers_to_requests_that_queued(self) -> None:
        busy = AdaptiveLimiter(start=10)
        idle = AdaptiveLimiter(start=10)

        async def greedy() -> None:
            while True:
                await busy.acquire()
                busy.on_success()

        async def slow_caller() -> None:
            while True:
                await idle.acquire()
                idle.on_success()
                await anyio.sleep(0.5)  # well under the rate: never queues

        with anyio.move_on_after(6):
            async with anyio.create_task_group() as group:
                group.start_soon(greedy)
                group.start_soon(greedy)
                group.start_soon(slow_caller)
        assert idle.rate == 10
        # ~6 s of busy time doubles the rate every 2 s: about 8x.
        assert 50 < busy.rate < 100

    @pytest.mark.anyio
    async def test_drops_and_rises_are_logged(self, caplog: pytest.LogCaptureFixture) -> None:
        limiter = AdaptiveLimiter(start=10)
        with caplog.at_level(logging.INFO, logger="convoso_async"):
            await limiter.acquire()
            await limiter.on_throttle(1.0)
            for _ in range(200):
                await limiter.acquire()
                limiter.on_success()
        messages = [r.getMessage() for r in caplog.records]
        assert any("lowered from 10 to" in m for m in messages), messages
        assert any("raised to" in m for m in messages), messages


# --- convergence over loopback, against a limit the client is not told ------------------------


@pytest.mark.timing
@pytest.mark.parametrize(
    ("anyio_backend", "start"), [("asyncio", 200.0), ("trio", 8.0)], indirect=["anyio_backend"]
)
@pytest.mark.anyio
async def test_auto_converges_to_the_servers_limit_with_few_429s(start: float) -> None:
    limit = 40
    fake = FakeConvoso(campaigns=500, rate_limit=limit)
    ids = list(fake.statuses())
    limiter = AdaptiveLimiter(start=start)
    async with (
        fake.serve() as url,
        AsyncConvoso(FakeConvoso.TOKEN, base_url=url, rate_limit=limiter) as convoso,
    ):
        result = await convoso.campaigns.set_status_many(ids, False)
    assert sorted(result.succeeded) == sorted(ids)
    statuses = [r.status for r in fake.requests]
    throttled = statuses.count(429)
    assert throttled >= 1  # it did have to find the limit
    # A fixed rate 5x too high would meet hundreds; "auto" a handful (generous bound).
    assert throttled <= 0.05 * len(statuses)
    # It settled near the account's limit, not at its start.
    assert 0.5 * limit <= limiter.rate <= 1.3 * limit
    assert set(fake.statuses().values()) == {"N"}


@pytest.fixture
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(getattr(request, "param", "asyncio"))
