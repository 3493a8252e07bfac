"""Bulk status changes: the plan, the accounting, and the audit trail.

`apply` turns ``{campaign_id: wanted_active}`` into requests through the bulk
executor and accounts for every id in exactly one of ``succeeded``, ``failed``,
``skipped``, ``not_sent`` or ``unknown``, whatever stops it: a batch-fatal
answer, the circuit breaker, a deadline, a cancellation. Each final outcome is
one line on the ``convoso_async.audit`` logger. The campaigns resource calls
this; it does not know HTTP.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any, Literal

import anyio
import attrs

from convoso_async import _telemetry as telemetry
from convoso_async._errors import (
    AuthenticationError,
    BatchError,
    CampaignNotFoundError,
    NotSentError,
    PermissionDeniedError,
)
from convoso_async._http.pipeline import AttemptCounter
from convoso_async._log import audit_logger, logger
from convoso_async._models import Campaign

from . import executor as bulk

__all__ = [
    "BatchProgress",
    "BatchResult",
    "StatusOutcome",
    "apply",
    "error_to_dict",
    "report",
    "result_counts",
    "stream",
]

SendStatus = Callable[[str, bool, AttemptCounter], Awaitable[None]]
Search = Callable[[], Awaitable[list[Campaign]]]


@attrs.frozen
class StatusOutcome:
    """The outcome of one campaign's status change: ``error`` is None on success.

    ``attempts`` is 0 when the request was never sent (``sent`` is False):
    the circuit breaker was open, or an earlier answer was batch-fatal.
    """

    campaign_id: str
    active: bool
    error: Exception | None = None
    attempts: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"campaign_id", "active", "ok", "sent", "attempts", "error"}``.

        ``error`` is None on success, else ``{"error": class name, "message": text}``.
        """
        return {
            "campaign_id": self.campaign_id,
            "active": self.active,
            "ok": self.ok,
            "sent": self.sent,
            "attempts": self.attempts,
            "error": None if self.error is None else error_to_dict(self.error),
        }

    @property
    def sent(self) -> bool:
        """Whether the request went out (at least one HTTP attempt)."""
        return self.attempts > 0


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


def _frozen_ids(ids: Iterable[str]) -> frozenset[str]:
    return frozenset(ids)


def _frozen_errors(errors: Mapping[str, Exception]) -> Mapping[str, Exception]:
    return MappingProxyType(dict(errors))


#: Answers to a status change that every other id of the batch would get too.
BATCH_FATAL: tuple[type[Exception], ...] = (AuthenticationError, PermissionDeniedError)


@attrs.frozen
class BatchResult:
    """Where every campaign of a bulk change ended up.

    Every unique id is in exactly one bucket:

    - ``succeeded``: ids changed (or confirmed) by Convoso;
    - ``failed``: id -> the error, for requests that were sent and failed
      (and unknown ids found by the pre-flight search of ``skip_unchanged``);
    - ``skipped``: already in the wanted state (``skip_unchanged``);
    - ``not_sent``: id -> why it was never sent: a `CircuitOpenError`, the
      batch-fatal `AuthenticationError`/`PermissionDeniedError` an earlier
      id got, or a `NotSentError` for the ``deadline`` or an interruption.
      Nothing was changed; sending them again later is safe;
    - ``unknown``: ids in flight when the work was stopped (deadline,
      interruption): the change may or may not have been applied.

    ``stopped_by`` is the error that stopped the batch early, if one did.
    In a dry run nothing is sent: ``planned`` holds the ids a real run would
    send, ``current`` the states the search found.

        result = await convoso.campaigns.set_status_many(ids, False)
        print(result.summary())
        result.raise_for_failures()
    """

    targets: Mapping[str, bool] = attrs.field(repr=False)
    succeeded: tuple[str, ...] = ()
    failed: Mapping[str, Exception] = attrs.field(factory=dict, converter=_frozen_errors)
    skipped: tuple[str, ...] = ()
    dry_run: bool = False
    planned: tuple[str, ...] = ()
    current: Mapping[str, bool] = attrs.field(factory=dict, repr=False)
    attempts: int = 0
    elapsed: float = 0.0
    not_sent: Mapping[str, Exception] = attrs.field(factory=dict, converter=_frozen_errors)
    unknown: tuple[str, ...] = ()
    stopped_by: Exception | None = None
    #: Failed ids that were never sent (unknown to the pre-flight search).
    _failed_unsent: frozenset[str] = attrs.field(
        factory=frozenset, converter=_frozen_ids, repr=False, alias="failed_unsent"
    )

    @property
    def ok(self) -> bool:
        """True when every campaign succeeded or was skipped."""
        return not (self.failed or self.not_sent or self.unknown)

    @property
    def retries(self) -> int:
        """HTTP attempts beyond the first, over the whole batch."""
        sent = len(self.succeeded) + len(self.failed) - len(self._failed_unsent)
        sent += len(self.unknown)
        return max(0, self.attempts - sent)

    def raise_for_failures(self) -> None:
        """Raise one `BatchError` carrying every id that did not succeed, if any.

        Its ``failures`` maps each failed, not-sent or unknown id to an error
        (a `NotSentError` with ``reason="unknown"`` for those in flight).
        """
        if self.ok:
            return
        failures: dict[str, Exception] = dict(self.failed)
        failures.update(self.not_sent)
        for campaign_id in self.unknown:
            failures[campaign_id] = NotSentError(
                "it was in flight when the batch stopped: it may or may not have been applied",
                reason="unknown",
                campaign_id=campaign_id,
            )
        raise BatchError(
            failures, total=len(self.targets), not_sent=self.not_sent, unknown=self.unknown
        )

    def summary(self) -> str:
        """One line, e.g. ``1000 campaigns: 997 succeeded, 3 failed, 0 skipped, 0 not sent,
        0 unknown in 4.20s``, plus what stopped the batch, if something did."""
        if self.dry_run:
            changes = sum(1 for i in self.planned if self.current.get(i) != self.targets[i])
            return (
                f"dry run, {_campaigns(len(self.targets))}: {len(self.planned)} would be sent "
                f"({changes} would change), {len(self.skipped)} skipped, "
                f"{len(self.failed)} failed"
            )
        text = (
            f"{_campaigns(len(self.targets))}: {len(self.succeeded)} succeeded, "
            f"{len(self.failed)} failed, {len(self.skipped)} skipped, "
            f"{len(self.not_sent)} not sent, {len(self.unknown)} unknown "
            f"in {self.elapsed:.2f}s"
        )
        if self.stopped_by is not None:
            text = f"{text}; stopped: {type(self.stopped_by).__name__}"
        return text

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; the document ``convoso campaigns activate --json`` prints.

        ``succeeded``, ``skipped`` and ``unknown`` are lists of ids; ``failed``
        and ``not_sent`` map each id to ``{"error": class name, "message":
        text}``, as ``stopped_by`` is (or None); ``planned`` (dry run) lists
        ``{"id", "active", "currently_active"}``; with ``ok``, ``total``,
        ``retries``, ``elapsed_seconds`` and the one-line ``summary``. Return
        it from a web handler as is.
        """
        return {
            "ok": self.ok,
            "dry_run": self.dry_run,
            "total": len(self.targets),
            "succeeded": list(self.succeeded),
            "failed": {i: error_to_dict(e) for i, e in self.failed.items()},
            "skipped": list(self.skipped),
            "not_sent": {i: error_to_dict(e) for i, e in self.not_sent.items()},
            "unknown": list(self.unknown),
            "stopped_by": None if self.stopped_by is None else error_to_dict(self.stopped_by),
            "planned": [
                {"id": i, "active": self.targets[i], "currently_active": self.current.get(i)}
                for i in self.planned
            ],
            "retries": self.retries,
            "elapsed_seconds": round(self.elapsed, 3),
            "summary": self.summary(),
        }


def _campaigns(count: int) -> str:
    return f"{count} campaign" if count == 1 else f"{count} campaigns"


def error_to_dict(error: BaseException) -> dict[str, str]:
    """``{"error": "CampaignNotFoundError", "message": "campaign '9' does not exist"}``."""
    return {"error": type(error).__name__, "message": str(error)}


class _Halted(Exception):
    """Raised instead of sending once the batch met a batch-fatal answer."""


def _audit(campaign_id: str, active: bool, outcome: str, attempts: int, **detail: str) -> None:
    """One campaign's final outcome, on the audit logger: each ``key=value`` also a field."""
    if not audit_logger.isEnabledFor(logging.INFO):
        return
    wanted = "active" if active else "inactive"
    audit_logger.info(
        "campaign=%s wanted=%s outcome=%s attempts=%d%s",
        campaign_id,
        wanted,
        outcome,
        attempts,
        "".join(f" {key}={value}" for key, value in detail.items()),
        extra={
            "campaign_id": campaign_id,
            "wanted": wanted,
            "wanted_active": active,
            "outcome": outcome,
            "attempts": attempts,
            **detail,
        },
    )


class _Sender:
    """Sends each change with its own attempt counter, and settles each outcome.

    Settling turns the executor's outcome into a `StatusOutcome` with its
    attempt count and writes its one audit line. After a batch-fatal answer
    (a rejected token, a missing permission) nothing more is sent: the ids
    not yet sent settle at once with that same error and no attempt.
    """

    def __init__(
        self,
        targets: Mapping[str, bool],
        send: SendStatus,
        observed: telemetry.BulkCall = telemetry.NOT_OBSERVED,
    ) -> None:
        self._targets = targets
        self._send = send
        self._observed = observed
        #: Outcomes settled so far, by bucket (a stream's span reports them at its end).
        self.counts: dict[str, int] = dict.fromkeys(_STREAM_BUCKETS, 0)
        self._counters: dict[str, AttemptCounter] = {}
        # Answers received but not yet settled (a stream's consumer is behind).
        self._finished: dict[str, Exception | None] = {}
        self.fatal: Exception | None = None
        self.first_unsent: Exception | None = None

    async def change(self, campaign_id: str) -> None:
        counter = self._counters[campaign_id] = AttemptCounter()
        if self.fatal is not None:
            raise _Halted
        try:
            with self._observed.current():
                await self._send(campaign_id, self._targets[campaign_id], counter)
        except Exception as error:
            self._finished[campaign_id] = error
            if self.fatal is None and isinstance(error, BATCH_FATAL):
                # Stop here, in the worker, not when the outcome is consumed: a
                # stream's consumer may be slow, and nothing may go meanwhile.
                self.fatal = error
                logger.error(
                    "stopping the batch: %s; the campaigns not yet sent will not be sent",
                    error,
                    extra={"campaign_id": campaign_id, "error": type(error).__name__},
                )
            raise
        self._finished[campaign_id] = None

    def settle(self, outcome: bulk.Outcome[str, None]) -> StatusOutcome:
        campaign_id, error = outcome.key, outcome.error
        active = self._targets[campaign_id]
        tries = self._counters.pop(campaign_id).attempts
        self._finished.pop(campaign_id, None)
        if isinstance(error, _Halted):
            error = self.fatal
        if error is None:
            bucket = "succeeded"
            _audit(campaign_id, active, bucket, tries)
        elif tries == 0:
            bucket = "not_sent"
            _audit(campaign_id, active, bucket, 0, error=type(error).__name__)
            if self.first_unsent is None:
                self.first_unsent = error
        else:
            bucket = "failed"
            _audit(campaign_id, active, bucket, tries, error=type(error).__name__)
        self.counts[bucket] += 1
        return StatusOutcome(campaign_id, active, error, tries)

    def answered(self) -> list[bulk.Outcome[str, None]]:
        """Outcomes whose answer came but that were not settled yet (a consumer fell behind)."""
        return [
            bulk.Outcome(campaign_id, error=self._finished[campaign_id])
            for campaign_id in self._counters
            if campaign_id in self._finished
        ]

    def stop(
        self, not_started: Iterable[str], reason: str
    ) -> tuple[list[str], dict[str, Exception]]:
        """The work stopped: in-flight ids are unknown, the others not sent. Audits each.

        Settle the `answered` outcomes first, or they count as unknown.
        """
        unknown: list[str] = []
        unsent: dict[str, Exception] = {}
        why = (
            "the batch's deadline passed before it was sent"
            if reason == "deadline"
            else "the batch was interrupted before it was sent"
        )
        for campaign_id, counter in self._counters.items():
            if counter.attempts > 0:
                unknown.append(campaign_id)
                _audit(campaign_id, self._targets[campaign_id], "unknown", counter.attempts)
            else:
                unsent[campaign_id] = NotSentError(why, reason=reason, campaign_id=campaign_id)
        self._counters.clear()
        in_flight = set(unknown)
        for campaign_id in not_started:
            if campaign_id not in unsent and campaign_id not in in_flight:
                unsent[campaign_id] = NotSentError(why, reason=reason, campaign_id=campaign_id)
        for campaign_id in unsent:
            _audit(campaign_id, self._targets[campaign_id], "not_sent", 0, reason=reason)
        self.counts["unknown"] += len(unknown)
        self.counts["not_sent"] += len(unsent)
        return unknown, unsent

    def stopped_by(self) -> Exception | None:
        """What stopped the batch early by itself: a batch-fatal answer, an open breaker."""
        return self.fatal or self.first_unsent


class _Tally:
    """The buckets of one bulk change as its outcomes arrive, and the result they make."""

    def __init__(
        self,
        targets: Mapping[str, bool],
        sender: _Sender,
        on_progress: Callable[[BatchProgress], None] | None,
    ) -> None:
        self.targets = targets
        self.sender = sender
        self._on_progress = on_progress
        self._started = time.monotonic()
        self.succeeded: list[str] = []
        self.failed: dict[str, Exception] = {}
        self.failed_unsent: set[str] = set()
        self.not_sent: dict[str, Exception] = {}
        self.skipped: list[str] = []
        self.settled: set[str] = set()
        self.current: dict[str, bool] = {}
        self.attempts = 0

    def progress(self) -> None:
        if self._on_progress is None:
            return
        done = len(self.succeeded) + len(self.failed) + len(self.skipped) + len(self.not_sent)
        counts = (len(self.succeeded), len(self.failed), len(self.skipped), len(self.not_sent))
        try:
            self._on_progress(BatchProgress(done, len(self.targets), *counts))
        except Exception:
            # A broken progress display must not abort the batch and lose the
            # accounting of campaigns already changed: report it once, go on.
            logger.exception(
                "on_progress raised; progress reports are off for this batch",
                extra={"callback": "on_progress"},
            )
            self._on_progress = None

    def record(self, outcome: bulk.Outcome[str, None]) -> None:
        """One change finished: settle it (its audit line) and put it in its bucket."""
        result = self.sender.settle(outcome)
        self.attempts += result.attempts
        self.settled.add(result.campaign_id)
        if result.error is None:
            self.succeeded.append(result.campaign_id)
        elif not result.sent:
            self.not_sent[result.campaign_id] = result.error
        else:
            self.failed[result.campaign_id] = result.error
        self.progress()

    def preflight(self, found: Iterable[Campaign], *, skip_unchanged: bool) -> list[str]:
        """Sort the targets by what the search found; return the ids still to send."""
        self.current = {campaign.id: campaign.is_active for campaign in found}
        to_send = []
        for campaign_id, active in self.targets.items():
            if campaign_id not in self.current:
                self.failed[campaign_id] = CampaignNotFoundError(
                    "not among the account's campaigns (checked by search before sending)",
                    campaign_id=campaign_id,
                )
                self.failed_unsent.add(campaign_id)
                _audit(campaign_id, active, "failed", 0, error="CampaignNotFoundError")
            elif skip_unchanged and self.current[campaign_id] == active:
                self.skipped.append(campaign_id)
                _audit(campaign_id, active, "skipped", 0)
            else:
                to_send.append(campaign_id)
        self.settled.update(self.failed, self.skipped)
        if self.failed or self.skipped:
            self.progress()
        return to_send

    def plan(self, to_send: list[str]) -> BatchResult:
        """The result of a dry run: what a real one would send."""
        for campaign_id in to_send:
            _audit(campaign_id, self.targets[campaign_id], "planned", 0)
        return BatchResult(
            targets=dict(self.targets),
            failed=self.failed,
            skipped=tuple(self.skipped),
            dry_run=True,
            planned=tuple(to_send),
            current=self.current,
            elapsed=time.monotonic() - self._started,
            failed_unsent=self.failed_unsent,
        )

    def result(self, stopped: Literal["deadline", "interrupted"] | None = None) -> BatchResult:
        """The result so far; when the work was ``stopped``, the rest is unknown or not sent."""
        unknown: list[str] = []
        unsent: dict[str, Exception] = {}
        if stopped is not None:
            unsettled = (i for i in self.targets if i not in self.settled)
            unknown, unsent = self.sender.stop(unsettled, stopped)
            self.not_sent.update(unsent)
        sender = self.sender
        stopped_by = sender.fatal or next(iter(unsent.values()), None) or sender.first_unsent
        return BatchResult(
            targets=dict(self.targets),
            succeeded=tuple(self.succeeded),
            failed=self.failed,
            skipped=tuple(self.skipped),
            current=self.current,
            attempts=self.attempts,
            elapsed=time.monotonic() - self._started,
            not_sent=self.not_sent,
            unknown=tuple(unknown),
            stopped_by=stopped_by,
            failed_unsent=self.failed_unsent,
        )


async def apply(
    targets: Mapping[str, bool],
    *,
    operation: str,
    send: SendStatus,
    search: Search,
    max_concurrency: int,
    on_progress: Callable[[BatchProgress], None] | None = None,
    skip_unchanged: bool = False,
    dry_run: bool = False,
    deadline: float | None = None,
    on_interrupt: Callable[[BatchResult], None] | None = None,
) -> BatchResult:
    """Bring every campaign of ``targets`` to its wanted state; see `BatchResult`.

    ``deadline`` bounds the whole batch in seconds: when it passes, the work
    stops and the partial result comes back (in-flight ids ``unknown``, the
    rest ``not_sent``). When the calling task is cancelled (or interrupted),
    every id gets its audit line, ``on_interrupt`` receives the partial
    result, and the cancellation goes on. ``operation`` names the public call
    (its span, when OpenTelemetry traces).
    """
    options: dict[str, Any] = {
        "convoso.bulk.total": len(targets),
        "convoso.bulk.max_concurrency": max_concurrency,
        "convoso.bulk.skip_unchanged": skip_unchanged,
        "convoso.bulk.dry_run": dry_run,
    }
    if deadline is not None:
        options["convoso.bulk.deadline"] = deadline
    with telemetry.bulk_call(operation, options) as observed:
        tally = _Tally(targets, _Sender(targets, send, observed), on_progress)
        try:
            result = await _run(
                tally,
                search=search,
                max_concurrency=max_concurrency,
                skip_unchanged=skip_unchanged,
                dry_run=dry_run,
                deadline=deadline,
            )
        except BaseException as exc:
            if isinstance(exc, Exception):
                raise  # a failure of the batch itself (the pre-flight search, say)
            # Cancelled, interrupted: account for every id, then let it go on.
            result = tally.result(stopped="interrupted")
            _tell(on_interrupt, result)
            observed.finish(result_counts(result), error=exc)
            raise
        report(observed, result)
        return result


async def _run(
    tally: _Tally,
    *,
    search: Search,
    max_concurrency: int,
    skip_unchanged: bool,
    dry_run: bool,
    deadline: float | None,
) -> BatchResult:
    """`apply`'s work: the pre-flight search, then the changes, within the deadline."""
    with anyio.move_on_after(math.inf if deadline is None else deadline) as scope:
        to_send = list(tally.targets)
        if skip_unchanged or dry_run:
            to_send = tally.preflight(await search(), skip_unchanged=skip_unchanged)
        if dry_run:
            return tally.plan(to_send)
        await bulk.run_all(
            to_send,
            tally.sender.change,
            max_concurrency=max_concurrency,
            on_outcome=tally.record,
        )
    if scope.cancelled_caught:
        logger.warning(
            "the batch's deadline of %gs passed: stopping it",
            deadline,
            extra={"deadline": deadline},
        )
        return tally.result(stopped="deadline")
    return tally.result()


#: The buckets of a stream of outcomes (a stream skips nothing).
_STREAM_BUCKETS = ("succeeded", "failed", "not_sent", "unknown")


def report(observed: telemetry.BulkCall, result: BatchResult) -> None:
    """End a bulk call's span with ``result``: each bucket's count, retries, what stopped it."""
    observed.finish(
        result_counts(result),
        stopped_by=_name(result.stopped_by),
        extra={"convoso.bulk.retries": result.retries},
    )


def result_counts(result: BatchResult) -> dict[str, int]:
    """How many ids each bucket of ``result`` holds (and, for a dry run, how many are planned)."""
    counts = {
        "succeeded": len(result.succeeded),
        "failed": len(result.failed),
        "skipped": len(result.skipped),
        "not_sent": len(result.not_sent),
        "unknown": len(result.unknown),
    }
    if result.dry_run:
        counts["planned"] = len(result.planned)
    return counts


def _name(error: BaseException | None) -> str | None:
    return None if error is None else type(error).__name__


def _tell(on_interrupt: Callable[[BatchResult], None] | None, result: BatchResult) -> None:
    if on_interrupt is not None:
        try:
            on_interrupt(result)
        except Exception:
            logger.exception("on_interrupt raised", extra={"callback": "on_interrupt"})


async def stream(
    targets: Mapping[str, bool], *, operation: str, send: SendStatus, max_concurrency: int
) -> AsyncGenerator[StatusOutcome, None]:
    """Send every change of ``targets``, yielding a `StatusOutcome` as each completes.

    At the consumer's pace (see `bulk.stream`). Closed or cancelled early,
    the ids in flight get an ``outcome=unknown`` audit line. ``operation``
    names the public call (its span, when OpenTelemetry traces; a generator
    cannot hold it current across its yields, so each worker enters it).
    """
    observed = telemetry.bulk_call(
        operation,
        {"convoso.bulk.total": len(targets), "convoso.bulk.max_concurrency": max_concurrency},
    )
    sender = _Sender(targets, send, observed)
    ended: BaseException | None = None
    try:
        # `async for` alone would not close the inner generator when we are
        # closed early; aclosing does, in this task, which cancels its work.
        async with contextlib.aclosing(
            bulk.stream(targets, sender.change, max_concurrency=max_concurrency)
        ) as outcomes:
            async for outcome in outcomes:
                yield sender.settle(outcome)
    except BaseException as exc:
        ended = exc
        raise
    finally:
        # Answers the consumer never took still get their true audit line.
        for outcome in sender.answered():
            sender.settle(outcome)
        sender.stop((), "interrupted")
        if isinstance(ended, GeneratorExit):
            # The consumer left early (a `break` in `aclosing`): its choice, not a failure.
            observed.finish(sender.counts, extra={"convoso.bulk.stopped_by": "closed"})
        elif ended is not None:
            observed.finish(sender.counts, error=ended)
        else:
            observed.finish(sender.counts, stopped_by=_name(sender.stopped_by()))


# Public names report the package, where users import them from (as httpx's do).
for _public in (BatchProgress, BatchResult, StatusOutcome):
    _public.__module__ = "convoso_async"
