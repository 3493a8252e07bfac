"""The accounting of a bulk call: every row's outcome recorded once, every count read from it.

A `Ledger` runs one operation over rows named by any hashable key, through the
bulk executor, and records where each row ended, in exactly one bucket:

- ``succeeded``: the operation returned (its value is kept);
- ``failed``: it failed, sent or not (a caller's own check may fail a row locally);
- ``skipped``: the caller left it out before sending;
- ``not_sent``: never sent (a batch-fatal answer came first, an open circuit
  breaker, a deadline, an interruption): sending it later is safe;
- ``unknown``: in flight when the work stopped: it may or may not have been applied.

Every count (progress, the telemetry of the call, a result's retries) is read
from those records, and `stopped_by` is the one rule for what stopped the work
early. It knows nothing about campaigns or HTTP: an operation returns a `Sent`
saying what came back and how many attempts it took.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncGenerator, Awaitable, Callable, Hashable, Iterable, Mapping
from typing import Any, Generic, Literal, TypeVar

import anyio
import attrs

from convoso_async._errors import AuthenticationError, NotSentError, PermissionDeniedError
from convoso_async._log import logger

from . import executor

__all__ = [
    "BATCH_FATAL",
    "BUCKETS",
    "BatchProgress",
    "Bucket",
    "Entry",
    "Ledger",
    "Sent",
    "StopReason",
]

K = TypeVar("K", bound=Hashable)

Bucket = Literal["succeeded", "failed", "skipped", "not_sent", "unknown"]
StopReason = Literal["deadline", "interrupted"]

#: Every bucket, in the order counts are reported.
BUCKETS: tuple[Bucket, ...] = ("succeeded", "failed", "skipped", "not_sent", "unknown")

#: Answers that every other row of the batch would get too: after one, nothing more is sent.
BATCH_FATAL: tuple[type[Exception], ...] = (AuthenticationError, PermissionDeniedError)

_WHY: Mapping[StopReason, str] = {
    "deadline": "the batch's deadline passed before it was sent",
    "interrupted": "the batch was interrupted before it was sent",
}


@attrs.frozen
class Sent:
    """What one row's operation returns: the answer or the error, and the attempts it took.

    ``attempts`` is 0 when nothing went out (an open circuit breaker refused it).
    """

    value: Any = None
    error: Exception | None = None
    attempts: int = 1


@attrs.frozen
class Entry(Generic[K]):
    """One row's final place: its bucket, and what put it there.

    ``reason`` is set on the rows the work's stop left unsent or unknown
    (``"deadline"``, ``"interrupted"``).
    """

    key: K
    bucket: Bucket
    error: Exception | None = None
    attempts: int = 0
    value: Any = None
    reason: StopReason | None = None


@attrs.frozen
class BatchProgress:
    """Counts passed to ``on_progress`` as a bulk change advances.

    ``done`` counts every id with a final place: succeeded, failed, skipped
    or not sent.
    """

    done: int
    total: int
    succeeded: int
    failed: int
    skipped: int
    not_sent: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready counts: done, total, succeeded, failed, skipped, not_sent."""
        return attrs.asdict(self)


Operation = Callable[[K], Awaitable[Sent]]


class Ledger(Generic[K]):
    """The one record of a bulk call's rows; see the module's docstring.

    ``audit`` hears each entry as it is recorded; ``on_progress`` the counts
    after each row the work finishes (a raising one is reported once and
    dropped, so the accounting of rows already done is never lost);
    ``unsent_error(key, why, reason)`` makes the error of a row the work's stop
    left unsent. After a ``fatal`` answer nothing more is sent: the rows not
    yet sent are recorded not sent, with that error (its log line names the
    rows ``noun`` and carries the key as field ``key_field``).
    """

    def __init__(
        self,
        keys: Iterable[K],
        *,
        audit: Callable[[Entry[K]], None] | None = None,
        on_progress: Callable[[BatchProgress], None] | None = None,
        unsent_error: Callable[[K, str, StopReason], Exception] | None = None,
        fatal: tuple[type[Exception], ...] = BATCH_FATAL,
        noun: str = "rows",
        key_field: str = "key",
    ) -> None:
        self.keys: tuple[K, ...] = tuple(executor.unique(keys))
        self._audit = audit
        self._on_progress = on_progress
        self._unsent_error = unsent_error or _unsent_error
        self._fatal_types = fatal
        self._noun = noun
        self._key_field = key_field
        self.entries: dict[K, Entry[K]] = {}
        # Kept by `record` alone, as it records: progress reads it after every row.
        self._counts: dict[Bucket, int] = dict.fromkeys(BUCKETS, 0)
        self._in_flight: dict[K, None] = {}  # started, not recorded: in start order
        self.fatal: Exception | None = None
        self._stopped: Exception | None = None

    # -- recording ---------------------------------------------------------------------------

    def record(self, entry: Entry[K]) -> None:
        """Put one row in its bucket, once; its audit hears it."""
        if entry.key in self.entries:
            raise RuntimeError(f"row {entry.key!r} is accounted for twice")
        self.entries[entry.key] = entry
        self._counts[entry.bucket] += 1
        self._in_flight.pop(entry.key, None)
        if self._audit is not None:
            self._audit(entry)

    def stop(self, reason: StopReason, *, unstarted: bool = True) -> None:
        """The work stopped: rows in flight are unknown, the rest not sent (each recorded).

        An unknown row's ``attempts`` is 1: at least one went out (an operation
        in flight has started sending), how many more is not known. With
        ``unstarted`` False the rows never started are left out (a stream's
        consumer that leaves early did not ask for them).
        """
        why = _WHY[reason]
        for key in list(self._in_flight):
            self.record(Entry(key, "unknown", attempts=1, reason=reason))
        for key in self.keys if unstarted else ():
            if key not in self.entries:
                error = self._unsent_error(key, why, reason)
                if self._stopped is None:
                    self._stopped = error
                self.record(Entry(key, "not_sent", error, reason=reason))

    def _finish(self, key: K, sent: Sent) -> Entry[K]:
        """Record what one row's operation gave; a fatal answer halts the rest."""
        error = sent.error
        if error is None:
            entry = Entry(key, "succeeded", attempts=sent.attempts, value=sent.value)
        elif sent.attempts == 0:
            entry = Entry(key, "not_sent", error)
        else:
            entry = Entry(key, "failed", error, sent.attempts)
        if self.fatal is None and isinstance(error, self._fatal_types):
            # Stop here, in the worker, not when a stream's consumer takes the
            # outcome: it may be slow, and nothing may go meanwhile.
            self.fatal = error
            logger.error(
                "stopping the batch: %s; the %s not yet sent will not be sent",
                error,
                self._noun,
                extra={self._key_field: key, "error": type(error).__name__},
            )
        self.record(entry)
        return entry

    # -- reading -----------------------------------------------------------------------------

    def bucket(self, name: Bucket) -> list[Entry[K]]:
        """The entries of one bucket, in the order they were recorded."""
        return [entry for entry in self.entries.values() if entry.bucket == name]

    def counts(self, buckets: Iterable[Bucket] = BUCKETS) -> dict[str, int]:
        """How many rows each of ``buckets`` holds."""
        return {bucket: self._counts[bucket] for bucket in buckets}

    @property
    def attempts(self) -> int:
        """HTTP attempts of the rows whose operation returned (in-flight ones are not counted)."""
        return sum(e.attempts for e in self.entries.values() if e.bucket != "unknown")

    @property
    def retries(self) -> int:
        """Attempts beyond the first: `attempts`, less one for every row sent.

        As `BatchResult.retries` always counted: a row in flight when the work
        stopped counts as sent, its attempts not (they are not known).
        """
        sent = sum(1 for entry in self.entries.values() if entry.attempts > 0)
        return max(0, self.attempts - sent)

    @property
    def stopped_by(self) -> Exception | None:
        """What stopped the work early: a fatal answer, else the stop (a deadline, an
        interruption), else the first row refused unsent (an open circuit breaker)."""
        if self.fatal is not None or self._stopped is not None:
            return self.fatal or self._stopped
        return next((e.error for e in self.entries.values() if e.bucket == "not_sent"), None)

    def progress(self) -> None:
        """Tell ``on_progress`` the counts so far."""
        if self._on_progress is None:
            return
        counts = self.counts(("succeeded", "failed", "skipped", "not_sent"))
        done = sum(counts.values())
        try:
            self._on_progress(BatchProgress(done, len(self.keys), **counts))
        except Exception:
            # A broken progress display must not abort the batch and lose the
            # accounting of rows already done: report it once, go on.
            logger.exception(
                "on_progress raised; progress reports are off for this batch",
                extra={"callback": "on_progress"},
            )
            self._on_progress = None

    # -- running -----------------------------------------------------------------------------

    def _operate(self, operation: Operation[K]) -> Callable[[K], Awaitable[Entry[K]]]:
        """``operation`` as the executor runs it: each row's outcome recorded as it ends."""

        async def one(key: K) -> Entry[K]:
            if self.fatal is not None:
                entry = Entry(key, "not_sent", self.fatal)
                self.record(entry)
                return entry
            self._in_flight[key] = None
            try:
                sent = await operation(key)
            except Exception as error:  # raised before it could send
                sent = Sent(error=error, attempts=0)
            return self._finish(key, sent)

        return one

    async def run(
        self,
        operation: Operation[K],
        keys: Iterable[K],
        *,
        max_concurrency: int,
    ) -> None:
        """Run ``operation`` over ``keys`` (rows of this ledger), progress after each."""
        await executor.run_all(
            keys,
            self._operate(operation),
            max_concurrency=max_concurrency,
            on_outcome=lambda _: self.progress(),
        )

    async def stream(
        self, operation: Operation[K], *, max_concurrency: int
    ) -> AsyncGenerator[Entry[K], None]:
        """Run ``operation`` over every row, yielding each entry, at the consumer's pace.

        Closed or cancelled early, the rows in flight are recorded unknown and
        the rest not sent (``"interrupted"``).
        """
        try:
            work = executor.stream(
                self.keys, self._operate(operation), max_concurrency=max_concurrency
            )
            # aclosing: closed early ourselves, we close the executor's stream in
            # this task, which cancels its work.
            async with contextlib.aclosing(work) as outcomes:
                async for outcome in outcomes:
                    assert outcome.value is not None  # `_operate` never raises an Exception
                    yield outcome.value
        finally:
            self.stop("interrupted", unstarted=False)


async def within(deadline: float | None, work: Callable[[], Awaitable[None]]) -> bool:
    """Run ``work``; False if ``deadline`` (seconds) passed first and stopped it."""
    with anyio.move_on_after(math.inf if deadline is None else deadline) as scope:
        await work()
    if scope.cancelled_caught:
        logger.warning(
            "the batch's deadline of %gs passed: stopping it",
            deadline,
            extra={"deadline": deadline},
        )
        return False
    return True


def _unsent_error(key: object, why: str, reason: StopReason) -> Exception:
    return NotSentError(why, reason=reason)
