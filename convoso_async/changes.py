"""Bulk status changes: the plan, the accounting, and the audit trail.

`apply` turns ``{campaign_id: wanted_active}`` into requests through the bulk
executor and accounts for every id in exactly one of ``succeeded``, ``failed``
or ``skipped``. Each final outcome is one line on the ``convoso_async.audit``
logger. The campaigns resource calls this; it does not know HTTP.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import Any

import attrs

from . import bulk
from .errors import BatchError, CampaignNotFoundError
from .log import audit_logger, logger
from .models import Campaign
from .transport import AttemptCounter

__all__ = ["BatchProgress", "BatchResult", "StatusOutcome", "apply", "error_to_dict", "stream"]

SendStatus = Callable[[str, bool, AttemptCounter], Awaitable[None]]
Search = Callable[[], Awaitable[list[Campaign]]]


@attrs.frozen
class StatusOutcome:
    """The outcome of one campaign's status change: ``error`` is None on success."""

    campaign_id: str
    active: bool
    error: Exception | None = None
    attempts: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"campaign_id", "active", "ok", "attempts", "error"}``.

        ``error`` is None on success, else ``{"error": class name, "message": text}``.
        """
        return {
            "campaign_id": self.campaign_id,
            "active": self.active,
            "ok": self.ok,
            "attempts": self.attempts,
            "error": None if self.error is None else error_to_dict(self.error),
        }


@attrs.frozen
class BatchProgress:
    """Counts passed to ``on_progress`` as a bulk change advances."""

    done: int
    total: int
    succeeded: int
    failed: int
    skipped: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready counts: ``{"done", "total", "succeeded", "failed", "skipped"}``."""
        return attrs.asdict(self)


def _frozen_errors(errors: Mapping[str, Exception]) -> Mapping[str, Exception]:
    return MappingProxyType(dict(errors))


@attrs.frozen
class BatchResult:
    """Where every campaign of a bulk change ended up.

    Every unique id is in exactly one of ``succeeded``, ``failed`` (id -> the
    error) or ``skipped`` (already in the wanted state, with
    ``skip_unchanged``). In a dry run nothing is sent: ``planned`` holds the
    ids a real run would send, ``current`` the states the search found.

        >>> result = await convoso.campaigns.set_status_many(ids, False)
        >>> print(result.summary())
        >>> result.raise_for_failures()
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

    @property
    def ok(self) -> bool:
        """True when no campaign failed."""
        return not self.failed

    @property
    def retries(self) -> int:
        """HTTP attempts beyond the first, over the whole batch."""
        sent = len(self.succeeded) + sum(
            1 for e in self.failed.values() if not isinstance(e, _LocalNotFound)
        )
        return max(0, self.attempts - sent)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; the document ``convoso campaigns activate --json`` prints.

        Every bucket of ids is a list (``succeeded``, ``skipped``...), ``failed``
        maps each id to ``{"error": class name, "message": text}``, ``planned``
        (dry run) lists ``{"id", "active", "currently_active"}``; with ``ok``,
        ``total``, ``retries``, ``elapsed_seconds`` and the one-line ``summary``.
        Return it from a web handler as is.
        """
        out: dict[str, Any] = {"ok": self.ok, "dry_run": self.dry_run, "total": len(self.targets)}
        for field in attrs.fields(type(self)):
            value = getattr(self, field.name)
            if field.name in ("targets", "current", "dry_run", "attempts", "elapsed"):
                continue
            if field.name == "planned":
                out["planned"] = [
                    {"id": i, "active": self.targets[i], "currently_active": self.current.get(i)}
                    for i in value
                ]
            else:
                out[field.name] = _plain(value)
        out["retries"] = self.retries
        out["elapsed_seconds"] = round(self.elapsed, 3)
        out["summary"] = self.summary()
        return out

    def raise_for_failures(self) -> None:
        """Raise one `BatchError` carrying every failure, if any campaign failed."""
        if self.failed:
            raise BatchError(self.failed, total=len(self.targets))

    def summary(self) -> str:
        """One line, e.g. ``1000 campaigns: 997 succeeded, 3 failed, 0 skipped in 4.2s``."""
        if self.dry_run:
            changes = sum(1 for i in self.planned if self.current.get(i) != self.targets[i])
            return (
                f"dry run, {len(self.targets)} campaigns: {len(self.planned)} would be sent "
                f"({changes} would change), {len(self.skipped)} skipped, "
                f"{len(self.failed)} failed"
            )
        return (
            f"{len(self.targets)} campaigns: {len(self.succeeded)} succeeded, "
            f"{len(self.failed)} failed, {len(self.skipped)} skipped in {self.elapsed:.2f}s"
        )


class _LocalNotFound(CampaignNotFoundError):
    """Unknown id found by the pre-flight search: failed without a request."""


def _plain(value: Any) -> Any:
    """``value`` as JSON types: tuples of ids as lists, errors as `error_to_dict`."""
    if isinstance(value, BaseException):
        return error_to_dict(value)
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (tuple, list, set, frozenset)):
        return [_plain(item) for item in value]
    return value


def error_to_dict(error: BaseException) -> dict[str, str]:
    """``{"error": "CampaignNotFoundError", "message": "campaign '9' does not exist"}``.

    The class named is the nearest public one, so an internal subclass shows
    as the error users catch.
    """
    public = next(c for c in type(error).__mro__ if not c.__name__.startswith("_"))
    return {"error": public.__name__, "message": str(error)}


def _audit(campaign_id: str, active: bool, outcome: str, attempts: int, **extra: object) -> None:
    if not audit_logger.isEnabledFor(logging.INFO):
        return
    wanted = "active" if active else "inactive"
    detail = "".join(f" {key}={value}" for key, value in extra.items())
    audit_logger.info(
        "campaign=%s wanted=%s outcome=%s attempts=%d%s",
        campaign_id,
        wanted,
        outcome,
        attempts,
        detail,
        extra={"campaign_id": campaign_id, "wanted_active": active, "outcome": outcome},
    )


class _Sender:
    """Sends each change with its own attempt counter, and settles each outcome.

    Settling turns the executor's outcome into a `StatusOutcome` with its
    attempt count and writes its one audit line.
    """

    def __init__(self, targets: Mapping[str, bool], send: SendStatus) -> None:
        self._targets = targets
        self._send = send
        self._counters: dict[str, AttemptCounter] = {}

    async def change(self, campaign_id: str) -> None:
        counter = self._counters[campaign_id] = AttemptCounter()
        await self._send(campaign_id, self._targets[campaign_id], counter)

    def settle(self, outcome: bulk.Outcome[str, None]) -> StatusOutcome:
        campaign_id, error = outcome.key, outcome.error
        active = self._targets[campaign_id]
        tries = self._counters.pop(campaign_id).attempts
        if error is None:
            _audit(campaign_id, active, "succeeded", tries)
        else:
            _audit(campaign_id, active, "failed", tries, error=type(error).__name__)
        return StatusOutcome(campaign_id, active, error, tries)


async def apply(
    targets: Mapping[str, bool],
    *,
    send: SendStatus,
    search: Search,
    max_concurrency: int,
    on_progress: Callable[[BatchProgress], None] | None = None,
    skip_unchanged: bool = False,
    dry_run: bool = False,
) -> BatchResult:
    """Bring every campaign of ``targets`` to its wanted state; see `BatchResult`."""
    started = time.monotonic()
    total = len(targets)
    succeeded: list[str] = []
    failed: dict[str, Exception] = {}
    skipped: list[str] = []
    to_send = list(targets)
    current: dict[str, bool] = {}

    def progress() -> None:
        nonlocal on_progress
        if on_progress is None:
            return
        done = len(succeeded) + len(failed) + len(skipped)
        try:
            on_progress(BatchProgress(done, total, len(succeeded), len(failed), len(skipped)))
        except Exception:
            # A broken progress display must not abort the batch and lose the
            # accounting of campaigns already changed: report it once, go on.
            logger.exception("on_progress raised; progress reports are off for this batch")
            on_progress = None

    if skip_unchanged or dry_run:
        current = {campaign.id: campaign.is_active for campaign in await search()}
        to_send = []
        for campaign_id, active in targets.items():
            if campaign_id not in current:
                failed[campaign_id] = _LocalNotFound(
                    "not among the account's campaigns (checked by search before sending)",
                    campaign_id=campaign_id,
                )
                _audit(campaign_id, active, "failed", 0, error="CampaignNotFoundError")
            elif skip_unchanged and current[campaign_id] == active:
                skipped.append(campaign_id)
                _audit(campaign_id, active, "skipped", 0)
            else:
                to_send.append(campaign_id)
        if failed or skipped:
            progress()
    if dry_run:
        for campaign_id in to_send:
            _audit(campaign_id, targets[campaign_id], "planned", 0)
        return BatchResult(
            targets=dict(targets),
            failed=failed,
            skipped=tuple(skipped),
            dry_run=True,
            planned=tuple(to_send),
            current=current,
            elapsed=time.monotonic() - started,
        )

    attempts = 0
    sender = _Sender(targets, send)

    def record(outcome: bulk.Outcome[str, None]) -> None:
        nonlocal attempts
        settled = sender.settle(outcome)
        attempts += settled.attempts
        if settled.error is None:
            succeeded.append(settled.campaign_id)
        else:
            failed[settled.campaign_id] = settled.error
        progress()

    await bulk.run_all(to_send, sender.change, max_concurrency=max_concurrency, on_outcome=record)
    return BatchResult(
        targets=dict(targets),
        succeeded=tuple(succeeded),
        failed=failed,
        skipped=tuple(skipped),
        current=current,
        attempts=attempts,
        elapsed=time.monotonic() - started,
    )


async def stream(
    targets: Mapping[str, bool], *, send: SendStatus, max_concurrency: int
) -> AsyncGenerator[StatusOutcome, None]:
    """Send every change of ``targets``, yielding a `StatusOutcome` as each completes."""

    sender = _Sender(targets, send)
    # `async for` alone would not close the inner generator when we are
    # closed early; aclosing does, in this task, which cancels its work.
    async with contextlib.aclosing(
        bulk.stream(targets, sender.change, max_concurrency=max_concurrency)
    ) as outcomes:
        async for outcome in outcomes:
            yield sender.settle(outcome)
