"""``convoso demo``: the library's main job, end to end, on the embedded fake server.

Starts a fake Convoso on loopback with thousands of campaigns, realistic
latency and a few injected faults (5xx, dropped connections, a 429), lists the
campaigns, deactivates and re-activates them all in bulk, and prints what
happened. No account, no network beyond 127.0.0.1.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Awaitable, Callable

from rich.console import Console
from rich.table import Table
from rich.text import Text

from convoso_async._bulk.changes import BatchProgress, BatchResult
from convoso_async._client import AsyncConvoso
from convoso_async._models import Campaign
from convoso_async.testing import FakeConvoso, Fault

from ._output import one_line, plural, run_with_progress, stdout_is_terminal

__all__ = ["run_demo"]

#: Ids the demo asks for that the fake does not have, to show failure reporting.
UNKNOWN_IDS = ("999998", "999999")


#: One bulk change the demo made: its label, its result and the requests the fake saw.
_Phase = tuple[str, BatchResult, int]


async def run_demo(campaigns: int, latency: float, concurrency: int, rate: float | None) -> int:
    """Run the demo; 0 if every reported outcome matches the server's final state.

    On a terminal it draws tables and progress bars; in a pipe, a file or a
    cron mail it prints plain lines that are never wrapped.
    """
    terminal = stdout_is_terminal()
    # Off a terminal: no colour codes, and no wrapping at rich's default 80 columns.
    console = Console(highlight=False) if terminal else Console(highlight=False, soft_wrap=True)
    fake = FakeConvoso(
        campaigns=campaigns, latency=(latency * 0.5, latency * 1.5) if latency else 0.0, seed=7
    )
    faults = _add_faults(fake)
    async with fake.serve() as url:
        console.print(f"fake Convoso listening on [bold]{url}[/bold] ({campaigns} campaigns)")
        async with AsyncConvoso(
            fake.TOKEN, base_url=url, max_concurrency=concurrency, rate_limit=rate, timeout=5.0
        ) as convoso:
            found = await convoso.campaigns.search()
            _print_search(console, found, terminal=terminal)
            ids = [c.id for c in found] + list(UNKNOWN_IDS)
            phases = await _change_all(convoso, fake, ids)
    _print_phases(console, phases, terminal=terminal)
    _print_faults_and_failures(console, faults, phases)
    return _verify(console, fake, phases)


def _add_faults(fake: FakeConvoso) -> list[Fault]:
    """A few of what a real day brings on the status endpoint: 503s, drops, one 429."""
    status = "/campaigns/status"
    return [
        fake.add_fault(Fault("status", status=503, path=status, probability=0.01)),
        fake.add_fault(Fault("drop", path=status, probability=0.003)),
        fake.add_fault(Fault("rate_limit", path=status, on_requests={500}, retry_after=0.5)),
    ]


def _print_search(console: Console, found: list[Campaign], *, terminal: bool) -> None:
    """How many campaigns the search found, and the first five."""
    active = sum(c.is_active for c in found)
    console.print(f"search: {plural(len(found), 'campaign')}, {active} active")
    preview = Table(title="first campaigns")
    for column in ("id", "name", "status", "last call"):
        preview.add_column(column)
    for c in found[:5]:
        last = "" if c.last_call_date is None else str(c.last_call_date)
        if terminal:
            preview.add_row(Text(c.id), Text(c.name), c.status.label, last)
        else:
            print(f"{c.id}\t{one_line(c.name)}\t{c.status.label}\t{last}")
    if terminal:
        console.print(preview)


async def _change_all(convoso: AsyncConvoso, fake: FakeConvoso, ids: list[str]) -> list[_Phase]:
    """Deactivate every id, then re-activate every one, each with a progress bar."""
    phases: list[_Phase] = []
    for label, wanted in (("deactivate all", False), ("re-activate all", True)):
        before = len(fake.requests)

        def change(
            on_progress: Callable[[BatchProgress], None] | None, wanted: bool = wanted
        ) -> Awaitable[BatchResult]:
            return convoso.campaigns.set_status_many(ids, wanted, on_progress=on_progress)

        result = await run_with_progress(label, len(ids), change, show=sys.stderr.isatty())
        phases.append((label, result, len(fake.requests) - before))
    return phases


def _print_phases(console: Console, phases: list[_Phase], *, terminal: bool) -> None:
    """What each phase did: a table on a terminal, a line per phase otherwise."""
    # The not-sent and unknown buckets get columns only when a batch stopped early,
    # so the table fits an 80-column terminal in the usual case.
    stopped = any(result.not_sent or result.unknown for _, result, _ in phases)
    columns = ["ids", "ok", "failed", "requests", "retries", "time", "req/s"]
    if stopped:
        columns[3:3] = ["not sent", "unknown"]
    table = Table(title="what happened")
    table.add_column("phase", no_wrap=True)
    for column in columns:
        table.add_column(column, justify="right")
    for label, result, requests in phases:
        counts = [len(result.targets), len(result.succeeded), len(result.failed)]
        if stopped:
            counts += [len(result.not_sent), len(result.unknown)]
        cells = [str(count) for count in (*counts, requests, result.retries)]
        cells.append(f"{result.elapsed:.2f}s")
        cells.append(f"{requests / result.elapsed:,.0f}" if result.elapsed else "-")
        if terminal:
            table.add_row(label, *cells)
        else:
            pairs = dict(zip(columns, cells, strict=True))
            took = pairs.pop("time")
            print(f"{label}: " + ", ".join(f"{v} {k}" for k, v in pairs.items()) + f" in {took}")
    if terminal:
        console.print(table)


def _print_faults_and_failures(console: Console, faults: list[Fault], phases: list[_Phase]) -> None:
    console.print(
        "faults injected: "
        + ", ".join(
            f"{f.kind}{'/' + str(f.status) if f.kind == 'status' else ''} x{f.hits}" for f in faults
        )
    )
    for label, result, _ in phases:
        for campaign_id, error in sorted(result.failed.items()):
            console.print(f"[red]{label}: {campaign_id} failed[/red]: {error}", soft_wrap=True)


def _verify(console: Console, fake: FakeConvoso, phases: list[_Phase]) -> int:
    """Trust, but verify: every success the client reported is the server's state."""
    states = fake.statuses()
    mismatched = [
        campaign_id
        for _, result, _ in phases[-1:]
        for campaign_id in result.succeeded
        if states.get(campaign_id) != "Y"
    ]
    unexpected = [
        campaign_id
        for _, result, _ in phases
        for campaign_id in result.failed
        if campaign_id not in UNKNOWN_IDS
    ]
    if mismatched or unexpected:
        console.print(
            f"[red]FAILED[/red]: {len(mismatched)} successes not on the server, "
            f"{len(unexpected)} unexpected failures"
        )
        return 1
    console.print(
        "[green]ok[/green]: every campaign accounted for; the server's final state matches "
        f"every reported success ({time.strftime('%H:%M:%S')})"
    )
    return 0
