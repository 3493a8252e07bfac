"""``convoso schedule apply|run``: keep campaigns in the state a schedule file wants.

Reconciling is idempotent: one search reads the live state, and only the
campaigns whose state differs from the schedule's are changed (through
``apply_statuses(..., skip_unchanged=True)``). A second ``apply`` at the same
instant therefore sends no status request at all.

``run`` reconciles at start and at every window boundary; the times it prints
are on the schedule's wall clock (its ``timezone``), with their UTC offset. The first SIGINT or
SIGTERM lets a reconciliation in progress finish (so every outcome is known
and printed) and then stops; a second one cancels it at once.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import signal
import sys

import anyio
import anyio.abc

from convoso_async import _telemetry as telemetry
from convoso_async._bulk.changes import BatchResult, report
from convoso_async._client import AsyncConvoso
from convoso_async._log import audit_logger
from convoso_async.schedule import Schedule

from ._exits import EXIT_FAILURES, EXIT_OK, UsageError
from ._output import client_from_args, print_result

__all__ = ["reconcile", "run_schedule_command"]

#: Longest single sleep while waiting for a boundary, so a wall-clock jump
#: (NTP, a suspended laptop) is noticed within this many seconds.
MAX_SLEEP = 60.0


async def reconcile(
    convoso: AsyncConvoso, schedule: Schedule, at: dt.datetime, *, dry_run: bool = False
) -> BatchResult:
    """Bring the schedule's campaigns to their state at ``at``, skipping unchanged ones.

    With OpenTelemetry tracing, a ``schedule.apply`` span holds the bulk call's
    (its outcomes are counted there, once).
    """
    targets = schedule.desired_states(at)
    attributes = {
        "convoso.schedule.at": at.isoformat(),
        "convoso.bulk.total": len(targets),
        "convoso.bulk.dry_run": dry_run,
    }
    with telemetry.bulk_call("schedule.apply", attributes, counted=False) as observed:
        result = await convoso.campaigns.apply_statuses(
            targets, skip_unchanged=True, dry_run=dry_run
        )
        report(observed, result)
        return result


def _parse_at(text: str | None, schedule: Schedule) -> dt.datetime:
    """``--at``: an ISO time; without an offset it is read on the schedule's wall clock."""
    if text is None:
        return dt.datetime.now(dt.timezone.utc)
    try:
        at = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"--at must be an ISO time such as 2026-03-09T08:00 or 2026-03-09T08:00-07:00, "
            f"not {text!r}"
        ) from None
    if at.tzinfo is None or at.utcoffset() is None:
        zone = schedule.zone
        if zone is None:
            raise UsageError(
                f"--at {text} has no UTC offset and the schedule's windows use several "
                f"time zones; add one (e.g. {text}-07:00)"
            )
        at = at.replace(tzinfo=zone)
    return at


def _wall_clock(moment: dt.datetime, schedule: Schedule) -> str:
    """``moment`` on the schedule's wall clock (UTC offset shown), to the second."""
    zone = schedule.zone
    shown = moment if zone is None else moment.astimezone(zone)
    return shown.isoformat(timespec="seconds")


def _report(result: BatchResult, at: dt.datetime, schedule: Schedule, *, as_json: bool) -> None:
    print_result(result, as_json=as_json, title=f"schedule at {_wall_clock(at, schedule)}")


async def _apply(args: argparse.Namespace, schedule: Schedule) -> int:
    at = _parse_at(args.at, schedule)
    if not args.json:
        for line in schedule.describe():
            print(line)
    async with client_from_args(args) as convoso:
        result = await reconcile(convoso, schedule, at, dry_run=args.dry_run)
    _report(result, at, schedule, as_json=args.json)
    return EXIT_OK if result.ok else EXIT_FAILURES


async def _run(args: argparse.Namespace, schedule: Schedule) -> int:
    if not audit_logger.handlers and not logging.getLogger().handlers:
        # A long-running reconciler keeps its audit trail on stderr by default.
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s audit %(message)s"))
        audit_logger.addHandler(handler)
        audit_logger.setLevel(logging.INFO)
    stopping = anyio.Event()
    failed = False
    async with client_from_args(args) as convoso, anyio.create_task_group() as group:

        async def watch_signals(
            work: list[anyio.CancelScope], *, task_status: anyio.abc.TaskStatus[None]
        ) -> None:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                task_status.started()
                async for received in signals:
                    name = signal.Signals(received).name
                    if stopping.is_set():
                        print(f"{name} again: cancelling", file=sys.stderr, flush=True)
                        for scope in work:
                            scope.cancel()
                        group.cancel_scope.cancel()
                        return
                    print(f"{name}: stopping after the current step", file=sys.stderr, flush=True)
                    stopping.set()

        current: list[anyio.CancelScope] = []
        # Signals are ours before the first line is out: a Ctrl-C at any
        # point after it gets the orderly stop, never a traceback.
        await group.start(watch_signals, current)
        for line in schedule.describe():
            print(line, flush=True)
        while not stopping.is_set():
            now = dt.datetime.now(dt.timezone.utc)
            with anyio.CancelScope() as scope:
                current.append(scope)
                result = await reconcile(convoso, schedule, now)
                current.remove(scope)
                _report(result, now, schedule, as_json=False)
                failed = not result.ok
            boundary = schedule.next_boundary(now)
            if boundary is None:
                print("the schedule has no more boundaries; stopping", flush=True)
                break
            print(f"next boundary {_wall_clock(boundary, schedule)}", flush=True)
            while not stopping.is_set():
                left = (boundary - dt.datetime.now(dt.timezone.utc)).total_seconds()
                if left <= 0:
                    break
                with anyio.move_on_after(min(left, MAX_SLEEP)):
                    await stopping.wait()
        group.cancel_scope.cancel()
    return EXIT_FAILURES if failed else EXIT_OK


def run_schedule_command(args: argparse.Namespace) -> int:
    """Dispatch ``convoso schedule ACTION``; a bad file raises `ScheduleError` (exit 2)."""
    schedule = Schedule.load(args.file)
    if args.action == "apply":
        return anyio.run(_apply, args, schedule)
    return anyio.run(_run, args, schedule)
