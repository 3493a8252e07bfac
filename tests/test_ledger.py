"""The bulk ledger: rows under any hashable key, each outcome recorded once, every count from it.

These drive `convoso_async._bulk.ledger` with plain operations (no HTTP, no campaigns): tuples
as keys, outcomes chosen per key, a batch-fatal answer, a deadline, an interruption and a stream
closed early; a property test checks the buckets partition the rows whatever the outcomes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Hashable

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given
from hypothesis import strategies as st

from convoso_async import AuthenticationError, CircuitOpenError, NotSentError
from convoso_async._bulk.ledger import BUCKETS, BatchProgress, Entry, Ledger, Sent, within

Key = tuple[str, int]


class Scripted:
    """An operation whose outcome per key is given: "ok", "fail", "refused" (0 attempts),
    "fatal", "retried" (3 attempts), or "hang" (never ends)."""

    def __init__(self, script: dict[Key, str]) -> None:
        self.script = script
        self.started: list[Key] = []

    async def __call__(self, key: Key) -> Sent:
        self.started.append(key)
        await anyio.lowlevel.checkpoint()
        kind = self.script[key]
        if kind == "hang":
            await anyio.sleep_forever()
        if kind == "fail":
            return Sent(error=ValueError(f"no {key}"), attempts=1)
        if kind == "refused":
            return Sent(
                error=CircuitOpenError(failures=3, last_error="x", retry_in=1.0), attempts=0
            )
        if kind == "fatal":
            return Sent(error=AuthenticationError("bad token"), attempts=1)
        return Sent(value={"id": key}, attempts=3 if kind == "retried" else 1)


def keys_of(count: int) -> list[Key]:
    return [("lead", number) for number in range(count)]


def assert_partition(ledger: Ledger[Key], keys: list[Key]) -> None:
    """Every key in exactly one bucket, and the counts read from those same entries."""
    placed = [entry.key for bucket in BUCKETS for entry in ledger.bucket(bucket)]
    assert sorted(placed) == sorted(set(keys))
    counts = ledger.counts()
    assert sum(counts.values()) == len(set(keys))
    assert counts == {bucket: len(ledger.bucket(bucket)) for bucket in BUCKETS}


@pytest.mark.anyio
async def test_each_row_lands_in_one_bucket_with_its_value_and_attempts() -> None:
    script = {("a", 1): "ok", ("b", 2): "fail", ("c", 3): "refused", ("d", 4): "retried"}
    ledger: Ledger[Key] = Ledger([*script, ("a", 1)])
    await ledger.run(Scripted(script), ledger.keys, max_concurrency=2)

    assert_partition(ledger, list(script))
    assert ledger.entries[("a", 1)] == Entry(
        ("a", 1), "succeeded", attempts=1, value={"id": ("a", 1)}
    )
    assert ledger.entries[("b", 2)].bucket == "failed"
    assert ledger.entries[("c", 3)].bucket == "not_sent"
    assert (ledger.attempts, ledger.retries) == (5, 2)
    # Nothing stopped the work; a refused row is what stopped it short, as nothing else did.
    assert isinstance(ledger.stopped_by, CircuitOpenError)


@pytest.mark.anyio
async def test_a_fatal_answer_stops_sending_and_the_rest_carry_it_unsent() -> None:
    keys = keys_of(6)
    script = dict.fromkeys(keys, "ok") | {keys[0]: "fatal"}
    operation = Scripted(script)
    ledger: Ledger[Key] = Ledger(keys)
    await ledger.run(operation, keys, max_concurrency=1)

    fatal = ledger.entries[keys[0]].error
    assert isinstance(fatal, AuthenticationError)
    assert operation.started == [keys[0]]
    assert [entry.error for entry in ledger.bucket("not_sent")] == [fatal] * 5
    assert ledger.stopped_by is fatal
    assert_partition(ledger, keys)


@pytest.mark.anyio
async def test_a_deadline_makes_in_flight_rows_unknown_and_the_rest_not_sent() -> None:
    keys = keys_of(5)
    script = dict.fromkeys(keys, "hang") | {keys[0]: "ok"}
    ledger: Ledger[Key] = Ledger(
        keys, unsent_error=lambda k, why, r: NotSentError(f"{k} {why}", reason=r)
    )

    async def work() -> None:
        await ledger.run(Scripted(script), keys, max_concurrency=2)

    assert not await within(0.05, work)
    ledger.stop("deadline")

    assert [e.key for e in ledger.bucket("succeeded")] == [keys[0]]
    assert [e.key for e in ledger.bucket("unknown")] == keys[1:3]
    assert [e.key for e in ledger.bucket("not_sent")] == keys[3:]
    stopped = ledger.stopped_by
    assert isinstance(stopped, NotSentError)
    assert stopped.reason == "deadline"
    assert stopped is ledger.entries[keys[3]].error
    assert_partition(ledger, keys)


@pytest.mark.anyio
async def test_a_closed_stream_leaves_in_flight_rows_unknown_and_unstarted_ones_out() -> None:
    keys = keys_of(6)
    script = dict.fromkeys(keys, "hang") | {keys[0]: "ok"}
    ledger: Ledger[Key] = Ledger(keys)
    async with contextlib.aclosing(ledger.stream(Scripted(script), max_concurrency=2)) as rows:
        async for entry in rows:
            assert entry.key == keys[0]
            break

    assert ledger.counts() == {
        "succeeded": 1,
        "failed": 0,
        "skipped": 0,
        "not_sent": 0,
        "unknown": 2,
    }


def test_a_row_is_never_recorded_twice() -> None:
    ledger: Ledger[str] = Ledger(["x"])
    ledger.record(Entry("x", "skipped"))
    with pytest.raises(RuntimeError, match="twice"):
        ledger.record(Entry("x", "succeeded", attempts=1))


@pytest.mark.anyio
async def test_progress_is_read_from_the_records_and_a_broken_callback_is_dropped() -> None:
    seen: list[BatchProgress] = []

    def progress(counts: BatchProgress) -> None:
        seen.append(counts)
        if len(seen) == 2:
            raise RuntimeError("display gone")

    keys = keys_of(4)
    ledger: Ledger[Key] = Ledger(keys, on_progress=progress)
    await ledger.run(Scripted(dict.fromkeys(keys, "ok")), keys, max_concurrency=1)

    assert [p.done for p in seen] == [1, 2]
    assert ledger.counts()["succeeded"] == 4


outcomes = st.sampled_from(["ok", "fail", "refused", "fatal", "retried"])


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@given(
    script=st.dictionaries(
        st.tuples(st.sampled_from(["lead", "list"]), st.integers(0, 30)), outcomes, max_size=25
    ),
    limit=st.integers(1, 4),
)
def test_the_buckets_partition_the_rows_whatever_the_outcomes(
    anyio_backend: str, script: dict[Key, str], limit: int
) -> None:
    async def main() -> Ledger[Key]:
        ledger: Ledger[Key] = Ledger(list(script))
        await ledger.run(Scripted(script), ledger.keys, max_concurrency=limit)
        return ledger

    ledger = anyio.run(main, backend=anyio_backend)
    assert_partition(ledger, list(script))
    sent = [e for e in ledger.entries.values() if e.attempts > 0]
    assert ledger.attempts == sum(e.attempts for e in sent)
    assert ledger.retries == sum(e.attempts - 1 for e in sent)
    fatal = ledger.fatal
    if fatal is not None:
        assert ledger.stopped_by is fatal
        unsent = [e for e in ledger.bucket("not_sent") if e.error is fatal]
        assert all(e.attempts == 0 for e in unsent)


def test_keys_may_be_any_hashable() -> None:
    key: Hashable = frozenset({1, 2})
    ledger: Ledger[Hashable] = Ledger([key, key, ("a",)])
    assert ledger.keys == (key, ("a",))
