"""Soak: thousands of status changes through random server faults, every id accounted for.

The fake Convoso runs in a child process (this script, with ``--serve``) with a mix of
faults scripted on a seeded fraction of all requests: HTTP 503 from a "load balancer",
connections dropped without an answer, answers slower than the client's timeout, and 429s
with ``Retry-After``. The client toggles every campaign between active and inactive with
`set_status_many`, batch after batch, with real retry backoff and real 429 pauses, until the
wanted number of status changes is done. After each batch it checks that:

- every id is in exactly one of ``succeeded``, ``failed``, ``skipped`` (``unaccounted`` counts
  ids missing or doubled; it must be 0);
- every id reported as succeeded really is in the wanted state on the server, read back with
  a search (``state mismatches``; must be 0).

Around the run it counts this process's open file descriptors and TCP connections (before the
client exists, and after it is closed: no leak means equal), and its resident memory at the
start, after the first batch (warm: pools, caches and imports in place) and at the end.
The script exits 1 if any of those checks fails.

    python benchmarks/soak.py                                  # 20,000 changes: a few minutes
    python benchmarks/soak.py --changes 2000                   # a smoke run
    python benchmarks/soak.py --fault-rate 0.2 --backend trio  # harsher, on trio
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import psutil
from _common import TOKEN, add_fault_mix, print_table, serve, serve_until_signalled

from convoso_async import AsyncConvoso, BatchResult, ConvosoError
from convoso_async.testing import FakeConvoso

FIRST_ID = 1001
#: Upper bound on one batch, so that a hang ends the run instead of stalling it.
BATCH_DEADLINE = 900.0
#: A search to check the state is retried this many times on top of the client's own retries.
SEARCH_ATTEMPTS = 5
#: How long to wait for closed sockets to be released before counting descriptors.
SETTLE_SECONDS = 5.0


# -- the server child ------------------------------------------------------------------------


def serve_main(args: argparse.Namespace) -> int:
    """Serve a faulty fake until SIGTERM/SIGINT, then write its counts to ``--dump``."""
    fake = FakeConvoso(campaigns=args.campaigns, seed=args.seed)
    faults = add_fault_mix(fake, args.fault_rate, timeout=args.timeout)
    serve_until_signalled(fake)
    records = fake.requests
    dump = {
        "requests": len(records),
        "faults": {fault.kind: fault.hits for fault in faults},
        "statuses": fake.statuses(),
    }
    args.dump.write_text(json.dumps(dump))
    return 0


# -- the client ------------------------------------------------------------------------------


@dataclass
class Tally:
    """What the batches added up to."""

    changes: int = 0
    batches: int = 0
    succeeded: int = 0
    retries: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    unaccounted: int = 0
    state_mismatches: int = 0
    unchecked: int = 0  # ids whose state could not be read back (search failed every time)


@dataclass
class Resources:
    """This process's descriptors, TCP connections and resident memory at the checkpoints."""

    fds_before: int = 0
    fds_after: int = 0
    connections_before: int = 0
    connections_pooled: int = 0
    connections_after: int = 0
    rss_start: float = 0.0
    rss_warm: float = 0.0
    rss_half: float = 0.0
    rss_end: float = 0.0


def rss_mib() -> float:
    gc.collect()  # count live memory, not garbage waiting for a collection
    return float(psutil.Process().memory_info().rss) / (1024 * 1024)


def tcp_connections() -> int:
    return len(psutil.Process().net_connections(kind="tcp"))


def unaccounted(result: BatchResult, batch: Sequence[str]) -> int:
    """Ids of ``batch`` missing from the result, plus ids reported more than once."""
    reported = [*result.succeeded, *result.failed, *result.skipped]
    return len(set(batch) - set(reported)) + (len(reported) - len(set(reported)))


async def read_states(client: AsyncConvoso) -> dict[str, bool] | None:
    """Every campaign's state from a search, or None if the search failed every time."""
    for _ in range(SEARCH_ATTEMPTS):
        try:
            return {c.id: c.is_active for c in await client.campaigns.search()}
        except ConvosoError:
            continue
    return None


async def soak(url: str, args: argparse.Namespace, resources: Resources) -> Tally:
    tally = Tally()
    ids = [str(FIRST_ID + k) for k in range(args.campaigns)]
    resources.fds_before = psutil.Process().num_fds()
    resources.connections_before = tcp_connections()
    resources.rss_start = rss_mib()
    async with AsyncConvoso(
        TOKEN,
        base_url=url,
        timeout=args.timeout,
        max_retries=args.max_retries,
        max_concurrency=args.concurrency,
    ) as client:
        active = False
        halfway = max(1, math.ceil(args.changes / len(ids)) // 2)
        while tally.changes < args.changes:
            batch = ids[: min(len(ids), args.changes - tally.changes)]
            with anyio.fail_after(BATCH_DEADLINE):
                result = await client.campaigns.set_status_many(batch, active)
                states = await read_states(client)
            tally.changes += len(batch)
            tally.batches += 1
            tally.succeeded += len(result.succeeded)
            tally.retries += result.retries
            tally.failures.update(type(error).__name__ for error in result.failed.values())
            tally.unaccounted += unaccounted(result, batch)
            if states is None:
                tally.unchecked += len(result.succeeded)
            else:
                tally.state_mismatches += sum(states.get(i) is not active for i in result.succeeded)
            resources.connections_pooled = max(resources.connections_pooled, tcp_connections())
            if tally.batches == 1:
                resources.rss_warm = rss_mib()
            if tally.batches == halfway:
                resources.rss_half = rss_mib()
            if args.verbose:
                print(f"batch {tally.batches}: {result.summary()}", file=sys.stderr)
            active = not active
    resources.rss_end = rss_mib()
    # Closed sockets are released as the event loop runs their callbacks; give it a moment.
    deadline = time.monotonic() + SETTLE_SECONDS
    while time.monotonic() < deadline:
        resources.fds_after = psutil.Process().num_fds()
        resources.connections_after = tcp_connections()
        if resources.fds_after <= resources.fds_before:
            break
        await anyio.sleep(0.1)
    return tally


def report(
    args: argparse.Namespace,
    tally: Tally,
    resources: Resources,
    seconds: float,
    server: dict[str, Any],
) -> bool:
    """Print the table; return whether every check held."""
    injected: dict[str, int] = server["faults"]
    failures = sum(tally.failures.values())
    growth = resources.rss_end - resources.rss_warm
    leaked_fds = resources.fds_after - resources.fds_before
    leaked_connections = resources.connections_after - resources.connections_before
    failure_kinds = ", ".join(f"{n} {name}" for name, n in tally.failures.most_common()) or "-"
    fault_kinds = ", ".join(f"{n} {kind}" for kind, n in injected.items())
    rows: list[tuple[str, object]] = [
        ("status changes", f"{tally.changes:,}"),
        ("batches", f"{tally.batches}, of up to {args.campaigns:,} campaigns"),
        (
            "concurrency / timeout / max_retries",
            f"{args.concurrency} / {args.timeout:g}s / {args.max_retries}",
        ),
        ("seconds", f"{seconds:.1f}"),
        ("changes/s", f"{tally.changes / seconds:.0f}"),
        ("requests the server saw", f"{server['requests']:,}"),
        ("faults injected", f"{sum(injected.values()):,} ({fault_kinds})"),
        ("retries", f"{tally.retries:,}"),
        ("failures after retries", f"{failures} ({failure_kinds})"),
        ("ids unaccounted (must be 0)", tally.unaccounted),
        ("state mismatches (must be 0)", tally.state_mismatches),
        ("succeeded ids not read back", tally.unchecked),
        ("fds before / after", f"{resources.fds_before} / {resources.fds_after}"),
        (
            "TCP connections before / pooled between batches / after",
            f"{resources.connections_before} / {resources.connections_pooled} / "
            f"{resources.connections_after}",
        ),
        (
            "RSS start / warm / halfway / end (MiB)",
            f"{resources.rss_start:.1f} / {resources.rss_warm:.1f} / "
            f"{resources.rss_half:.1f} / {resources.rss_end:.1f}",
        ),
        (
            "RSS growth after warm-up / in the second half (MiB)",
            f"{growth:+.1f} / {resources.rss_end - resources.rss_half:+.1f}",
        ),
    ]
    print_table(["soak", "result"], rows)
    ok = (
        tally.unaccounted == 0
        and tally.state_mismatches == 0
        and leaked_fds <= 0
        and leaked_connections <= 0
    )
    if ok:
        print("\nPASS: every id accounted for, every success real, nothing left open")
    else:
        print(
            f"\nFAIL: unaccounted={tally.unaccounted} mismatches={tally.state_mismatches} "
            f"leaked fds={leaked_fds} leaked connections={leaked_connections}"
        )
    return ok


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--changes", type=int, default=20_000, help="status changes to make")
    parser.add_argument(
        "--fault-rate", type=float, default=0.10, help="fraction of requests that meet a fault"
    )
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight")
    parser.add_argument("--seed", type=int, default=1, help="seeds the server's fault draws")
    parser.add_argument("--campaigns", type=int, default=1000, help="campaigns per batch")
    parser.add_argument("--timeout", type=float, default=1.0, help="seconds per HTTP attempt")
    parser.add_argument("--max-retries", type=int, default=3, help="retries per request")
    parser.add_argument(
        "--backend", choices=("asyncio", "trio"), default="asyncio", help="event loop"
    )
    parser.add_argument("--verbose", action="store_true", help="one line per batch on stderr")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--dump", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not 0.0 <= args.fault_rate < 1.0:
        parser.error("--fault-rate must be within [0, 1)")
    if args.changes < 1 or args.campaigns < 1 or args.concurrency < 1:
        parser.error("--changes, --campaigns and --concurrency must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve:
        return serve_main(args)
    with tempfile.TemporaryDirectory(prefix="convoso-soak-") as scratch:
        dump = Path(scratch) / "server.json"
        child = [
            __file__,
            "--serve",
            f"--dump={dump}",
            f"--campaigns={args.campaigns}",
            f"--fault-rate={args.fault_rate}",
            f"--seed={args.seed}",
            f"--timeout={args.timeout}",
        ]
        resources = Resources()
        with serve(child) as server:
            started = time.monotonic()
            tally = anyio.run(soak, server.url, args, resources, backend=args.backend)
            seconds = time.monotonic() - started
        server_counts: dict[str, Any] = json.loads(dump.read_text())
    print(
        f"python benchmarks/soak.py --changes {args.changes} --fault-rate {args.fault_rate:g} "
        f"--concurrency {args.concurrency} --seed {args.seed} --backend {args.backend}\n"
    )
    return 0 if report(args, tally, resources, seconds, server_counts) else 1


if __name__ == "__main__":
    sys.exit(main())
