"""Pacing: the in-process limiter, the client-wide 429 pause, and how requests go through both.

Timing tests on real event loops assert counts inside windows and lower bounds on waits, never
"finished within N seconds". Where an exact time is the point (a cancelled waiter gives its turn
back, a pause is extended), the test runs on trio's virtual clock, which jumps straight to the next
deadline, so the times are exact and the test takes no wall time.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import parse_qs

import anyio
import httpx
import pytest
from anyio.abc import TaskStatus
from limiters import CountingLimiter
from mocked_api import BASE_URL, TOKEN
from trio.testing import MockClock

from convoso_async import AsyncConvoso, ConfigurationError, Limiter, RateLimiter
from convoso_async._pacing.ratelimit import (
    MIN_SLACK_SECONDS,
    WINDOW_SLACK,
    PauseGate,
    limiter_from_option,
)
from convoso_async.testing import most_in_window

# --- helpers ------------------------------------------------------------------------------------

#: How late after its grant a request may reach a server on a real clock on a loaded machine.
LATE_ARRIVAL = 0.1


async def grant_times(limiter: RateLimiter, *, tasks: int, duration: float) -> list[float]:
    """When ``limiter`` granted ``tasks`` greedy callers a slot, over ``duration`` seconds."""
    grants: list[float] = []

    async def take_greedily() -> None:
        while True:
            await limiter.acquire()
            grants.append(anyio.current_time())

    with anyio.move_on_after(duration):
        async with anyio.create_task_group() as group:
            for _ in range(tasks):
                group.start_soon(take_greedily)
    return grants


def form(request: httpx.Request) -> dict[str, str]:
    """The request's form fields (the last value of each)."""
    return {key: values[-1] for key, values in parse_qs(request.content.decode()).items()}


@asynccontextmanager
async def client_on(
    transport: httpx.AsyncBaseTransport,
    *,
    max_concurrency: int = 8,
    rate_limit: float | RateLimiter | None = None,
) -> AsyncIterator[AsyncConvoso]:
    """A client whose requests go to ``transport`` (a stock httpx client, never the network)."""
    async with (
        httpx.AsyncClient(transport=transport) as http,
        AsyncConvoso(
            TOKEN,
            base_url=BASE_URL,
            http_client=http,
            max_concurrency=max_concurrency,
            rate_limit=rate_limit,
        ) as convoso,
    ):
        yield convoso


class RecordingServer:
    """``/campaigns/status`` that answers success and notes when each request arrived."""

    def __init__(self, *, latency: float = 0.0) -> None:
        self.latency = latency
        self.arrivals: list[float] = []

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.arrivals.append(anyio.current_time())
        await anyio.sleep(self.latency)
        return httpx.Response(200, json={"success": True})


class RefusingServer:
    """Refuses the first status request with ``status`` and a ``Retry-After``; the rest succeed.

    The refusal is held back a little so that, by the time it is answered, the other tasks are
    busy sending: without a client-wide pause they would go on sending straight after it.
    """

    def __init__(self, status: int, *, retry_after: str = "1", hold: float = 0.1) -> None:
        self.status = status
        self.retry_after = retry_after
        self.hold = hold
        self.arrivals: list[tuple[float, str]] = []
        self.refused_id: str | None = None
        self.refused_at = math.nan

    async def handle(self, request: httpx.Request) -> httpx.Response:
        campaign_id = form(request)["campaign_id"]
        self.arrivals.append((anyio.current_time(), campaign_id))
        if self.refused_id is None:
            self.refused_id = campaign_id
            await anyio.sleep(self.hold)
            self.refused_at = anyio.current_time()
            return httpx.Response(self.status, headers={"Retry-After": self.retry_after})
        await anyio.sleep(0.02)
        return httpx.Response(200, json={"success": True})

    def arrivals_after_refusal(self) -> list[tuple[float, str]]:
        """Requests that arrived after the refusal was answered, as (seconds after it, id)."""
        return [(t - self.refused_at, i) for t, i in self.arrivals if t > self.refused_at]


def ids(count: int) -> list[str]:
    return [str(100 + n) for n in range(count)]


# --- the window counter the other tests rely on -------------------------------------------------


def test_busiest_window_counts_half_open_one_second_windows() -> None:
    assert most_in_window([]) == 0
    assert most_in_window([0.0, 0.5, 0.99, 1.0, 1.5]) == 3
    assert most_in_window([0.0, 1.0, 2.0]) == 1
    assert most_in_window([5.0, 0.1, 0.2, 0.3]) == 3
    assert most_in_window([0.0, 10.0, 10.5], 60.0) == 3


# --- Limiter on real event loops ----------------------------------------------------------------


@pytest.mark.timing
@pytest.mark.anyio
@pytest.mark.parametrize("rate", [50, 200])
async def test_limiter_holds_every_second_to_its_rate_and_nearly_reaches_it(rate: int) -> None:
    limiter = Limiter(rate)
    started = anyio.current_time()
    duration = 2.5
    grants = await grant_times(limiter, tasks=8, duration=duration)

    assert most_in_window(grants) <= rate
    # Paced, not starved. How near the rate it gets on a real loop depends on how busy the machine
    # is; the virtual-clock test below pins it at 98%.
    assert len(grants) >= 0.5 * rate * duration
    # Spread evenly from the first grant: no burst of `rate` requests at start.
    assert sum(1 for t in grants if t < started + 0.2) <= rate * 0.2 + 1


@pytest.mark.anyio
async def test_cancelled_acquire_leaves_the_limiter_usable_and_paced() -> None:
    limiter = Limiter(5)  # one grant every ~0.2 s
    await limiter.acquire()
    first = anyio.current_time()
    with anyio.move_on_after(0.05) as scope:
        await limiter.acquire()
    assert scope.cancelled_caught

    with anyio.fail_after(5):  # a lock left held by the cancelled waiter would hang here
        await limiter.acquire()
    assert anyio.current_time() - first >= 0.19


@pytest.mark.parametrize(
    ("rate", "error"),
    [
        (0, ConfigurationError),
        (-1, ConfigurationError),
        (math.nan, ConfigurationError),
        (math.inf, ConfigurationError),
        (-math.inf, ConfigurationError),
        ("5", ConfigurationError),
        (True, ConfigurationError),
        (None, ConfigurationError),
        ([5], ConfigurationError),
    ],
)
def test_limiter_refuses_a_rate_that_is_not_a_positive_finite_number(
    rate: object, error: type[Exception]
) -> None:
    with pytest.raises(error):
        Limiter(rate)  # type: ignore[arg-type]


@pytest.mark.parametrize("period", [0, -1.0, math.nan, math.inf, "1"])
def test_limiter_refuses_a_period_that_is_not_a_positive_finite_number(period: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        Limiter(10, period=period)  # type: ignore[arg-type]


# --- limiter_from_option: the client's rate_limit option ----------------------------------------


def test_rate_limit_option_none_means_no_pacing() -> None:
    assert limiter_from_option(None) is None


@pytest.mark.parametrize("rate", [5, 2.5, 1000])
def test_rate_limit_option_number_makes_an_in_process_limiter(rate: float) -> None:
    limiter = limiter_from_option(rate)
    assert isinstance(limiter, Limiter)
    assert limiter.rate == rate
    assert limiter.period == 1.0


def test_rate_limit_option_object_with_acquire_is_used_as_given() -> None:
    own = CountingLimiter()
    assert limiter_from_option(own) is own
    assert AsyncConvoso(TOKEN, base_url=BASE_URL, rate_limit=own).rate_limiter is own


@pytest.mark.parametrize(
    ("option", "error"),
    [
        ("5", ConfigurationError),
        (True, ConfigurationError),
        ([5], ConfigurationError),
        (object(), ConfigurationError),
        (0, ConfigurationError),
        (-3, ConfigurationError),
        (math.nan, ConfigurationError),
        (math.inf, ConfigurationError),
    ],
)
def test_rate_limit_option_refuses_anything_else(option: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        limiter_from_option(option)  # type: ignore[arg-type]
    # The client reports the same mistake, before any request.
    with pytest.raises(ConfigurationError):
        AsyncConvoso(TOKEN, base_url=BASE_URL, rate_limit=option)  # type: ignore[arg-type]


# --- pacing through the client ------------------------------------------------------------------


@pytest.mark.timing
@pytest.mark.anyio
async def test_client_rate_limit_keeps_the_server_side_rate_in_every_second() -> None:
    server = RecordingServer(latency=0.005)
    async with client_on(
        httpx.MockTransport(server.handle), max_concurrency=16, rate_limit=40
    ) as convoso:
        result = await convoso.campaigns.set_status_many(ids(100), True)

    assert result.ok
    assert len(server.arrivals) == 100
    # The limiter's window has 20 ms of slack for a request that arrives a little after its grant;
    # on a loaded machine one can arrive 100 ms late, squeezed against the next window. The exact
    # bound is pinned on the virtual clock below.
    assert most_in_window(server.arrivals, 1.0 - LATE_ARRIVAL) <= 40
    # Paced rather than bunched up: 100 requests at 40/s need more than two seconds.
    assert max(server.arrivals) - min(server.arrivals) >= 2.4


# --- the client-wide pause after 429 (and any answer with Retry-After) ---------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_pauses_every_task_of_the_client(status: int) -> None:
    server = RefusingServer(status, retry_after="1")
    campaign_ids = ids(60)
    async with client_on(httpx.MockTransport(server.handle), max_concurrency=8) as convoso:
        result = await convoso.campaigns.set_status_many(campaign_ids, True)

    assert sorted(result.succeeded) == sorted(campaign_ids)
    assert result.attempts == 61
    after = server.arrivals_after_refusal()
    # No task sent anything while the pause was in force: not the refused one, not the others.
    assert all(elapsed >= 0.9 for elapsed, _ in after), after
    retried = [elapsed for elapsed, campaign_id in after if campaign_id == server.refused_id]
    assert len(retried) == 1
    # Other tasks still had work when the pause began: they held it, not merely finished early.
    assert any(campaign_id != server.refused_id for _, campaign_id in after)


@pytest.mark.anyio
@pytest.mark.usefixtures("instant_retries")
async def test_testing_switch_turns_the_retry_after_pause_off() -> None:
    # 30 s asked for; with the switch on, neither the retry nor the other tasks wait for it.
    server = RefusingServer(429, retry_after="30", hold=0.0)
    campaign_ids = ids(20)
    async with client_on(httpx.MockTransport(server.handle), max_concurrency=4) as convoso:
        with anyio.fail_after(10):
            result = await convoso.campaigns.set_status_many(campaign_ids, True)

    assert sorted(result.succeeded) == sorted(campaign_ids)
    refused = [i for _, i in server.arrivals if i == server.refused_id]
    assert len(refused) == 2  # the 429 was still retried


# --- PauseGate ----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_pause_gate_extends_but_never_shortens() -> None:
    gate = PauseGate()
    assert gate.remaining == 0.0

    gate.pause_for(1.0)
    assert 0.9 < gate.remaining <= 1.0
    gate.pause_for(0.2)  # shorter than what is left: ignored
    assert gate.remaining > 0.9
    gate.pause_for(0)
    gate.pause_for(-5)
    assert gate.remaining > 0.9
    gate.pause_for(2.0)  # longer: extends
    assert 1.9 < gate.remaining <= 2.0


@pytest.mark.anyio
async def test_pause_gate_wait_returns_at_once_when_not_paused_and_after_a_pause() -> None:
    gate = PauseGate()
    with anyio.fail_after(5):
        await gate.wait()
    gate.pause_for(0.2)
    started = anyio.current_time()
    await gate.wait()
    assert anyio.current_time() - started >= 0.19
    assert gate.remaining == 0.0


# --- exact timings on trio's virtual clock ------------------------------------------------------


class TestOnAVirtualClock:
    """Exact times: trio's ``MockClock`` jumps to the next deadline whenever every task waits."""

    @pytest.fixture
    def anyio_backend(self) -> tuple[str, dict[str, object]]:
        return ("trio", {"clock": MockClock(autojump_threshold=0)})

    @pytest.mark.anyio
    async def test_limiter_reaches_its_rate_without_ever_exceeding_it(self) -> None:
        start = anyio.current_time()
        grants = await grant_times(Limiter(50), tasks=8, duration=10.0)

        assert most_in_window(grants) == 50
        assert len(grants) >= 0.98 * 50 * 10
        assert sum(1 for t in grants if t < start + 0.2) <= 11

    @pytest.mark.anyio
    async def test_limiter_with_a_period_of_a_minute(self) -> None:
        grants = await grant_times(Limiter(100, period=60), tasks=4, duration=150.0)

        assert most_in_window(grants, 60.0) <= 100
        assert len(grants) >= 240

    @pytest.mark.anyio
    async def test_an_idle_spell_is_not_spent_as_a_burst(self) -> None:
        limiter = Limiter(50)
        await grant_times(limiter, tasks=4, duration=0.5)
        await anyio.sleep(5.0)
        resumed = anyio.current_time()
        grants = await grant_times(limiter, tasks=8, duration=1.0)

        assert sum(1 for t in grants if t < resumed + 0.2) <= 11

    @pytest.mark.anyio
    async def test_cancelled_waiters_give_their_turn_back(self) -> None:
        limiter = Limiter(2)  # interval: (1 s plus the window slack) / 2
        interval = (1 + max(WINDOW_SLACK, MIN_SLACK_SECONDS)) / 2
        start = anyio.current_time()
        await limiter.acquire()

        # The first grant leaves a double gap (its request waits for a new
        # connection). The waiter asleep for the next slot is cancelled: the
        # slot stays free for the one after it.
        with anyio.move_on_after(0.1):
            await limiter.acquire()
        await limiter.acquire()
        assert anyio.current_time() - start == pytest.approx(2 * interval)

        # A waiter queued behind another is cancelled: the one after it moves up.
        granted: dict[str, float] = {}

        async def take(
            name: str, *, task_status: TaskStatus[anyio.CancelScope] = anyio.TASK_STATUS_IGNORED
        ) -> None:
            with anyio.CancelScope() as scope:
                task_status.started(scope)
                await limiter.acquire()
                granted[name] = anyio.current_time() - start

        async with anyio.create_task_group() as group:
            await group.start(take, "next")
            await anyio.sleep(0.01)
            queued = await group.start(take, "cancelled")
            await anyio.sleep(0.01)
            await group.start(take, "after")
            await anyio.sleep(0.1)
            queued.cancel()

        assert "cancelled" not in granted
        assert granted == {
            "next": pytest.approx(3 * interval),
            "after": pytest.approx(4 * interval),
        }

    @pytest.mark.anyio
    async def test_pause_gate_wait_follows_an_extension_made_while_waiting(self) -> None:
        gate = PauseGate()
        start = anyio.current_time()
        gate.pause_for(1.0)
        async with anyio.create_task_group() as group:
            group.start_soon(gate.wait)
            await anyio.sleep(0.5)
            gate.pause_for(1.0)  # now until 1.5
            gate.pause_for(0.1)  # would be 0.6: ignored
        assert anyio.current_time() - start == pytest.approx(1.5)
        assert gate.remaining == 0.0

    @pytest.mark.anyio
    @pytest.mark.parametrize(
        "rate_limit",
        [None, 10],
    )
    async def test_429_holds_every_request_until_retry_after_even_when_paced(
        self, rate_limit: int | None
    ) -> None:
        server = RefusingServer(429, retry_after="1", hold=0.0)
        campaign_ids = ids(20)
        async with client_on(
            httpx.MockTransport(server.handle), max_concurrency=4, rate_limit=rate_limit
        ) as convoso:
            result = await convoso.campaigns.set_status_many(campaign_ids, True)

        assert sorted(result.succeeded) == sorted(campaign_ids)
        after = server.arrivals_after_refusal()
        assert after, "nothing was left to send after the 429"
        early = [(round(elapsed, 3), i) for elapsed, i in after if elapsed < 1.0 - 1e-9]
        assert early == []
