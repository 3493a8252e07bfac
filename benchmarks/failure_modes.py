"""Failure modes: a 3,000-id bulk change when Convoso is down, hangs, or refuses the token.

Each row is one bulk change (`set_status_many` semantics) with the client's default options
(``timeout=30``, ``max_retries=3``, 8 in flight, real backoff) against a fake Convoso in its own
process, started afresh for the row, which counts every request that reached it:

- ``503 everywhere``: every request answered HTTP 503 at once;
- ``no answer``: the connection is accepted, the request read, and no answer ever comes;
- ``bad token``: the server is fine, the token is refused (``AuthenticationError``);
- ``10% faults``: the soak's mix (503s, dropped connections, answers later than the timeout,
  429s) on a seeded 10% of requests, with the soak's client (``timeout=1``, 32 in flight).

Two clients per scenario:

- ``before``: the old behaviour: every id sent and retried on its own (the same pipeline with
  the circuit breaker and the retry budget off, each id a ``set_status`` call, bounded by the
  bulk executor as `set_status_many` used to be). A run that would take too long is stopped at
  ``--before-cap`` seconds; its seconds and requests are then projected from its pace (``~``).
  The ids in flight when it stops have no outcome: the old behaviour lost them.
- ``after``: ``set_status_many`` with the defaults (breaker, budget, batch-fatal stop).

"accounted" counts the ids that ended in exactly one bucket of the result (succeeded, failed,
skipped, not sent, unknown); "reached server, unreported" counts ids the server saw whose
outcome the caller never learned.

    python benchmarks/failure_modes.py                 # ~4 minutes
    python benchmarks/failure_modes.py --ids 600 --before-cap 20
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio
from _common import TOKEN, add_fault_mix, print_table, serve, serve_until_signalled

from convoso_async import AsyncConvoso, BatchResult, ConvosoError
from convoso_async._bulk import executor as bulk
from convoso_async._defaults import DEFAULT_MAX_CONCURRENCY, DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT
from convoso_async.testing import FakeConvoso, Fault

FIRST_ID = 1001
BAD_TOKEN = "not-the-right-token-0000"
SCENARIOS = ("503 everywhere", "no answer", "bad token", "10% faults")
FAULT_RATE = 0.10
#: The soak's client for the 10% row: a short timeout, so late answers cost seconds, not minutes.
SOAK_TIMEOUT = 1.0
SOAK_CONCURRENCY = 32
#: "never answers": longer than any run here.
FOREVER = 10**6


# -- the server child --------------------------------------------------------------------------


def serve_main(args: argparse.Namespace) -> int:
    """Serve the scenario's fake until SIGTERM; write the ids it saw to ``--dump`` first."""
    fake = FakeConvoso(campaigns=args.campaigns, seed=args.seed)
    if args.serve == "503 everywhere":
        fake.add_fault(Fault("status", status=503))
    elif args.serve == "no answer":
        fake.add_fault(Fault("slow", delay=FOREVER))
    elif args.serve == "10% faults":
        add_fault_mix(fake, FAULT_RATE, timeout=SOAK_TIMEOUT)

    def dump() -> None:
        records = fake.requests
        args.dump.write_text(
            json.dumps(
                {
                    "requests": len(records),
                    "ids": sorted({r.campaign_id for r in records if r.campaign_id}),
                    "statuses": fake.statuses(),
                }
            )
        )

    # Written before the server stops: answers that never come may hold its shutdown up.
    serve_until_signalled(fake, on_signal=dump)
    return 0


# -- the clients ---------------------------------------------------------------------------------


@dataclass
class Row:
    scenario: str
    client: str
    seconds: float
    capped: bool = False
    done: int = 0  # ids with an outcome the caller saw
    succeeded: int = 0
    failed: int = 0
    not_sent: int = 0
    unknown: int = 0
    accounted: int = 0
    requests: int = 0
    unreported: int = 0
    wrong_state: int = 0


def client_options(scenario: str) -> tuple[float, int]:
    """The timeout and concurrency: the defaults, or the soak's for the 10% row."""
    if scenario == "10% faults":
        return SOAK_TIMEOUT, SOAK_CONCURRENCY
    return DEFAULT_TIMEOUT, DEFAULT_MAX_CONCURRENCY


async def run_before(url: str, scenario: str, ids: list[str], cap: float) -> tuple[Row, set[str]]:
    token = BAD_TOKEN if scenario == "bad token" else TOKEN
    outcomes: list[bulk.Outcome[str, None]] = []
    timeout, concurrency = client_options(scenario)
    started = time.monotonic()
    async with AsyncConvoso(
        token,
        base_url=url,
        timeout=timeout,
        max_concurrency=concurrency,
        circuit_breaker=False,
        retry_budget=False,
    ) as client:
        with anyio.move_on_after(cap if cap > 0 else math.inf) as scope:
            await bulk.run_all(
                ids,
                lambda i: client.campaigns.set_status(i, False),
                max_concurrency=client.max_concurrency,
                on_outcome=outcomes.append,
            )
    row = Row(scenario, "before", time.monotonic() - started, capped=scope.cancelled_caught)
    row.done = len(outcomes)
    row.succeeded = sum(o.ok for o in outcomes)
    row.failed = row.done - row.succeeded
    row.accounted = row.done
    return row, {o.key for o in outcomes}


async def run_after(url: str, scenario: str, ids: list[str]) -> tuple[Row, BatchResult]:
    token = BAD_TOKEN if scenario == "bad token" else TOKEN
    timeout, concurrency = client_options(scenario)
    started = time.monotonic()
    async with AsyncConvoso(
        token, base_url=url, timeout=timeout, max_concurrency=concurrency
    ) as client:
        result = await client.campaigns.set_status_many(ids, False)
    row = Row(scenario, "after", time.monotonic() - started)
    row.succeeded = len(result.succeeded)
    row.failed = len(result.failed)
    row.not_sent = len(result.not_sent)
    row.unknown = len(result.unknown)
    buckets = [*result.succeeded, *result.failed, *result.skipped, *result.not_sent]
    buckets += result.unknown
    row.accounted = len(set(buckets)) if len(buckets) == len(set(buckets)) else -1
    row.done = row.accounted
    return row, result


def measure(args: argparse.Namespace, scenario: str, client: str, scratch: Path) -> Row:
    ids = [str(FIRST_ID + k) for k in range(args.ids)]
    dump = scratch / f"{scenario.replace(' ', '_').replace('%', '')}-{client}.json"
    child = [
        __file__,
        f"--serve={scenario}",
        f"--dump={dump}",
        f"--campaigns={args.ids}",
        f"--seed={args.seed}",
    ]
    with serve(child) as server:
        if client == "before":
            row, reported = anyio.run(run_before, server.url, scenario, ids, args.before_cap)
            succeeded_ids: set[str] = set()
        else:
            row, result = anyio.run(run_after, server.url, scenario, ids)
            reported = {*result.succeeded, *result.failed, *result.unknown}
            succeeded_ids = set(result.succeeded)
    seen: dict[str, object] = json.loads(dump.read_text())
    row.requests = int(seen["requests"])  # type: ignore[call-overload]
    row.unreported = len(set(seen["ids"]) - reported)  # type: ignore[call-overload]
    statuses: dict[str, str] = seen["statuses"]  # type: ignore[assignment]
    row.wrong_state = sum(statuses[i] != "N" for i in succeeded_ids)
    return row


def projected(row: Row, total: int, scenario: str) -> tuple[str, str]:
    """Seconds and requests, projected to the whole batch for a capped ``before`` run."""
    if not row.capped:
        return f"{row.seconds:.1f}", f"{row.requests:,}"
    if row.done > 0:
        scale = total / row.done
        return f"~{row.seconds * scale:,.0f}", f"~{row.requests * scale:,.0f}"
    if scenario == "no answer":
        # Every attempt of every id waits out the whole timeout, 8 ids at a time.
        rounds = math.ceil(total / DEFAULT_MAX_CONCURRENCY)
        seconds = rounds * (DEFAULT_MAX_RETRIES + 1) * DEFAULT_TIMEOUT
        return f"~{seconds:,.0f}", f"~{total * (DEFAULT_MAX_RETRIES + 1):,}"
    return "-", "-"


def report(rows: Sequence[Row], total: int) -> None:
    table = []
    for row in rows:
        seconds, requests = projected(row, total, row.scenario)
        note = f"stopped at {row.seconds:.0f} s" if row.capped else ""
        accounted = f"{row.accounted:,} / {total:,}" if row.accounted >= 0 else "DOUBLED"
        table.append(
            (
                row.scenario,
                row.client,
                seconds,
                requests,
                row.succeeded,
                row.failed,
                row.not_sent if row.client == "after" else "-",
                row.unknown if row.client == "after" else "-",
                accounted,
                row.unreported,
                row.wrong_state,
                note or "-",
            )
        )
    print_table(
        [
            "scenario",
            "client",
            "seconds",
            "requests sent",
            "succeeded",
            "failed",
            "not sent",
            "unknown",
            "ids accounted",
            "reached server, unreported",
            "wrong state",
            "note",
        ],
        table,
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ids", type=int, default=3000, help="campaigns in the batch")
    parser.add_argument(
        "--before-cap",
        type=float,
        default=45.0,
        help="stop a 'before' run after this many seconds and project (0: never)",
    )
    parser.add_argument("--seed", type=int, default=1, help="seeds the 10%% row's fault draws")
    parser.add_argument(
        "--scenarios", nargs="+", choices=SCENARIOS, default=list(SCENARIOS), metavar="S"
    )
    parser.add_argument("--serve", choices=SCENARIOS, help=argparse.SUPPRESS)
    parser.add_argument("--dump", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--campaigns", type=int, default=3000, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.ids < 1:
        parser.error("--ids must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve:
        return serve_main(args)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="convoso-failure-modes-") as scratch:
        for scenario in args.scenarios:
            for client in ("before", "after"):
                try:
                    rows.append(measure(args, scenario, client, Path(scratch)))
                except ConvosoError as error:  # the batch itself must never raise
                    print(f"{scenario} / {client}: raised {error!r}", file=sys.stderr)
                    return 1
                print(f"done: {scenario} / {client}", file=sys.stderr, flush=True)
    print(f"python benchmarks/failure_modes.py --ids {args.ids} --before-cap {args.before_cap:g}\n")
    report(rows, args.ids)
    faults = [r for r in rows if r.scenario == "10% faults" and r.client == "after"]
    after = [r for r in rows if r.client == "after"]
    ok = all(r.accounted == args.ids and r.unreported == 0 and r.wrong_state == 0 for r in after)
    ok = ok and all(r.succeeded == args.ids for r in faults)
    print(
        "\nPASS: after, every id in one bucket, every id the server saw reported, "
        "and the 10% row all succeeded"
        if ok
        else "\nFAIL: see the after rows"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
