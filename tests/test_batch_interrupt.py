"""Work that stops early is accounted for: deadlines, cancellation, a consumer that leaves.

Against the fake served on loopback. The fake applies a change when the request arrives and
only then waits out its latency, so a request cancelled in flight may well have been applied:
that is what ``unknown`` means, and why every id the server saw must be findable afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re

import anyio
import pytest

from convoso_async import (
    AsyncConvoso,
    AuthenticationError,
    BatchError,
    BatchProgress,
    BatchResult,
    NotSentError,
)
from convoso_async.testing import FakeConvoso, Fault

pytestmark = pytest.mark.anyio

STATUS = "/campaigns/status"
HANG_GUARD = 60.0
_AUDIT = re.compile(r"campaign=(\S+) wanted=\S+ outcome=(\S+)")


def ids_of(count: int) -> list[str]:
    return [str(1001 + n) for n in range(count)]


def seen_by_server(fake: FakeConvoso) -> set[str]:
    return {r.campaign_id for r in fake.requests if r.path == STATUS and r.campaign_id}


def audit(caplog: pytest.LogCaptureFixture) -> dict[str, list[str]]:
    """campaign id -> the outcomes of its audit lines, in order."""
    lines: dict[str, list[str]] = {}
    for record in caplog.records:
        if record.name == "convoso_async.audit":
            found = _AUDIT.search(record.getMessage())
            assert found is not None
            lines.setdefault(found[1], []).append(found[2])
    return lines


def check_partition(result: BatchResult, ids: list[str]) -> None:
    places = [
        *result.succeeded,
        *result.failed,
        *result.skipped,
        *result.not_sent,
        *result.unknown,
    ]
    assert sorted(places) == sorted(ids)


def check_server_side(result: BatchResult, fake: FakeConvoso) -> None:
    """What reached the server is succeeded, failed or unknown; nothing not-sent reached it.

    ``unknown`` may also hold an id cancelled on its way out (still connecting, say): unknown
    means "may have been applied", never "was not sent".
    """
    seen = seen_by_server(fake)
    assert seen <= set(result.succeeded) | set(result.failed) | set(result.unknown)
    assert set(result.succeeded) | set(result.failed) <= seen
    assert not seen & set(result.not_sent)


# -- deadline ------------------------------------------------------------------------------------


async def test_a_deadline_returns_a_partial_result_with_every_id_accounted(
    anyio_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="convoso_async.audit")
    fake = FakeConvoso(campaigns=200, latency=0.1)
    ids = ids_of(200)
    # The first two are answered long after the deadline: sent at once, they are surely in
    # flight when it passes, whatever the machine's load (the other six workers go on).
    slow = set(ids[:2])
    for campaign_id in slow:
        fake.add_fault(Fault("slow", campaign_id=campaign_id, delay=3.0))
    async with fake.serve() as url, AsyncConvoso(fake.TOKEN, base_url=url, max_concurrency=8) as c:
        with anyio.fail_after(HANG_GUARD):
            result = await c.campaigns.set_status_many(ids, False, deadline=0.55)

    check_partition(result, ids)
    check_server_side(result, fake)
    assert result.succeeded, "some ids must have finished before the deadline"
    assert slow <= set(result.unknown)
    assert len(result.unknown) <= 8
    assert len(result.not_sent) >= 100
    assert all(
        isinstance(e, NotSentError) and e.reason == "deadline" for e in result.not_sent.values()
    )
    assert isinstance(result.stopped_by, NotSentError)
    assert not result.ok
    lines = audit(caplog)
    assert set(lines) == set(ids)  # one line per id, whatever bucket it ended in
    assert all(len(outcomes) == 1 for outcomes in lines.values())
    assert {i for i, o in lines.items() if o == ["unknown"]} == set(result.unknown)
    assert {i for i, o in lines.items() if o == ["not_sent"]} == set(result.not_sent)
    summary = result.summary()
    for bucket in ("succeeded", "failed", "skipped", "not sent", "unknown"):
        assert bucket in summary
    with pytest.raises(BatchError) as raised:
        result.raise_for_failures()
    assert set(raised.value.failures) == set(result.not_sent) | set(result.unknown)
    assert set(raised.value.unknown) == set(result.unknown)


async def test_a_deadline_that_is_not_reached_changes_nothing(anyio_backend: str) -> None:
    fake = FakeConvoso(campaigns=20)
    async with fake.serve() as url, AsyncConvoso(fake.TOKEN, base_url=url) as c:
        result = await c.campaigns.apply_statuses(dict.fromkeys(ids_of(20), True), deadline=30)
    assert result.ok
    assert result.stopped_by is None
    assert not result.not_sent
    assert not result.unknown


@pytest.mark.parametrize("deadline", [0, -1, float("nan"), float("inf"), "5", True])
async def test_a_bad_deadline_is_refused_before_anything_is_sent(
    anyio_backend: str, deadline: object
) -> None:
    fake = FakeConvoso(campaigns=2)
    async with fake.serve() as url, AsyncConvoso(fake.TOKEN, base_url=url) as c:
        with pytest.raises((TypeError, ValueError), match="deadline"):
            await c.campaigns.set_status_many(["1001"], True, deadline=deadline)  # type: ignore[arg-type]
    assert fake.requests == []


# -- cancellation by the caller ----------------------------------------------------------------


async def test_a_cancelled_batch_audits_every_id_the_server_saw(
    anyio_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="convoso_async.audit")
    fake = FakeConvoso(campaigns=300, latency=0.1)
    ids = ids_of(300)
    partial: list[BatchResult] = []
    async with fake.serve() as url, AsyncConvoso(fake.TOKEN, base_url=url, max_concurrency=8) as c:
        with anyio.CancelScope() as scope:

            def cancel_after_16(progress: BatchProgress) -> None:
                # After a count of outcomes, not a time: the other workers are then in flight
                # however loaded the machine is.
                if progress.done >= 16:
                    scope.cancel()

            await c.campaigns.set_status_many(
                ids, True, on_progress=cancel_after_16, on_interrupt=partial.append
            )
            pytest.fail("the cancellation must propagate, not return a result")
    assert scope.cancelled_caught

    (result,) = partial
    check_partition(result, ids)
    check_server_side(result, fake)
    assert 1 <= len(result.unknown) <= 8
    assert all(e.reason == "interrupted" for e in result.not_sent.values())  # type: ignore[attr-defined]
    lines = audit(caplog)
    seen = seen_by_server(fake)
    assert seen <= set(lines), "an id that reached the server has no audit line"
    for campaign_id in seen:
        assert lines[campaign_id][-1] in ("succeeded", "failed", "unknown")
    assert {i for i, o in lines.items() if o == ["unknown"]} == set(result.unknown)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_asyncio_wait_for_around_a_batch_leaves_an_audit_line_for_each_sent_id(
    anyio_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="convoso_async.audit")
    fake = FakeConvoso(campaigns=120, latency=0.1)
    progress: list[BatchProgress] = []
    async with fake.serve() as url, AsyncConvoso(fake.TOKEN, base_url=url) as c:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(
                c.campaigns.set_status_many(ids_of(120), False, on_progress=progress.append),
                timeout=1.0,
            )
    lines = audit(caplog)
    seen = seen_by_server(fake)
    assert seen
    assert seen <= set(lines)
    # Whatever reached the server ended succeeded or unknown, never "not sent". (An unknown id
    # need not have reached it: cancelled while still connecting, say, under load.)
    assert all(lines[i][-1] in ("succeeded", "unknown") for i in seen)
    unknown = {i for i, o in lines.items() if o == ["unknown"]}
    assert unknown
    assert progress[-1].done == progress[-1].succeeded  # nothing else finished before the cut


# -- iter_set_status: backpressure, leaving early, a fatal answer ---------------------------------


async def test_a_slow_consumer_bounds_the_outcomes_waiting_and_slows_the_sending(
    anyio_backend: str,
) -> None:
    limit = 8
    fake = FakeConvoso(campaigns=2000)
    consumed = 0
    ahead: list[int] = []
    async with fake.serve() as url, AsyncConvoso(fake.TOKEN, base_url=url) as c:
        outcomes = c.campaigns.iter_set_status(ids_of(2000), False, max_concurrency=limit)
        async with contextlib.aclosing(outcomes) as stream:
            async for _ in stream:
                consumed += 1
                await anyio.sleep(0.005)  # far slower than the loopback server
                # Sent and not yet taken by this consumer (the one in hand counted as taken).
                ahead.append(len(fake.requests) - consumed)
                if consumed == 150:
                    break
        stopped_at = len(fake.requests)
        await anyio.sleep(0.3)
        assert len(fake.requests) == stopped_at, "requests went on after the consumer left"

    # Unbounded, the server would be hundreds of requests ahead of the consumer by now.
    assert max(ahead) <= limit
    assert stopped_at <= 150 + limit


async def test_leaving_iter_set_status_early_audits_the_in_flight_ids_as_unknown(
    anyio_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="convoso_async.audit")
    fake = FakeConvoso(campaigns=100, latency=0.02)
    # One id whose answer comes long after the consumer leaves: surely in flight then.
    fake.add_fault(Fault("slow", campaign_id="1003", delay=3.0))
    taken: list[str] = []
    async with (
        fake.serve() as url,
        AsyncConvoso(fake.TOKEN, base_url=url) as c,
        contextlib.aclosing(c.campaigns.iter_set_status(ids_of(100), True)) as stream,
    ):
        async for outcome in stream:
            taken.append(outcome.campaign_id)
            if len(taken) == 10:
                break
    lines = audit(caplog)
    seen = seen_by_server(fake)
    assert seen <= set(lines)
    assert all(len(outcomes) == 1 for outcomes in lines.values())
    assert {i for i, o in lines.items() if o == ["succeeded"]} >= set(taken)
    # Sent and never taken: answered ones keep their real outcome, the rest are unknown.
    untaken = {i: lines[i][0] for i in seen - set(taken)}
    assert set(untaken.values()) <= {"succeeded", "unknown"}
    assert untaken["1003"] == "unknown"
    for campaign_id, ended in untaken.items():
        if ended == "succeeded":
            assert fake.campaign_status(campaign_id) == "Y"


async def test_a_rejected_token_stops_iter_set_status_with_nothing_more_sent(
    anyio_backend: str,
) -> None:
    fake = FakeConvoso(campaigns=200)
    async with (
        fake.serve() as url,
        AsyncConvoso("wrong-token-12345", base_url=url, max_concurrency=4) as c,
    ):
        outcomes = [o async for o in c.campaigns.iter_set_status(ids_of(200), True)]
    assert len(outcomes) == 200
    sent = [o for o in outcomes if o.sent]
    assert 1 <= len(sent) == len(fake.requests) <= 4
    assert all(isinstance(o.error, AuthenticationError) for o in outcomes)
    assert {o.attempts for o in outcomes if not o.sent} == {0}


# -- an exit raised by a callback ------------------------------------------------------------


class Leave(BaseException):
    """An application's own exit signal, which is not an Exception either."""


# Not KeyboardInterrupt: pytest takes one as the user stopping the run. Not SystemExit on
# asyncio: an asyncio task re-raises it straight out of the event loop (asyncio.run then ends
# with it, as it should), past any code inside the loop.
@pytest.mark.parametrize(
    ("anyio_backend", "exit_type"),
    [("asyncio", Leave), ("trio", Leave), ("trio", SystemExit)],
    indirect=["anyio_backend"],
)
async def test_an_exit_raised_by_on_progress_ends_the_call_as_itself_with_every_id_accounted(
    anyio_backend: str, exit_type: type[BaseException]
) -> None:
    fake = FakeConvoso(campaigns=60, latency=0.02)
    ids = ids_of(60)
    partial: list[BatchResult] = []

    def leave_after_10(progress: BatchProgress) -> None:
        if progress.done >= 10:
            raise exit_type(3)

    async with fake.serve() as url, AsyncConvoso(fake.TOKEN, base_url=url, max_concurrency=8) as c:
        with anyio.fail_after(HANG_GUARD), pytest.raises(exit_type) as raised:
            await c.campaigns.set_status_many(
                ids, False, on_progress=leave_after_10, on_interrupt=partial.append
            )
    assert raised.value.args == (3,)  # the callback's own exception, not a group holding it
    (result,) = partial
    check_partition(result, ids)
    check_server_side(result, fake)
