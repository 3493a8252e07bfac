"""Network faults and server faults, through the real client over real loopback sockets.

Two matrices:

- every toxic of the fault proxy (latency, reset_peer, timeout, slicer, limit_data, slow_close,
  bandwidth), hitting a fraction of the connections with a fixed seed, x {search, set_status, a
  bulk change of 300}, on asyncio (the default aiohttp-backed transport) and on trio (httpx's own);
- every fault kind of the fake server (5xx, 429, slow, drop, bad JSON, bad shape), exhausting the
  retries or striking once, x the same three operations.

What must hold for every call: it ends in success or in a `ConvosoError` subclass, never any
other exception, and never later than the timeout budget the client was configured with. After
every bulk change, each id is in exactly one bucket, and the fake's state is the wanted one for
every id reported as succeeded.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Iterator
from typing import Literal

import anyio
import pytest
from faultproxy import FaultProxy, Toxic

from convoso_async import (
    APIConnectionError,
    APITimeoutError,
    AsyncConvoso,
    BatchResult,
    ConvosoError,
    NotSentError,
    RateLimitError,
    ResponseDecodeError,
    ServerError,
)
from convoso_async.testing import FakeConvoso, Fault, RecordedRequest

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("instant_retries")]

Operation = Literal["search", "set_status", "bulk"]
OPERATIONS: tuple[Operation, ...] = ("search", "set_status", "bulk")

#: Seconds per HTTP attempt: small, so that a hung connection costs little.
TIMEOUT = 0.5
MAX_RETRIES = 2
CONCURRENCY = 16
CAMPAIGNS = 300
#: The fake's seed (its campaigns' initial states).
SEED = 5
#: The proxy's seed. Chosen (see `test_the_toxic_seed_makes_every_toxic_strike_early`) so that
#: every toxic hits connection 0 or 1, which every operation opens: a toxic that must strike does
#: strike, whatever the timing and however the client reuses its connections.
TOXIC_SEED = 1198
PROBABILITY = 0.3
#: limit_data's byte count: inside the headers of every request (230 B and more) and of every
#: answer (136 B of headers and more) of this API, so the first exchange on a hit connection is
#: always cut. A larger count would cut only the connections that happen to carry that many bytes.
LIMIT = 100
#: The longest a non-stalled delivery through the matrix's toxics adds to one attempt
#: (latency up to 0.25 s; slicer and bandwidth deliver a 40 kB search in well under 0.5 s).
TOXIC_EXTRA = 0.5
#: Room for a loaded two-core CI machine; a hang shows up as minutes, not seconds.
SLACK = 10.0

#: Concurrent calls for the single-request operations: as many as the pool holds, so no call
#: waits for a connection, and enough that the seeded toxics hit some of them.
SEARCHES = 12
SINGLES = CONCURRENCY

# Network toxics only: the fake itself never fails here.
TOXICS: dict[str, Toxic] = {
    "latency": Toxic.latency(0.15, jitter=0.1, probability=PROBABILITY),
    "reset_peer": Toxic.reset_peer(probability=PROBABILITY),
    "reset_peer_upstream": Toxic.reset_peer(direction="upstream", probability=PROBABILITY),
    "timeout": Toxic.timeout(probability=PROBABILITY),
    "timeout_upstream": Toxic.timeout(direction="upstream", probability=PROBABILITY),
    "slicer": Toxic.slicer(128, 64, 0.001, probability=PROBABILITY),
    "limit_data": Toxic.limit_data(LIMIT, probability=PROBABILITY),
    "limit_data_upstream": Toxic.limit_data(LIMIT, direction="upstream", probability=PROBABILITY),
    "slow_close": Toxic.slow_close(0.3, probability=PROBABILITY),
    "bandwidth": Toxic.bandwidth(200_000, probability=PROBABILITY),
}
#: Toxics that break the first exchange on every connection they hit, and end that connection:
#: each connection they hit is one failed attempt, at least (a loaded machine may add timeouts).
DISRUPTIVE = {
    "reset_peer",
    "reset_peer_upstream",
    "timeout",
    "timeout_upstream",
    "limit_data",
    "limit_data_upstream",
}


def budget(sequential_calls: int, *, retries: int = MAX_RETRIES, timeout: float = TIMEOUT) -> float:
    """The longest ``sequential_calls`` calls may take, one after another, each fully retried.

    Every attempt is bounded by the timeout (plus what a toxic adds to a healthy delivery), retry
    waits are zero under `set_testing`, and a call makes ``retries + 1`` attempts at most.
    """
    return sequential_calls * (retries + 1) * (timeout + TOXIC_EXTRA) + SLACK


class RetryLog(logging.Handler):
    """Counts the client's "retrying POST ..." log records: one per failed attempt it retried."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.retries = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("retrying POST"):
            self.retries += 1


@pytest.fixture
def retry_log() -> Iterator[RetryLog]:
    logger = logging.getLogger("convoso_async")
    handler, level = RetryLog(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.fixture
def fake() -> FakeConvoso:
    return FakeConvoso(campaigns=CAMPAIGNS, seed=SEED)


@pytest.fixture
def fake_url(fake: FakeConvoso) -> Iterator[str]:
    """The fake served on loopback, on its own thread and loop."""
    with fake.serve_in_thread() as url:
        yield url


def upstream_of(url: str) -> tuple[str, int]:
    """``("127.0.0.1", PORT)`` from ``http://127.0.0.1:PORT/v1``."""
    host_port = url.split("//", 1)[1].split("/", 1)[0]
    host, _, port = host_port.rpartition(":")
    return host, int(port)


def client_for(
    base_url: str, *, retries: int = MAX_RETRIES, timeout: float = TIMEOUT, guards: bool = True
) -> AsyncConvoso:
    """A client on its default transport: aiohttp's on asyncio, httpx's own on trio."""
    return AsyncConvoso(
        FakeConvoso.TOKEN,
        base_url=base_url,
        timeout=timeout,
        max_retries=retries,
        max_concurrency=CONCURRENCY,
        circuit_breaker=guards,
        retry_budget=guards,
    )


class Calls:
    """Runs calls, each under its own hang budget, and sorts what they ended in."""

    def __init__(self, call_budget: float) -> None:
        self.call_budget = call_budget
        self.succeeded = 0
        self.errors: list[ConvosoError] = []
        self.strays: list[BaseException] = []  # anything that is not a ConvosoError

    async def run(self, call: Callable[[], Awaitable[object]]) -> bool:
        """Run ``call``; True if it succeeded. A budget overrun fails the test at once."""
        ok = False
        # move_on_after, not fail_after: a TimeoutError raised by the client itself is a stray
        # exception to report, not a budget overrun.
        with anyio.move_on_after(self.call_budget) as scope:
            try:
                await call()
            except ConvosoError as error:
                self.errors.append(error)
            except AssertionError:
                raise  # the test's own check inside the call, not the client's doing
            except Exception as error:
                self.strays.append(error)
            else:
                ok = True
                self.succeeded += 1
        if scope.cancelled_caught:
            pytest.fail(f"a call outlived its {self.call_budget:.1f}s timeout budget")
        return ok

    def check(self) -> None:
        assert self.strays == [], "exceptions outside the ConvosoError tree escaped"
        # The fake never fails here: whatever went wrong went wrong on the network.
        assert all(isinstance(e, APIConnectionError) for e in self.errors), self.errors


def check_accounting(result: BatchResult, targets: dict[str, bool], fake: FakeConvoso) -> None:
    """Each id in exactly one bucket; every reported success is the fake's real state."""
    buckets = (result.succeeded, result.failed, result.skipped, result.not_sent, result.unknown)
    every = [campaign_id for bucket in buckets for campaign_id in bucket]
    assert len(every) == len(set(every)), "an id is in two buckets, or twice in one"
    assert set(every) == set(targets)
    # The breaker (when on) may stop a batch: what it never sent is marked so.
    assert all(isinstance(e, NotSentError) for e in result.not_sent.values())
    succeeded = set(result.succeeded)
    statuses = fake.statuses()
    wrong = {cid for cid in succeeded if statuses[cid] != ("Y" if targets[cid] else "N")}
    assert wrong == set(), "reported as succeeded but not in the wanted state"


def flipped(fake: FakeConvoso) -> dict[str, bool]:
    """Every campaign's opposite state, so that every id of a bulk change must really change."""
    return {cid: status != "Y" for cid, status in fake.statuses().items()}


async def exercise(
    operation: Operation, client: AsyncConvoso, fake: FakeConvoso, *, retries: int = MAX_RETRIES
) -> tuple[Calls, BatchResult | None]:
    """Run ``operation`` under the current faults; return how its calls ended."""
    if operation == "search":
        calls = Calls(budget(1, retries=retries))

        async def search() -> None:
            campaigns = await client.campaigns.search()
            assert len(campaigns) == CAMPAIGNS

        async with anyio.create_task_group() as group:
            for _ in range(SEARCHES):
                group.start_soon(calls.run, search)
        return calls, None

    targets = flipped(fake)
    if operation == "set_status":
        calls = Calls(budget(1, retries=retries))
        outcomes: dict[str, bool] = {}

        async def set_one(campaign_id: str) -> None:
            outcomes[campaign_id] = await calls.run(
                lambda: client.campaigns.set_status(campaign_id, targets[campaign_id])
            )

        async with anyio.create_task_group() as group:
            for campaign_id in list(targets)[:SINGLES]:
                group.start_soon(set_one, campaign_id)
        statuses = fake.statuses()
        for campaign_id, ok in outcomes.items():
            if ok:
                assert statuses[campaign_id] == ("Y" if targets[campaign_id] else "N")
        return calls, None

    rounds = math.ceil(len(targets) / CONCURRENCY)
    calls = Calls(budget(rounds, retries=retries))
    results: list[BatchResult] = []

    async def bulk() -> None:
        results.append(await client.campaigns.apply_statuses(targets))

    await calls.run(bulk)
    calls.check()
    assert calls.succeeded == 1, "a bulk change reports per id; it must not raise"
    (result,) = results
    check_accounting(result, targets, fake)
    assert all(isinstance(e, APIConnectionError) for e in result.failed.values()), dict(
        result.failed
    )
    return calls, result


# -- network faults, through the fault proxy ------------------------------------------------


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize("toxic_name", list(TOXICS))
async def test_network_fault_ends_in_success_or_a_convoso_error_within_budget(
    anyio_backend: str,
    fake: FakeConvoso,
    fake_url: str,
    retry_log: RetryLog,
    toxic_name: str,
    operation: Operation,
) -> None:
    with FaultProxy(upstream=upstream_of(fake_url), seed=TOXIC_SEED) as proxy:
        name = proxy.add(TOXICS[toxic_name])
        async with client_for(proxy.url_for("/v1")) as client:
            calls, result = await exercise(operation, client, fake)
        hits = proxy.stats.hits.get(name, 0)

    calls.check()
    assert hits > 0, "the toxic never struck: the test proved nothing"
    if result is not None:
        assert len(result.succeeded) > 0
        # A failed attempt was retried, or was the last one of an id that failed.
        failed_attempts = result.retries + len(result.failed)
    else:
        assert calls.succeeded > 0
        failed_attempts = retry_log.retries + len(calls.errors)
    if toxic_name in DISRUPTIVE:
        assert failed_attempts >= hits, f"{hits} connections broken, {failed_attempts} failures"


@pytest.mark.parametrize("toxic_name", sorted(DISRUPTIVE))
async def test_without_retries_a_network_fault_fails_with_a_connection_error(
    anyio_backend: str, fake: FakeConvoso, fake_url: str, toxic_name: str
) -> None:
    # With no second attempt, every connection the toxic breaks is a failed id: the error path,
    # not only the retry path, is exercised, and every failure must still be accounted for.
    with FaultProxy(upstream=upstream_of(fake_url), seed=TOXIC_SEED) as proxy:
        name = proxy.add(TOXICS[toxic_name])
        async with client_for(proxy.url_for("/v1"), retries=0) as client:
            _, result = await exercise("bulk", client, fake, retries=0)
        hits = proxy.stats.hits.get(name, 0)

    assert result is not None
    assert hits > 0, "the toxic never struck: the test proved nothing"
    assert len(result.failed) >= hits, "each connection the toxic broke fails its id"
    assert result.retries == 0
    if toxic_name.startswith("timeout"):
        assert all(isinstance(e, APITimeoutError) for e in result.failed.values())


async def test_every_toxic_at_once_still_accounts_for_every_id(
    anyio_backend: str, fake: FakeConvoso, fake_url: str
) -> None:
    # Every toxic together, one retry: some ids exhaust their retries, and both the bulk result
    # and the streaming iterator must still report each id once, in the right state.
    with FaultProxy(upstream=upstream_of(fake_url), seed=TOXIC_SEED) as proxy:
        for toxic in TOXICS.values():
            proxy.add(toxic)
        async with client_for(proxy.url_for("/v1"), retries=1) as client:
            _, result = await exercise("bulk", client, fake, retries=1)
            assert result is not None
            assert result.retries > 0

            targets = flipped(fake)
            seen: list[str] = []
            stream_calls = Calls(budget(math.ceil(CAMPAIGNS / CONCURRENCY), retries=1))

            async def consume() -> None:
                async for outcome in client.campaigns.iter_set_status(list(targets), True):
                    seen.append(outcome.campaign_id)
                    assert outcome.error is None or isinstance(
                        outcome.error, (APIConnectionError, NotSentError)
                    )
                    if outcome.ok:
                        assert fake.campaign_status(outcome.campaign_id) == "Y"

            await stream_calls.run(consume)
        stats = proxy.stats

    stream_calls.check()
    assert stream_calls.succeeded == 1
    assert sorted(seen) == sorted(targets), "the stream reports every id exactly once"
    assert len(stats.hits) == len(TOXICS), f"not every toxic struck: {stats.hits}"


async def test_a_trickling_answer_cannot_outlast_the_timeout_budget(
    anyio_backend: str, fake_url: str
) -> None:
    # 200-byte pieces 0.3 s apart: every read returns within the 0.5 s timeout, yet the 40 kB
    # search would take a minute. The docstring promises "seconds allowed for each HTTP attempt".
    with FaultProxy(upstream=upstream_of(fake_url), seed=TOXIC_SEED) as proxy:
        proxy.add(Toxic.slicer(200, 0, 0.3))
        async with client_for(proxy.url_for("/v1"), retries=1) as client:
            limit = 2 * TIMEOUT + 3.0
            with anyio.move_on_after(limit) as scope:
                with pytest.raises(APITimeoutError):
                    await client.campaigns.search()
            assert not scope.cancelled_caught, f"search still running after {limit:.1f}s"


def test_the_toxic_seed_makes_every_toxic_strike_early() -> None:
    # Every operation opens connections 0 and 1 (it starts 12 or more calls at once), so each
    # toxic of the matrix strikes in every run.
    for toxic in TOXICS.values():
        assert toxic.strikes(TOXIC_SEED, 0) or toxic.strikes(TOXIC_SEED, 1), toxic.label
    # All at once: a connection whose request an upstream toxic broke never carries an answer,
    # so each downstream toxic needs an early connection that no upstream one broke; the bulk
    # change opens 16 connections at once.
    upstream = [t for t in TOXICS.values() if t.direction == "upstream"]
    answered = [n for n in range(5) if not any(t.strikes(TOXIC_SEED, n) for t in upstream)]
    for toxic in TOXICS.values():
        early = range(5) if toxic.direction == "upstream" else answered
        assert any(toxic.strikes(TOXIC_SEED, n) for n in early), toxic.label


# -- the fake server's own faults, over real sockets -----------------------------------------

SERVER_FAULTS = ["status", "rate_limit", "slow", "drop", "bad_json", "bad_shape"]
#: What a call ends in once every attempt met the fault.
EXHAUSTED_ERROR: dict[str, type[ConvosoError]] = {
    "status": ServerError,
    "rate_limit": RateLimitError,
    "slow": APITimeoutError,
    "drop": APIConnectionError,
    "bad_json": ResponseDecodeError,
    "bad_shape": ResponseDecodeError,
}
RETRIED = {"status", "rate_limit", "slow", "drop"}
#: Short timeout and a slow fault well past it: each slow attempt costs 0.3 s.
FAULT_TIMEOUT = 0.3
SLOW_DELAY = 1.0
#: Where a slow fault strikes once, the retry and the other ids' attempts must not time out:
#: more room for them on a loaded machine, at 0.3 s more for the one slow attempt.
SLOW_ONCE_TIMEOUT = 0.6
#: Every other fault answers (or hangs up) at once, so the timeout is never waited out; a long one
#: keeps a healthy attempt on a loaded machine from ending in a timeout instead of the fault's
#: own error.
ANSWERED_TIMEOUT = 10.0
FAULT_RETRIES = 1
BULK_IDS = 24


def fault_timeout(kind: str, *, once: bool = False) -> float:
    if kind != "slow":
        return ANSWERED_TIMEOUT
    return SLOW_ONCE_TIMEOUT if once else FAULT_TIMEOUT


def server_fault(kind: str, *, path: str, times: int | None) -> Fault:
    delay = SLOW_DELAY if kind == "slow" else 0.0
    return Fault(kind, path=path, times=times, delay=delay)  # type: ignore[arg-type]


async def requests_seen(fake: FakeConvoso, path: str, *, at_least: int) -> list[RecordedRequest]:
    """The requests for ``path`` the fake has seen, once it has seen ``at_least`` (or 5 s passed),
    and after a further moment for any extra one to show. (The fake records in its own thread:
    there is nothing to wait on but the record itself.)"""
    for _ in range(500):
        if sum(r.path == path for r in fake.requests) >= at_least:
            break
        await anyio.sleep(0.01)
    await anyio.sleep(0.05)
    return [r for r in fake.requests if r.path == path]


def path_of(operation: Operation) -> str:
    return "/campaigns/search" if operation == "search" else "/campaigns/status"


def single_call(
    client: AsyncConvoso, operation: Operation, targets: dict[str, bool]
) -> Callable[[], Awaitable[object]]:
    """The one request ``operation`` stands for: a search, or a status change of ``1001``."""
    if operation == "search":
        return client.campaigns.search
    return lambda: client.campaigns.set_status("1001", targets["1001"])


def check_exhausted_error(kind: str, error: Exception) -> None:
    expected = EXHAUSTED_ERROR[kind]
    assert isinstance(error, expected), repr(error)
    if kind == "drop":
        assert not isinstance(error, APITimeoutError), "a hang-up is not a timeout"
    if kind == "status":
        assert isinstance(error, ServerError)
        assert error.status_code == 503
    if kind == "rate_limit":
        assert isinstance(error, RateLimitError)
        assert error.status_code == 429
        assert error.retry_after == 1.0  # the fake's Retry-After: 1


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize("kind", SERVER_FAULTS)
async def test_server_fault_on_every_attempt_ends_in_its_error_type(
    anyio_backend: str, kind: str, operation: Operation
) -> None:
    fake = FakeConvoso(campaigns=BULK_IDS)
    fake.add_fault(server_fault(kind, path=path_of(operation), times=None))
    before = fake.statuses()
    targets = flipped(fake)
    attempts = FAULT_RETRIES + 1 if kind in RETRIED else 1
    timeout = fault_timeout(kind)
    with fake.serve_in_thread() as url:
        # Every id exhausting its own retries is the old behaviour, kept here to pin the error
        # types; with the guards on, a total outage opens the breaker (test_breaker.py).
        async with client_for(url, retries=FAULT_RETRIES, timeout=timeout, guards=False) as client:
            call_budget = budget(1, retries=FAULT_RETRIES, timeout=timeout)
            if operation == "bulk":
                rounds = math.ceil(BULK_IDS / CONCURRENCY)
                with anyio.fail_after(budget(rounds, retries=FAULT_RETRIES, timeout=timeout)):
                    result = await client.campaigns.apply_statuses(targets)
                check_accounting(result, targets, fake)
                assert set(result.failed) == set(targets)
                for error in result.failed.values():
                    check_exhausted_error(kind, error)
                assert result.attempts == attempts * BULK_IDS
            else:
                single = single_call(client, operation, targets)
                with anyio.fail_after(call_budget), pytest.raises(ConvosoError) as caught:
                    await single()
                check_exhausted_error(kind, caught.value)
                # A timed-out attempt's bytes were sent; the server's thread, on a loaded
                # machine, may read them only after the client gave up: wait for it to.
                sent = await requests_seen(fake, path_of(operation), at_least=attempts)
                assert len(sent) == attempts, "retried exactly max_retries times, or not at all"

    if kind != "slow":
        # A faulted request never reaches the API's state (a slow one does, and then times out:
        # its outcome is unknown to the client, which is what APITimeoutError says).
        assert fake.statuses() == before


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize("kind", SERVER_FAULTS)
async def test_server_fault_striking_once_is_retried_away_or_fails_alone(
    anyio_backend: str, kind: str, operation: Operation
) -> None:
    fake = FakeConvoso(campaigns=BULK_IDS)
    fault = fake.add_fault(server_fault(kind, path=path_of(operation), times=1))
    targets = flipped(fake)
    timeout = fault_timeout(kind, once=True)
    with fake.serve_in_thread() as url:
        # Every id exhausting its own retries is the old behaviour, kept here to pin the error
        # types; with the guards on, a total outage opens the breaker (test_breaker.py).
        async with client_for(url, retries=FAULT_RETRIES, timeout=timeout, guards=False) as client:
            call_budget = budget(1, retries=FAULT_RETRIES, timeout=timeout)
            if operation == "bulk":
                rounds = math.ceil(BULK_IDS / CONCURRENCY)
                with anyio.fail_after(budget(rounds, retries=FAULT_RETRIES, timeout=timeout)):
                    result = await client.campaigns.apply_statuses(targets)
                check_accounting(result, targets, fake)
                if kind in RETRIED:
                    assert result.ok, dict(result.failed)
                    assert result.retries == 1
                else:
                    # Not retried: exactly the one id that met the fault fails, the rest succeed.
                    assert len(result.failed) == 1
                    (error,) = result.failed.values()
                    assert isinstance(error, ResponseDecodeError)
                    assert len(result.succeeded) == BULK_IDS - 1
            elif operation == "search":
                with anyio.fail_after(call_budget):
                    if kind in RETRIED:
                        assert len(await client.campaigns.search()) == BULK_IDS
                    else:
                        with pytest.raises(ResponseDecodeError):
                            await client.campaigns.search()
            else:
                with anyio.fail_after(call_budget):
                    if kind in RETRIED:
                        await client.campaigns.set_status("1001", targets["1001"])
                        assert fake.campaign_status("1001") == ("Y" if targets["1001"] else "N")
                    else:
                        with pytest.raises(ResponseDecodeError):
                            await client.campaigns.set_status("1001", targets["1001"])
    assert fault.hits == 1
