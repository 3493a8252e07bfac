"""Bulk status changes: the generic executor, and campaigns changed by the hundred.

The executor tests drive `convoso_async._bulk.executor` with plain operations that count what
runs. The campaigns tests put a scripted server behind an ``httpx.MockTransport`` (the handler
runs in the requesting task, so it sees exactly what the client sends, and when) and check that
every id is accounted for, typed, retried as the policy says, and audited once.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs

import anyio
import httpx
import pytest
from limiters import CountingLimiter
from mocked_api import BASE_URL, TOKEN

from convoso_async import (
    APITimeoutError,
    AsyncConvoso,
    BatchError,
    BatchProgress,
    BatchResult,
    CampaignNotFoundError,
    ConfigurationError,
    StatusOutcome,
)
from convoso_async._bulk.executor import Outcome, run_all, stream, unique

SEARCH = "/campaigns/search"
STATUS = "/campaigns/status"


# --- the generic executor -----------------------------------------------------------------------


class Operation:
    """An async operation over int keys that records what started, ran and finished.

    Each key sleeps ``delays.get(key, default)`` seconds; keys in ``failing`` raise ``Boom``.
    """

    def __init__(
        self,
        *,
        default: float = 0.01,
        delays: Mapping[int, float] | None = None,
        failing: Iterable[int] = (),
    ) -> None:
        self.default = default
        self.delays = dict(delays or {})
        self.failing = set(failing)
        self.started: list[int] = []
        self.finished: list[int] = []
        self.cancelled: list[int] = []
        self.running = 0
        self.peak = 0
        self.errors: dict[int, Exception] = {}

    async def __call__(self, key: int) -> int:
        self.started.append(key)
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await anyio.sleep(self.delays.get(key, self.default))
        except anyio.get_cancelled_exc_class():
            self.cancelled.append(key)
            raise
        finally:
            self.running -= 1
        if key in self.failing:
            self.errors[key] = error = Boom(key)
            raise error
        self.finished.append(key)
        return key * 10


class Boom(Exception):
    """The failure an `Operation` raises for a failing key."""


def test_unique_keeps_first_seen_order() -> None:
    assert unique([3, 1, 3, 2, 1, 3]) == [3, 1, 2]
    assert unique([]) == []


@pytest.mark.anyio
@pytest.mark.parametrize(("keys", "limit"), [(40, 5), (40, 1), (3, 10)])
async def test_run_all_never_exceeds_max_concurrency_and_reaches_it(keys: int, limit: int) -> None:
    operation = Operation(default=0.005)
    outcomes = await run_all(range(keys), operation, max_concurrency=limit)

    assert len(outcomes) == keys
    assert operation.peak == min(keys, limit)


@pytest.mark.anyio
async def test_run_all_gives_exactly_one_outcome_per_unique_key() -> None:
    keys = [5, 1, 5, 2, 1, 9, 9, 9, 2, 7]
    operation = Operation(default=0.001)
    outcomes = await run_all(keys, operation, max_concurrency=3)

    assert sorted(o.key for o in outcomes) == [1, 2, 5, 7, 9]
    assert Counter(operation.started) == Counter({1: 1, 2: 1, 5: 1, 7: 1, 9: 1})
    assert all(o.ok and o.value == o.key * 10 for o in outcomes)


@pytest.mark.anyio
async def test_a_failing_key_is_its_own_outcome_and_the_others_complete() -> None:
    operation = Operation(default=0.002, failing={3, 8})
    outcomes = {o.key: o for o in await run_all(range(12), operation, max_concurrency=4)}

    assert set(outcomes) == set(range(12))
    for key in (3, 8):
        assert not outcomes[key].ok
        assert outcomes[key].error is operation.errors[key]
        assert outcomes[key].value is None
    assert {k: o.value for k, o in outcomes.items() if o.ok} == {
        k: k * 10 for k in range(12) if k not in (3, 8)
    }


#: Keys 0-5 finish one by one within 60 ms; every other key would take ten seconds. Cancelling
#: once the six are in finds the same work in flight however late this machine runs the loop.
STAGGERED = {key: 0.01 * (key + 1) for key in range(6)}


@pytest.mark.anyio
async def test_cancelling_the_caller_stops_new_work_at_once() -> None:
    operation = Operation(default=10.0, delays=STAGGERED)
    seen: list[Outcome[int, int]] = []
    with anyio.fail_after(5), anyio.CancelScope() as scope:

        def on_outcome(outcome: Outcome[int, int]) -> None:
            seen.append(outcome)
            if len(seen) == len(STAGGERED):
                scope.cancel()

        await run_all(range(100), operation, max_concurrency=4, on_outcome=on_outcome)
    assert scope.cancelled_caught

    started = len(operation.started)
    # The in-flight ones were cancelled, not left running: every start ended one way or the other.
    assert operation.running == 0
    assert len(operation.finished) + len(operation.cancelled) == started
    assert operation.cancelled
    assert 4 < started < 100
    # Every outcome that did finish was reported before the cancel took effect.
    assert sorted(o.key for o in seen) == sorted(operation.finished)
    await anyio.sleep(0.15)
    assert len(operation.started) == started


@pytest.mark.anyio
async def test_no_key_starts_once_the_caller_is_cancelled_even_as_an_operation_completes() -> None:
    release = anyio.Event()
    started: list[int] = []

    async def operation(key: int) -> int:
        started.append(key)
        if key == 0:
            await release.wait()
        else:
            await anyio.sleep(10)
        return key

    with anyio.fail_after(5), anyio.CancelScope() as caller:
        async with anyio.create_task_group() as group:

            async def cancel_as_key_0_completes() -> None:
                await anyio.sleep(0.02)
                # No checkpoint between the two: key 0's task is woken, then the caller cancels.
                release.set()
                caller.cancel()

            group.start_soon(cancel_as_key_0_completes)
            await run_all(range(5), operation, max_concurrency=1)

    assert started == [0]


def test_run_all_refuses_a_concurrency_below_one() -> None:
    operation = Operation()
    with pytest.raises(ValueError, match="max_concurrency"):
        anyio.run(lambda: run_all([1, 2], operation, max_concurrency=0))
    assert operation.started == []


@pytest.mark.anyio
async def test_stream_yields_every_outcome_once() -> None:
    operation = Operation(default=0.002, failing={4})
    received = [o async for o in stream([1, 2, 2, 3, 4, 5, 1] * 3, operation, max_concurrency=2)]

    assert sorted(o.key for o in received) == [1, 2, 3, 4, 5]
    by_key = {o.key: o for o in received}
    assert by_key[4].error is operation.errors[4]
    assert [by_key[k].value for k in (1, 2, 3, 5)] == [10, 20, 30, 50]


@pytest.mark.anyio
async def test_closing_the_stream_early_cancels_in_flight_work_and_starts_none() -> None:
    # Keys 0-2 finish quickly; the rest would take ten seconds unless cancelled.
    operation = Operation(default=10.0, delays={0: 0.01, 1: 0.02, 2: 0.03})
    received: list[int] = []
    with anyio.fail_after(5):
        async with contextlib.aclosing(stream(range(50), operation, max_concurrency=4)) as outcomes:
            async for outcome in outcomes:
                received.append(outcome.key)
                if len(received) == 3:
                    break
        started = len(operation.started)

        assert sorted(received) == [0, 1, 2]  # trio may wake two late finishers in either order
        assert operation.running == 0
        # Every operation that started and did not finish was cancelled: up to four (the slots
        # freed by 0-2 may not all have been refilled yet on a loaded machine), never none.
        assert sorted(operation.finished) == [0, 1, 2]
        assert len(operation.cancelled) == len(operation.started) - 3
        assert 1 <= len(operation.cancelled) <= 4
        await anyio.sleep(0.1)
        assert len(operation.started) == started < 50


@pytest.mark.anyio
async def test_cancelling_the_caller_of_a_stream_cancels_its_work() -> None:
    operation = Operation(default=10.0, delays=STAGGERED)
    received: list[int] = []
    with anyio.fail_after(5), anyio.CancelScope() as scope:
        async with contextlib.aclosing(stream(range(100), operation, max_concurrency=4)) as outs:
            async for outcome in outs:
                received.append(outcome.key)
                if len(received) == len(STAGGERED):
                    scope.cancel()  # the caller is cancelled while it waits for the next one
    assert scope.cancelled_caught
    started = len(operation.started)
    assert operation.running == 0
    assert len(operation.finished) + len(operation.cancelled) == started
    assert operation.cancelled
    assert set(received) <= set(operation.finished)
    await anyio.sleep(0.15)
    assert len(operation.started) == started < 100


@pytest.mark.anyio
async def test_closing_the_stream_as_an_operation_completes_raises_nothing() -> None:
    release = anyio.Event()
    operation = Operation(default=10.0, delays={0: 0.01})

    async def op(key: int) -> int:
        if key == 1:
            await release.wait()
            return key
        return await operation(key)

    with anyio.fail_after(5):
        async with contextlib.aclosing(stream(range(6), op, max_concurrency=3)) as outcomes:
            async for outcome in outcomes:
                assert outcome.key == 0
                release.set()  # key 1 completes in the very tick the consumer stops listening
                break
    assert operation.running == 0


# --- a scripted Convoso behind an httpx.MockTransport ---------------------------------------------


def form(request: httpx.Request) -> dict[str, str]:
    """The request's form fields (the last value of each)."""
    return {key: values[-1] for key, values in parse_qs(request.content.decode()).items()}


class ScriptedServer:
    """``/campaigns/search`` and ``/campaigns/status`` with scripted per-id behaviour.

    ``campaigns`` holds the account's campaigns (id -> active). Status requests for ``unknown``
    ids get Convoso's "not found" answer; ``flaky`` ids get one 503 first; ``timing_out`` ids
    always time out. Every request is recorded as (path, form), and ``in_flight`` counts the
    requests being answered right now.

    Not `convoso_async.testing.FakeConvoso`: this one scripts behaviour per campaign id and
    answers in the requesting task, so the tests see what is in flight at each moment.
    """

    def __init__(
        self,
        campaigns: Mapping[str, bool] | None = None,
        *,
        unknown: Iterable[str] = (),
        flaky: Iterable[str] = (),
        timing_out: Iterable[str] = (),
        latency: float = 0.0,
    ) -> None:
        self.campaigns = dict(campaigns or {})
        self.unknown = set(unknown)
        self.flaky = set(flaky)
        self.timing_out = set(timing_out)
        self.latency = latency
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.in_flight = 0
        self.peak_in_flight = 0

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    @property
    def status_requests(self) -> list[dict[str, str]]:
        return [fields for path, fields in self.requests if path == STATUS]

    def status_calls(self) -> Counter[str]:
        """How many status requests each campaign id received."""
        return Counter(fields["campaign_id"] for fields in self.status_requests)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix(httpx.URL(BASE_URL).path)
        fields = form(request)
        self.requests.append((path, fields))
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            await anyio.sleep(self.latency)
        finally:
            self.in_flight -= 1
        if fields.get("auth_token") != TOKEN:
            return httpx.Response(200, json={"success": False, "error": "Invalid token"})
        if path == SEARCH:
            return httpx.Response(200, json={"data": self._campaign_rows()})
        campaign_id = fields["campaign_id"]
        if campaign_id in self.unknown:
            return httpx.Response(
                200, json={"success": False, "error": "Campaign not found", "code": 6026}
            )
        if campaign_id in self.timing_out:
            raise httpx.ReadTimeout("timed out reading the answer", request=request)
        if campaign_id in self.flaky and self.status_calls()[campaign_id] == 1:
            return httpx.Response(503)
        self.campaigns[campaign_id] = fields["status"] == "true"
        return httpx.Response(200, json={"success": True})

    def _campaign_rows(self) -> list[dict[str, Any]]:
        return [
            {
                "id": campaign_id,
                "name": f"Campaign {campaign_id}",
                "status": "Y" if active else "N",
                "last_call_date": None,
            }
            for campaign_id, active in self.campaigns.items()
        ]


@contextlib.asynccontextmanager
async def client_for(server: ScriptedServer, **options: Any) -> AsyncIterator[AsyncConvoso]:
    """A client whose every request goes to ``server`` (stock httpx client, MockTransport)."""
    async with (
        httpx.AsyncClient(transport=server.transport()) as http,
        AsyncConvoso(TOKEN, base_url=BASE_URL, http_client=http, **options) as convoso,
    ):
        yield convoso


def accounted_once(result: BatchResult, expected: Iterable[str]) -> bool:
    """Every expected id is in exactly one bucket, and nothing else is in any.

    The buckets: succeeded / failed / skipped / not_sent / unknown.
    """
    places = [
        *result.succeeded,
        *result.failed,
        *result.skipped,
        *result.not_sent,
        *result.unknown,
    ]
    return sorted(places) == sorted(set(expected))


class MixedBatch:
    """Sixty campaign ids with every kind of outcome, and what the server should see for each."""

    ids: ClassVar[list[str]] = [str(5000 + n) for n in range(60)]
    unknown: ClassVar[list[str]] = ids[0:6]
    flaky: ClassVar[list[str]] = ids[6:16]
    timing_out: ClassVar[list[str]] = ids[16:20]
    healthy: ClassVar[list[str]] = ids[20:]
    max_retries: ClassVar[int] = 3

    @classmethod
    def server(cls, **options: Any) -> ScriptedServer:
        return ScriptedServer(
            dict.fromkeys(cls.ids, False),
            unknown=cls.unknown,
            flaky=cls.flaky,
            timing_out=cls.timing_out,
            **options,
        )

    @classmethod
    def expected_attempts(cls) -> dict[str, int]:
        attempts = dict.fromkeys(cls.ids, 1)  # unknown ids: a `success: false` is never retried
        attempts.update(dict.fromkeys(cls.flaky, 2))
        attempts.update(dict.fromkeys(cls.timing_out, 1 + cls.max_retries))
        return attempts

    @classmethod
    def requested(cls) -> list[str | int]:
        """The ids as a caller might pass them: with repeats, some as ints."""
        return [*cls.ids, *cls.ids[::7], int(cls.healthy[3]), cls.flaky[0], int(cls.unknown[1])]


# --- set_status_many: accounting, typing, retries ------------------------------------------------


@pytest.mark.anyio
@pytest.mark.usefixtures("instant_retries")
async def test_every_id_ends_in_exactly_one_place_with_typed_failures_and_right_attempts() -> None:
    server = MixedBatch.server()
    async with client_for(server, max_retries=MixedBatch.max_retries) as convoso:
        result = await convoso.campaigns.set_status_many(MixedBatch.requested(), True)

    assert accounted_once(result, MixedBatch.ids)
    assert len(result.succeeded) + len(result.failed) + len(result.skipped) == 60
    assert sorted(result.succeeded) == sorted(MixedBatch.flaky + MixedBatch.healthy)
    assert result.skipped == ()
    assert sorted(result.failed) == sorted(MixedBatch.unknown + MixedBatch.timing_out)
    for campaign_id in MixedBatch.unknown:
        error = result.failed[campaign_id]
        assert isinstance(error, CampaignNotFoundError)
        assert (error.code, error.campaign_id) == (6026, campaign_id)
    for campaign_id in MixedBatch.timing_out:
        error = result.failed[campaign_id]
        assert isinstance(error, APITimeoutError)
        assert error.campaign_id == campaign_id

    # Duplicates went once; 6026 was not retried; 503 once, timeouts until retries ran out.
    assert server.status_calls() == MixedBatch.expected_attempts()
    assert result.attempts == len(server.requests) == sum(MixedBatch.expected_attempts().values())
    assert result.retries == len(MixedBatch.flaky) + len(MixedBatch.timing_out) * 3
    assert not result.ok
    assert result.summary().startswith("60 campaigns: 50 succeeded, 10 failed, 0 skipped")
    assert all(server.campaigns[i] for i in result.succeeded)


@pytest.mark.anyio
async def test_set_status_many_keeps_requests_in_flight_at_max_concurrency() -> None:
    server = ScriptedServer(dict.fromkeys(map(str, range(30)), False), latency=0.01)
    async with client_for(server, max_concurrency=3) as convoso:
        await convoso.campaigns.set_status_many(list(server.campaigns), True)
        assert server.peak_in_flight == 3
        server.peak_in_flight = 0
        await convoso.campaigns.set_status_many(list(server.campaigns), False, max_concurrency=7)
        assert server.peak_in_flight == 7


@pytest.mark.anyio
async def test_skip_unchanged_searches_once_and_sends_only_what_changes() -> None:
    server = ScriptedServer({"111": True, "222": False, "333": True, "444": False})
    async with client_for(server) as convoso:
        result = await convoso.campaigns.set_status_many(
            ["111", "222", "333", "999", 222], True, skip_unchanged=True
        )

    assert [path for path, _ in server.requests] == [SEARCH, STATUS]
    assert server.status_requests[0]["campaign_id"] == "222"
    assert server.status_requests[0]["status"] == "true"
    assert result.succeeded == ("222",)
    assert sorted(result.skipped) == ["111", "333"]
    assert list(result.failed) == ["999"]
    assert isinstance(result.failed["999"], CampaignNotFoundError)
    assert (result.attempts, result.retries) == (1, 0)


@pytest.mark.anyio
@pytest.mark.parametrize("skip_unchanged", [False, True])
async def test_dry_run_sends_no_status_request_and_says_what_would_be_sent(
    skip_unchanged: bool,
) -> None:
    server = ScriptedServer({"111": True, "222": False, "333": True})
    async with client_for(server) as convoso:
        result = await convoso.campaigns.set_status_many(
            ["111", "222", "999"], False, dry_run=True, skip_unchanged=skip_unchanged
        )

    assert server.status_requests == []
    assert [path for path, _ in server.requests] == [SEARCH]
    assert server.campaigns == {"111": True, "222": False, "333": True}
    assert result.dry_run
    assert result.succeeded == ()
    assert list(result.failed) == ["999"]
    assert isinstance(result.failed["999"], CampaignNotFoundError)
    summary = result.summary()
    assert "dry run" in summary
    if skip_unchanged:
        assert result.planned == ("111",)
        assert result.skipped == ("222",)
        assert "1 would be sent (1 would change)" in summary
    else:
        assert result.planned == ("111", "222")
        assert result.skipped == ()
        assert "2 would be sent (1 would change)" in summary


@pytest.mark.anyio
@pytest.mark.usefixtures("instant_retries")
@pytest.mark.parametrize("skip_unchanged", [False, True])
async def test_on_progress_counts_up_to_the_total(skip_unchanged: bool) -> None:
    server = MixedBatch.server(latency=0.001)
    server.campaigns.update(dict.fromkeys(MixedBatch.healthy[:10], True))  # 10 to skip
    seen: list[BatchProgress] = []
    async with client_for(server, max_retries=MixedBatch.max_retries) as convoso:
        result = await convoso.campaigns.set_status_many(
            MixedBatch.requested(), True, on_progress=seen.append, skip_unchanged=skip_unchanged
        )

    done = [p.done for p in seen]
    assert done == sorted(set(done))  # strictly increasing
    assert done[-1] == 60
    assert {p.total for p in seen} == {60}
    assert all(p.succeeded + p.failed + p.skipped == p.done for p in seen)
    last = seen[-1]
    assert (last.succeeded, last.failed, last.skipped) == (
        len(result.succeeded),
        len(result.failed),
        len(result.skipped),
    )
    assert last.skipped == (10 if skip_unchanged else 0)


@pytest.mark.anyio
async def test_on_progress_reaches_the_total_even_when_nothing_is_sent() -> None:
    server = ScriptedServer({"1": True, "2": True})
    seen: list[BatchProgress] = []
    async with client_for(server) as convoso:
        result = await convoso.campaigns.set_status_many(
            ["1", "2", "3"], True, skip_unchanged=True, on_progress=seen.append
        )

    assert server.status_requests == []
    assert (len(result.skipped), len(result.failed)) == (2, 1)
    assert seen[-1] == BatchProgress(done=3, total=3, succeeded=0, failed=1, skipped=2)


@pytest.mark.anyio
@pytest.mark.usefixtures("instant_retries")
async def test_raise_for_failures_raises_one_batch_error_with_every_failure() -> None:
    server = ScriptedServer(
        dict.fromkeys(["1", "2", "3", "4", "5"], False), unknown=["2", "4"], timing_out=["5"]
    )
    async with client_for(server, max_retries=1) as convoso:
        result = await convoso.campaigns.set_status_many(["1", "2", "3", "4", "5"], True)

    with pytest.raises(BatchError) as caught:
        result.raise_for_failures()
    error = caught.value
    assert error.failures == dict(result.failed)
    assert sorted(error.failures) == ["2", "4", "5"]
    assert error.total == 5
    message = str(error)
    assert message.startswith("3 of 5 campaigns failed")
    for campaign_id in ("2", "4", "5"):
        assert f"  {campaign_id}: {result.failed[campaign_id]}" in message
    assert TOKEN not in message


@pytest.mark.anyio
@pytest.mark.usefixtures("instant_retries")
async def test_batch_error_carries_every_failure_even_when_its_message_is_cut_short() -> None:
    server = MixedBatch.server()
    async with client_for(server, max_retries=MixedBatch.max_retries) as convoso:
        result = await convoso.campaigns.set_status_many(MixedBatch.ids, True)

    with pytest.raises(BatchError) as caught:
        result.raise_for_failures()
    assert sorted(caught.value.failures) == sorted(MixedBatch.unknown + MixedBatch.timing_out)
    assert "... and 5 more" in str(caught.value)


@pytest.mark.anyio
async def test_raise_for_failures_is_silent_when_all_succeeded() -> None:
    server = ScriptedServer(dict.fromkeys(["1", "2"], False))
    async with client_for(server) as convoso:
        result = await convoso.campaigns.set_status_many(["1", "2"], True)
    assert result.ok
    result.raise_for_failures()


# --- apply_statuses and input checks -------------------------------------------------------------


@pytest.mark.anyio
async def test_apply_statuses_sends_each_campaign_its_own_state() -> None:
    server = ScriptedServer({"1": False, "2": True, "3": False, "4": True})
    targets: dict[str | int, bool] = {"1": True, "2": False, 3: True, "4": True}
    async with client_for(server) as convoso:
        result = await convoso.campaigns.apply_statuses(targets)

    assert result.ok
    assert sorted(result.succeeded) == ["1", "2", "3", "4"]
    sent = {fields["campaign_id"]: fields["status"] for fields in server.status_requests}
    assert sent == {"1": "true", "2": "false", "3": "true", "4": "true"}
    assert len(server.status_requests) == 4
    assert server.campaigns == {"1": True, "2": False, "3": True, "4": True}


@pytest.mark.anyio
async def test_the_same_id_as_str_and_int_is_one_campaign() -> None:
    server = ScriptedServer({"7": False})
    async with client_for(server) as convoso:
        same: dict[str | int, bool] = {"7": True, 7: True}
        result = await convoso.campaigns.apply_statuses(same)
    assert result.succeeded == ("7",)
    assert server.status_calls() == {"7": 1}


@pytest.mark.anyio
@pytest.mark.parametrize("skip_unchanged", [False, True])
async def test_conflicting_states_for_one_id_are_refused_before_any_request(
    skip_unchanged: bool,
) -> None:
    server = ScriptedServer({"1": False, "2": False})
    conflicting: dict[str | int, bool] = {"2": True, "1": True, 1: False}
    async with client_for(server) as convoso:
        with pytest.raises(ValueError, match="'1'"):
            await convoso.campaigns.apply_statuses(conflicting, skip_unchanged=skip_unchanged)
    assert server.requests == []


BAD_TARGETS: list[tuple[dict[Any, Any], type[Exception]]] = [
    ({"1": True, "2": "false"}, TypeError),
    ({"1": True, "2": 0}, TypeError),
    ({"1": True, "2": 1}, TypeError),
    ({"1": True, "2": None}, TypeError),
    ({"1": True, True: True}, TypeError),
    ({"1": True, None: False}, TypeError),
    ({"1": True, 2.0: False}, TypeError),
    ({"1": True, "": False}, ValueError),
    ({"1": True, "   ": False}, ValueError),
]


@pytest.mark.anyio
@pytest.mark.parametrize(("targets", "error"), BAD_TARGETS)
@pytest.mark.parametrize("skip_unchanged", [False, True])
async def test_one_bad_target_anywhere_refuses_the_whole_batch_before_any_request(
    targets: dict[Any, Any], error: type[Exception], skip_unchanged: bool
) -> None:
    server = ScriptedServer({"1": False, "2": False})
    async with client_for(server) as convoso:
        with pytest.raises(error):
            await convoso.campaigns.apply_statuses(targets, skip_unchanged=skip_unchanged)
    assert server.requests == []


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("campaign_ids", "active", "error"),
    [
        (["1", "2", None], True, TypeError),
        (["1", "2", True], True, TypeError),
        (["1", "2", ""], True, ValueError),
        (["1", "2", 3.5], True, TypeError),
        (["1", "2"], "false", TypeError),
        (["1", "2"], 0, TypeError),
        (["1", "2"], None, TypeError),
        ("12", True, TypeError),
        (12, True, TypeError),
    ],
)
async def test_set_status_many_refuses_bad_input_before_any_request(
    campaign_ids: Any, active: Any, error: type[Exception]
) -> None:
    server = ScriptedServer({"1": False, "2": False})
    async with client_for(server) as convoso:
        with pytest.raises(error):
            await convoso.campaigns.set_status_many(campaign_ids, active)
        with pytest.raises(error):
            async for _ in convoso.campaigns.iter_set_status(campaign_ids, active):
                pass
    assert server.requests == []


@pytest.mark.anyio
@pytest.mark.parametrize("limit", [0, -2, True, 1001, 10**400, 2.0])
async def test_a_bad_max_concurrency_is_refused_before_any_request(limit: Any) -> None:
    server = ScriptedServer({"1": False})
    async with client_for(server) as convoso:
        with pytest.raises(ConfigurationError, match="max_concurrency"):
            await convoso.campaigns.set_status_many(["1"], True, max_concurrency=limit)
        with pytest.raises(ConfigurationError, match="max_concurrency"):
            async for _ in convoso.campaigns.iter_set_status(["1"], True, max_concurrency=limit):
                pass
    assert server.requests == []


# --- iter_set_status ----------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.usefixtures("instant_retries")
async def test_iter_set_status_yields_one_outcome_per_unique_id_with_its_attempts() -> None:
    server = MixedBatch.server()
    outcomes: list[StatusOutcome] = []
    async with client_for(server, max_retries=MixedBatch.max_retries) as convoso:
        async for outcome in convoso.campaigns.iter_set_status(MixedBatch.requested(), False):
            outcomes.append(outcome)

    assert sorted(o.campaign_id for o in outcomes) == sorted(MixedBatch.ids)
    assert all(o.active is False for o in outcomes)
    assert {o.campaign_id: o.attempts for o in outcomes} == MixedBatch.expected_attempts()
    assert server.status_calls() == MixedBatch.expected_attempts()
    for outcome in outcomes:
        if outcome.campaign_id in MixedBatch.unknown:
            assert isinstance(outcome.error, CampaignNotFoundError)
        elif outcome.campaign_id in MixedBatch.timing_out:
            assert isinstance(outcome.error, APITimeoutError)
        else:
            assert outcome.ok, outcome.error


@pytest.mark.anyio
async def test_cancelling_the_caller_of_iter_set_status_stops_requests_at_once() -> None:
    server = ScriptedServer(latency=0.05)
    received: list[str] = []
    async with client_for(server, max_concurrency=4) as convoso:
        # Cancelled after six outcomes, not after a time: a late-running loop can't make it
        # strike before the first four answers are in.
        with anyio.fail_after(10), anyio.CancelScope() as scope:
            async for outcome in convoso.campaigns.iter_set_status(map(str, range(100)), True):
                received.append(outcome.campaign_id)
                if len(received) == 6:
                    scope.cancel()
        assert scope.cancelled_caught
        sent = len(server.requests)
        assert server.in_flight == 0
        assert 4 < sent < 100
        await anyio.sleep(0.15)
        assert len(server.requests) == sent


async def _stop_iter_set_status_early() -> None:
    """Break out of iter_set_status inside aclosing, as its docstring says; check nothing runs on.

    Run in a child process by the test below: while the bug is there, it corrupts the event loop.
    """
    server = ScriptedServer(latency=0.05)
    async with client_for(server, max_concurrency=4) as convoso:
        with anyio.fail_after(5):
            outcomes = convoso.campaigns.iter_set_status(map(str, range(40)), True)
            async with contextlib.aclosing(outcomes):
                async for _ in outcomes:
                    break
            in_flight, sent = server.in_flight, len(server.requests)
            await anyio.sleep(0.2)
            assert in_flight == 0, f"{in_flight} requests still in flight after aclose()"
            assert len(server.requests) == sent, "requests were sent after aclose()"
    gc.collect()


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_closing_iter_set_status_early_stops_its_requests(backend: str) -> None:
    tests = Path(__file__).parent
    code = (
        "import sys, anyio, test_bulk; "
        "anyio.run(test_bulk._stop_iter_set_status_early, backend=sys.argv[1])"
    )
    # The child imports exactly what this process imports (the same convoso_async), plus tests/.
    path = [str(tests), *filter(None, sys.path)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    child = subprocess.run(
        [sys.executable, "-c", code, backend],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tests,
        check=False,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    assert "Traceback" not in child.stderr, child.stderr[-3000:]
    assert "Exception ignored" not in child.stderr, child.stderr[-3000:]


# --- the audit trail and the shared limiter ------------------------------------------------------


def audit_lines(caplog: pytest.LogCaptureFixture) -> dict[str, list[str]]:
    """The audit messages, by the campaign each is about."""
    lines: dict[str, list[str]] = {}
    for record in caplog.records:
        if record.name == "convoso_async.audit":
            lines.setdefault(record.__dict__["campaign_id"], []).append(record.getMessage())
    return lines


@pytest.mark.anyio
@pytest.mark.usefixtures("instant_retries")
async def test_audit_log_has_one_final_line_per_campaign(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="convoso_async.audit")
    server = MixedBatch.server()
    async with client_for(server, max_retries=MixedBatch.max_retries) as convoso:
        result = await convoso.campaigns.set_status_many(MixedBatch.requested(), True)

    lines = audit_lines(caplog)
    assert sorted(lines) == sorted(MixedBatch.ids)
    expected_attempts = MixedBatch.expected_attempts()
    for campaign_id, messages in lines.items():
        assert len(messages) == 1, messages
        (message,) = messages
        outcome = "succeeded" if campaign_id in result.succeeded else "failed"
        assert f"campaign={campaign_id} " in message
        assert "wanted=active " in message
        assert f"outcome={outcome} " in message
        assert f"attempts={expected_attempts[campaign_id]}" in message
        assert TOKEN not in message


@pytest.mark.anyio
async def test_audit_log_covers_skipped_and_locally_failed_campaigns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="convoso_async.audit")
    server = ScriptedServer({"1": False, "2": True})
    async with client_for(server) as convoso:
        await convoso.campaigns.set_status_many(["1", "2", "3"], False, skip_unchanged=True)

    lines = audit_lines(caplog)
    assert {k: len(v) for k, v in lines.items()} == {"1": 1, "2": 1, "3": 1}
    assert "wanted=inactive outcome=skipped attempts=0" in lines["1"][0]
    assert "wanted=inactive outcome=succeeded attempts=1" in lines["2"][0]
    assert "wanted=inactive outcome=failed attempts=0" in lines["3"][0]
    assert "CampaignNotFoundError" in lines["3"][0]


@pytest.mark.anyio
@pytest.mark.usefixtures("instant_retries")
async def test_audit_log_of_iter_set_status_has_one_line_per_campaign(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="convoso_async.audit")
    server = MixedBatch.server()
    async with client_for(server, max_retries=MixedBatch.max_retries) as convoso:
        async for _ in convoso.campaigns.iter_set_status(MixedBatch.requested(), True):
            pass

    lines = audit_lines(caplog)
    assert {k: len(v) for k, v in lines.items()} == dict.fromkeys(MixedBatch.ids, 1)
    for campaign_id, attempts in MixedBatch.expected_attempts().items():
        assert f"attempts={attempts}" in lines[campaign_id][0]


@pytest.mark.anyio
@pytest.mark.usefixtures("instant_retries")
@pytest.mark.parametrize("skip_unchanged", [False, True])
async def test_every_attempt_of_a_bulk_run_takes_a_slot_from_the_one_limiter(
    skip_unchanged: bool,
) -> None:
    limiter = CountingLimiter()
    server = MixedBatch.server()
    async with client_for(
        server, max_retries=MixedBatch.max_retries, rate_limit=limiter
    ) as convoso:
        result = await convoso.campaigns.set_status_many(
            MixedBatch.requested(), True, skip_unchanged=skip_unchanged
        )

    assert limiter.acquired == len(server.requests)
    assert len(server.status_requests) == result.attempts
    assert result.attempts == sum(MixedBatch.expected_attempts().values())
    assert len(server.requests) == result.attempts + (1 if skip_unchanged else 0)
