"""The retry budget and the circuit breaker, against the fake served on loopback.

Each test of a failure mode says what a client without the guards would send (the issue's
table) and pins what it sends now: what reached the server, and where every id ended.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import anyio
import pytest
from faultproxy import FaultProxy, Toxic

from convoso_async import (
    AsyncConvoso,
    AuthenticationError,
    BatchResult,
    CircuitBreaker,
    CircuitOpenError,
    ConfigurationError,
    NotSentError,
    PermissionDeniedError,
    RateLimitError,
    RetryBudget,
    ServerError,
)
from convoso_async.testing import FakeConvoso, Fault

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("instant_retries")]

STATUS = "/campaigns/status"
#: Only a guard against a hang: no test here should come near it.
HANG_GUARD = 60.0


def ids_of(count: int) -> list[str]:
    return [str(1001 + n) for n in range(count)]


def sent_ids(fake: FakeConvoso) -> set[str]:
    return {r.campaign_id for r in fake.requests if r.path == STATUS and r.campaign_id}


def check_partition(result: BatchResult, ids: Iterable[str]) -> None:
    """Every id in exactly one of the five buckets."""
    places = [
        *result.succeeded,
        *result.failed,
        *result.skipped,
        *result.not_sent,
        *result.unknown,
    ]
    assert sorted(places) == sorted(set(ids))


def upstream_of(url: str) -> tuple[str, int]:
    host, _, port = url.split("//", 1)[1].split("/", 1)[0].rpartition(":")
    return host, int(port)


# -- the table, row by row ---------------------------------------------------------------


async def test_503_everywhere_opens_the_breaker_and_the_rest_fail_unsent(
    anyio_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Before: 200 ids x 4 attempts = 800 requests to a server that is down.
    caplog.set_level(logging.INFO, logger="convoso_async")
    fake = FakeConvoso(campaigns=200)
    fake.add_fault(Fault("status", status=503))
    ids = ids_of(200)
    async with fake.serve() as url, AsyncConvoso(fake.TOKEN, base_url=url, max_retries=3) as c:
        with anyio.fail_after(HANG_GUARD):
            result = await c.campaigns.set_status_many(ids, False)
        assert c.circuit_breaker is not None
        assert c.circuit_breaker.state == "open"
        threshold = c.circuit_breaker.failure_threshold

    check_partition(result, ids)
    # The run that opened it, plus what was already in flight (8) when it opened.
    assert threshold <= len(fake.requests) <= threshold + 8
    assert set(result.failed) == sent_ids(fake)
    assert all(isinstance(e, ServerError) for e in result.failed.values())
    assert len(result.not_sent) == 200 - len(result.failed)
    assert all(isinstance(e, CircuitOpenError) for e in result.not_sent.values())
    assert not sent_ids(fake) & set(result.not_sent)
    assert "nothing was sent" in str(next(iter(result.not_sent.values())))
    assert isinstance(result.stopped_by, CircuitOpenError)
    assert not result.ok
    assert "not sent" in result.summary()
    assert any("circuit breaker open" in r.getMessage() for r in caplog.records)


async def test_a_server_that_never_answers_opens_the_breaker_after_two_rounds(
    anyio_backend: str,
) -> None:
    # Before: 120 ids, timeout 0.5, 8 in flight took 23 s (every id timed out four times).
    fake = FakeConvoso(campaigns=120)
    ids = ids_of(120)
    with fake.serve_in_thread() as url, FaultProxy(upstream=upstream_of(url), seed=1) as proxy:
        proxy.add(Toxic.timeout())  # accepts the connection, passes the request, never answers
        async with AsyncConvoso(
            fake.TOKEN, base_url=proxy.url_for("/v1"), timeout=0.3, max_concurrency=8
        ) as c:
            with anyio.fail_after(HANG_GUARD):
                result = await c.campaigns.set_status_many(ids, True)

    check_partition(result, ids)
    # 8 time out together (8 failures), their 8 retries time out (16 >= 10): open.
    assert len(fake.requests) <= 8 * 3
    assert len(result.failed) <= 8
    assert len(result.not_sent) >= 120 - 8
    assert all(isinstance(e, CircuitOpenError) for e in result.not_sent.values())
    assert not sent_ids(fake) & set(result.not_sent)


@pytest.mark.parametrize(
    ("token", "error"),
    [("wrong-token-12345", AuthenticationError), ("readonly-token-1", PermissionDeniedError)],
)
async def test_a_rejected_token_stops_the_batch_and_marks_the_rest_not_sent(
    anyio_backend: str, token: str, error: type[Exception]
) -> None:
    # Before: all 300 sent, each answered with the same refusal.
    fake = FakeConvoso(campaigns=300, readonly_tokens=["readonly-token-1"])
    before = fake.statuses()
    ids = ids_of(300)
    async with fake.serve() as url, AsyncConvoso(token, base_url=url, max_concurrency=8) as c:
        result = await c.campaigns.set_status_many(ids, False)

    check_partition(result, ids)
    assert len(fake.requests) <= 8  # only what was in flight when the first refusal came
    assert set(result.failed) == sent_ids(fake)
    assert all(isinstance(e, error) for e in result.failed.values())
    assert len(result.not_sent) == 300 - len(result.failed)
    # The rest "fail with that error", the very answer that stopped the batch.
    assert {id(e) for e in result.not_sent.values()} == {id(result.stopped_by)}
    assert isinstance(result.stopped_by, error)
    assert fake.statuses() == before


# -- what must not open it, and what closes it -----------------------------------------------------


async def test_a_partial_outage_never_opens_the_breaker_and_every_id_succeeds(
    anyio_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The soak's mix at a 10% fault rate: 503s, dropped connections, late answers.
    caplog.set_level(logging.WARNING, logger="convoso_async")
    fake = FakeConvoso(campaigns=1500, seed=7)
    fake.add_fault(Fault("status", status=503, probability=0.05))
    fake.add_fault(Fault("drop", probability=0.035))
    fake.add_fault(Fault("slow", delay=1.5, probability=0.015))
    ids = ids_of(1500)
    async with (
        fake.serve() as url,
        # max_retries=3 leaves an id failed when all four attempts meet a fault
        # (1e-4 an id: one run in seven of 1,500 ids); 8 makes that 1e-9, so a
        # failure here is the breaker's or the budget's doing, not chance's.
        AsyncConvoso(fake.TOKEN, base_url=url, timeout=1.0, max_concurrency=32, max_retries=8) as c,
    ):
        with anyio.fail_after(HANG_GUARD):
            result = await c.campaigns.set_status_many(ids, False)
        assert c.circuit_breaker is not None
        assert c.circuit_breaker.state == "closed"
        assert c.retry_budget is not None
        assert c.retry_budget.tokens >= 1

    faulted = sum(1 for r in fake.requests if r.fault is not None)
    assert faulted > 100, "the faults never struck: the test proved nothing"
    assert result.ok, result.summary()
    assert sorted(result.succeeded) == sorted(ids)
    assert set(fake.statuses().values()) == {"N"}
    assert not any("circuit breaker" in r.getMessage() for r in caplog.records)


async def test_the_breaker_closes_when_the_service_comes_back_mid_stream(
    anyio_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="convoso_async")
    fake = FakeConvoso(campaigns=60)
    outage = fake.add_fault(Fault("status", status=503))
    breaker = CircuitBreaker(failure_threshold=3, cooldown=0.3)
    before = fake.statuses()
    kinds: list[str] = []
    by_kind: dict[str, list[str]] = {"succeeded": [], "not sent": [], "failed": []}
    async with (
        fake.serve() as url,
        AsyncConvoso(
            fake.TOKEN, base_url=url, max_retries=0, max_concurrency=2, circuit_breaker=breaker
        ) as c,
    ):
        with anyio.fail_after(HANG_GUARD):
            async for outcome in c.campaigns.iter_set_status(ids_of(60), False):
                if outcome.ok:
                    kinds.append("succeeded")
                elif not outcome.sent:
                    assert isinstance(outcome.error, CircuitOpenError)
                    kinds.append("not sent")
                    fake.clear_faults()  # the service is back; the breaker does not know yet
                else:
                    kinds.append("failed")
                by_kind[kinds[-1]].append(outcome.campaign_id)
                await anyio.sleep(0.02)  # a slow consumer: ids are taken at its pace
        assert breaker.state == "closed"

    assert outage.hits >= 3
    first_ok = kinds.index("succeeded")
    assert "failed" in kinds[:first_ok]
    assert "not sent" in kinds[:first_ok]
    assert set(kinds[first_ok:]) == {"succeeded"}, kinds
    assert len(kinds) == 60
    # The probe and everything after it really changed state at the server; the rest did not.
    after = fake.statuses()
    assert {after[i] for i in by_kind["succeeded"]} == {"N"}
    assert all(after[i] == before[i] for i in by_kind["not sent"] + by_kind["failed"])
    messages = [r.getMessage() for r in caplog.records]
    assert any("circuit breaker open" in m for m in messages)
    assert any("half-open" in m for m in messages)
    assert any("circuit breaker closed" in m for m in messages)


async def test_a_failed_probe_opens_the_breaker_again(anyio_backend: str) -> None:
    fake = FakeConvoso(campaigns=3)
    fake.add_fault(Fault("status", status=502))
    breaker = CircuitBreaker(failure_threshold=2, cooldown=0.2)
    async with (
        fake.serve() as url,
        AsyncConvoso(fake.TOKEN, base_url=url, max_retries=1, circuit_breaker=breaker) as c,
    ):
        with pytest.raises(ServerError):
            await c.campaigns.activate("1001")  # two failures: open
        assert breaker.state == "open"
        with pytest.raises(CircuitOpenError) as refused:
            await c.campaigns.activate("1002")
        assert 0 < refused.value.retry_in <= 0.2
        before = len(fake.requests)
        await anyio.sleep(0.25)
        with pytest.raises(ServerError):
            await c.campaigns.activate("1002")  # the probe: one request, no retry
        assert len(fake.requests) == before + 1
        assert breaker.state == "open"
        with pytest.raises(CircuitOpenError):
            await c.campaigns.activate("1003")
        assert len(fake.requests) == before + 1


async def test_with_options_copies_and_concurrent_batches_share_one_breaker(
    anyio_backend: str,
) -> None:
    fake = FakeConvoso(campaigns=40)
    fake.add_fault(Fault("status", status=503))
    async with fake.serve() as url, AsyncConvoso(fake.TOKEN, base_url=url) as c:
        patient = c.with_options(timeout=5, max_retries=5)
        assert patient.circuit_breaker is c.circuit_breaker
        assert patient.retry_budget is c.retry_budget
        results: list[BatchResult] = []

        async def batch(client: AsyncConvoso, ids: list[str]) -> None:
            results.append(await client.campaigns.set_status_many(ids, True))

        async with anyio.create_task_group() as group:
            group.start_soon(batch, c, ids_of(40)[:20])
            group.start_soon(batch, patient, ids_of(40)[20:])
        sent = len(fake.requests)
        with pytest.raises(CircuitOpenError):
            await c.campaigns.activate("1001")
        assert len(fake.requests) == sent
        assert c.circuit_breaker is not None
        threshold = c.circuit_breaker.failure_threshold
    # One run of failures across both batches opened it for both.
    assert sent <= threshold + 2 * 8
    assert sum(len(r.not_sent) for r in results) >= 40 - sent


# -- the retry budget ------------------------------------------------------------------------------


async def test_the_retry_budget_stops_retries_that_do_not_pay(
    anyio_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="convoso_async")

    async def run(budget: RetryBudget | bool) -> tuple[int, int, BatchResult]:
        fake = FakeConvoso(campaigns=300, seed=3)
        fake.add_fault(Fault("status", status=503, probability=0.7))
        async with (
            fake.serve() as url,
            AsyncConvoso(
                fake.TOKEN,
                base_url=url,
                max_retries=3,
                max_concurrency=1,  # one request at a time: the bound below is exact
                circuit_breaker=False,
                retry_budget=budget,
            ) as c,
        ):
            result = await c.campaigns.set_status_many(ids_of(300), False)
        answered = sum(1 for r in fake.requests if r.fault is None)
        return len(fake.requests), answered, result

    budget = RetryBudget(tokens=10, refill=0.5)
    requests, answered, result = await run(budget)
    retries = requests - 300
    # Every retry took a token: at most the bucket plus what the successes gave back.
    assert retries <= 10 + 0.5 * answered
    check_partition(result, ids_of(300))
    assert not result.not_sent  # the budget never refuses a first attempt

    unguarded_requests, _, _ = await run(False)
    assert unguarded_requests - 300 > 2 * retries
    assert any("retry budget spent" in r.getMessage() for r in caplog.records)


async def test_429s_neither_spend_the_budget_nor_open_the_breaker(anyio_backend: str) -> None:
    fake = FakeConvoso(campaigns=4)
    fake.add_fault(Fault("rate_limit", retry_after=0.0, times=12))
    breaker = CircuitBreaker(failure_threshold=2)
    budget = RetryBudget(tokens=1)
    async with (
        fake.serve() as url,
        AsyncConvoso(
            fake.TOKEN,
            base_url=url,
            max_retries=3,
            max_concurrency=1,
            circuit_breaker=breaker,
            retry_budget=budget,
        ) as c,
    ):
        result = await c.campaigns.set_status_many(ids_of(4), True)
    assert len(result.failed) == 3  # three ids used up their retries on 429s
    assert all(isinstance(e, RateLimitError) for e in result.failed.values())
    assert result.succeeded == ("1004",)
    assert breaker.state == "closed"
    assert budget.tokens == 1


async def test_guards_can_be_tuned_or_turned_off(anyio_backend: str) -> None:
    fake = FakeConvoso(campaigns=30)
    fake.add_fault(Fault("status", status=503))
    async with (
        fake.serve() as url,
        AsyncConvoso(
            fake.TOKEN, base_url=url, max_retries=1, circuit_breaker=False, retry_budget=False
        ) as c,
    ):
        assert c.circuit_breaker is None
        assert c.retry_budget is None
        result = await c.campaigns.set_status_many(ids_of(30), True)
    assert len(fake.requests) == 60  # the old behaviour: every id, every retry
    assert len(result.failed) == 30
    assert not result.not_sent


def test_bad_guard_options_are_refused_before_anything_is_sent() -> None:
    with pytest.raises(ConfigurationError, match="circuit_breaker"):
        AsyncConvoso("t" * 12, circuit_breaker="yes")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="retry_budget"):
        AsyncConvoso("t" * 12, retry_budget=10)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="failure_threshold"):
        CircuitBreaker(failure_threshold=0)
    with pytest.raises(ConfigurationError, match="failure_threshold"):
        CircuitBreaker(failure_threshold=2.5)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="cooldown"):
        CircuitBreaker(cooldown=float("inf"))
    with pytest.raises(ConfigurationError, match="tokens"):
        RetryBudget(tokens=0)
    with pytest.raises(ConfigurationError, match="refill"):
        RetryBudget(refill=-1)
    assert issubclass(CircuitOpenError, NotSentError)


def test_the_default_breaker_outlasts_two_rounds_of_requests_in_flight() -> None:
    # A stall times out every request in flight at once: those failures are one
    # event, so the default run to open is at least two full rounds of them.
    assert AsyncConvoso("t" * 20).circuit_breaker.failure_threshold == 16  # type: ignore[union-attr]
    wide = AsyncConvoso("t" * 20, max_concurrency=32)
    assert wide.circuit_breaker is not None
    assert wide.circuit_breaker.failure_threshold == 64
    narrow = AsyncConvoso("t" * 20, max_concurrency=2)
    assert narrow.circuit_breaker is not None
    assert narrow.circuit_breaker.failure_threshold == CircuitBreaker().failure_threshold == 10
    own = AsyncConvoso("t" * 20, max_concurrency=32, circuit_breaker=CircuitBreaker(5))
    assert own.circuit_breaker is not None
    assert own.circuit_breaker.failure_threshold == 5
