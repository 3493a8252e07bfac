"""Bulk status changes: the plan, the results, and the audit trail.

`apply` turns ``{campaign_id: wanted_active}`` into requests through the bulk
ledger (`._bulk.ledger`, which accounts for every id in exactly one of
``succeeded``, ``failed``, ``skipped``, ``not_sent`` or ``unknown``, whatever
stops it: a batch-fatal answer, the circuit breaker, a deadline, a
cancellation). This module adds what is about campaigns: the pre-flight search
of ``skip_unchanged`` and ``dry_run``, `BatchResult` and `StatusOutcome`, and
one line per final outcome on the ``convoso_async.audit`` logger. The
campaigns resource calls this; it does not know HTTP.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import Any

import attrs

from convoso_async import _telemetry as telemetry
from convoso_async._errors import BatchError, CampaignNotFoundError, NotSentError
from convoso_async._log import audit_logger, logger
from convoso_async._models import Campaign

from .ledger import BATCH_FATAL, BatchProgress, Bucket, Entry, Ledger, Sent, StopReason, within

__all__ = [
    "BATCH_FATAL",
    "BatchProgress",
    "BatchResult",
    "StatusOutcome",
    "apply",
    "error_to_dict",
    "report",
    "result_counts",
    "stream",
]

#: Sends one status change: what came back, with the attempts it took.
SendStatus = Callable[[str, bool], Awaitable[Sent]]
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


def _frozen_errors(errors: Mapping[str, Exception]) -> Mapping[str, Exception]:
    return MappingProxyType(dict(errors))


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
    #: HTTP attempts beyond the first, as the ledger that made this result counted them.
    _retries: int = attrs.field(default=0, repr=False, alias="retries")

    @property
    def ok(self) -> bool:
        """True when every campaign succeeded or was skipped."""
        return not (self.failed or self.not_sent or self.unknown)

    @property
    def retries(self) -> int:
        """HTTP attempts beyond the first, over the whole batch."""
        return self._retries

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


def _ledger(
    targets: Mapping[str, bool], on_progress: Callable[[BatchProgress], None] | None = None
) -> Ledger[str]:
    """The ledger of a bulk change of ``targets``: each entry audited as a campaign's."""

    def audit(entry: Entry[str]) -> None:
        detail: dict[str, str] = {}
        if entry.reason is not None and entry.bucket == "not_sent":
            detail["reason"] = entry.reason
        elif entry.error is not None and entry.bucket != "unknown":
            detail["error"] = type(entry.error).__name__
        _audit(entry.key, targets[entry.key], entry.bucket, entry.attempts, **detail)

    def unsent_error(campaign_id: str, why: str, reason: StopReason) -> Exception:
        return NotSentError(why, reason=reason, campaign_id=campaign_id)

    return Ledger(
        targets,
        audit=audit,
        on_progress=on_progress,
        unsent_error=unsent_error,
        noun="campaigns",
        key_field="campaign_id",
    )


def _operation(
    targets: Mapping[str, bool],
    send: SendStatus,
    observed: telemetry.BulkCall = telemetry.NOT_OBSERVED,
) -> Callable[[str], Awaitable[Sent]]:
    """Each id's change, sent with the bulk call's span current (a stream's workers need it)."""

    async def change(campaign_id: str) -> Sent:
        with observed.current():
            return await send(campaign_id, targets[campaign_id])

    return change


def _preflight(
    ledger: Ledger[str],
    targets: Mapping[str, bool],
    current: Mapping[str, bool],
    *,
    skip_unchanged: bool,
) -> list[str]:
    """Sort the targets by what the search found (``current``); return the ids still to send."""
    to_send = []
    for campaign_id, active in targets.items():
        if campaign_id not in current:
            error = CampaignNotFoundError(
                "not among the account's campaigns (checked by search before sending)",
                campaign_id=campaign_id,
            )
            ledger.record(Entry(campaign_id, "failed", error))
        elif skip_unchanged and current[campaign_id] == active:
            ledger.record(Entry(campaign_id, "skipped"))
        else:
            to_send.append(campaign_id)
    if ledger.entries:
        ledger.progress()
    return to_send


def _result(
    ledger: Ledger[str],
    targets: Mapping[str, bool],
    current: Mapping[str, bool],
    started: float,
    *,
    planned: tuple[str, ...] | None = None,
) -> BatchResult:
    """The `BatchResult` the ledger's records make; with ``planned``, a dry run's."""
    return BatchResult(
        targets=dict(targets),
        succeeded=tuple(entry.key for entry in ledger.bucket("succeeded")),
        failed={entry.key: _error(entry) for entry in ledger.bucket("failed")},
        skipped=tuple(entry.key for entry in ledger.bucket("skipped")),
        dry_run=planned is not None,
        planned=planned or (),
        current=current,
        attempts=ledger.attempts,
        elapsed=time.monotonic() - started,
        not_sent={entry.key: _error(entry) for entry in ledger.bucket("not_sent")},
        unknown=tuple(entry.key for entry in ledger.bucket("unknown")),
        stopped_by=None if planned is not None else ledger.stopped_by,
        retries=ledger.retries,
    )


def _error(entry: Entry[str]) -> Exception:
    assert entry.error is not None  # failed and not-sent entries carry their error
    return entry.error


class _Change:
    """One `apply` call: its ledger, and what the pre-flight search found."""

    def __init__(
        self, targets: Mapping[str, bool], on_progress: Callable[[BatchProgress], None] | None
    ) -> None:
        self.targets = targets
        self.ledger = _ledger(targets, on_progress)
        self.current: dict[str, bool] = {}
        self.planned: tuple[str, ...] | None = None
        self._started = time.monotonic()

    def result(self) -> BatchResult:
        return _result(self.ledger, self.targets, self.current, self._started, planned=self.planned)

    async def run(
        self,
        send: SendStatus,
        search: Search,
        *,
        max_concurrency: int,
        skip_unchanged: bool,
        dry_run: bool,
        observed: telemetry.BulkCall,
    ) -> None:
        """The pre-flight search (if one is asked for), then the changes; a dry run plans."""
        to_send = list(self.targets)
        if skip_unchanged or dry_run:
            self.current = {campaign.id: campaign.is_active for campaign in await search()}
            to_send = _preflight(
                self.ledger, self.targets, self.current, skip_unchanged=skip_unchanged
            )
        if dry_run:
            for campaign_id in to_send:
                _audit(campaign_id, self.targets[campaign_id], "planned", 0)
            self.planned = tuple(to_send)
            return
        operation = _operation(self.targets, send, observed)
        await self.ledger.run(operation, to_send, max_concurrency=max_concurrency)


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
        change = _Change(targets, on_progress)

        async def work() -> None:
            await change.run(
                send,
                search,
                max_concurrency=max_concurrency,
                skip_unchanged=skip_unchanged,
                dry_run=dry_run,
                observed=observed,
            )

        try:
            if not await within(deadline, work):
                change.ledger.stop("deadline")
        except BaseException as exc:
            if isinstance(exc, Exception):
                raise  # a failure of the batch itself (the pre-flight search, say)
            # Cancelled, interrupted: account for every id, then let it go on.
            change.ledger.stop("interrupted")
            result = change.result()
            _tell(on_interrupt, result)
            observed.finish(result_counts(result), error=exc)
            raise
        result = change.result()
        report(observed, result)
        return result


#: The buckets of a stream of outcomes (a stream skips nothing).
_STREAM_BUCKETS: tuple[Bucket, ...] = ("succeeded", "failed", "not_sent", "unknown")


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

    At the consumer's pace (see `executor.stream`). Closed or cancelled early,
    the ids in flight get an ``outcome=unknown`` audit line. ``operation``
    names the public call (its span, when OpenTelemetry traces; a generator
    cannot hold it current across its yields, so each worker enters it).
    """
    observed = telemetry.bulk_call(
        operation,
        {"convoso.bulk.total": len(targets), "convoso.bulk.max_concurrency": max_concurrency},
    )
    ledger = _ledger(targets)
    entries = ledger.stream(_operation(targets, send, observed), max_concurrency=max_concurrency)
    ended: BaseException | None = None
    try:
        # `async for` alone would not close the inner generator when we are
        # closed early; aclosing does, in this task, which cancels its work.
        async with contextlib.aclosing(entries) as outcomes:
            async for entry in outcomes:
                yield StatusOutcome(entry.key, targets[entry.key], entry.error, entry.attempts)
    except BaseException as exc:
        ended = exc
        raise
    finally:
        # The ledger recorded each answer as it came (taken by the consumer or
        # not), and the ids in flight as unknown when its stream closed.
        counts = ledger.counts(_STREAM_BUCKETS)
        if isinstance(ended, GeneratorExit):
            # The consumer left early (a `break` in `aclosing`): its choice, not a failure.
            observed.finish(counts, extra={"convoso.bulk.stopped_by": "closed"})
        elif ended is not None:
            observed.finish(counts, error=ended)
        else:
            observed.finish(counts, stopped_by=_name(ledger.stopped_by))


# Public names report the package, where users import them from (as httpx's do).
for _public in (BatchProgress, BatchResult, StatusOutcome):
    _public.__module__ = "convoso_async"
