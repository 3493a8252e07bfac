"""Rate limiting as the server sees it: achieved rate and the worst one-second window.

For each configured rate, ``AsyncConvoso(rate_limit=R, max_concurrency=64)``
sends ``R x duration`` status changes with ``set_status_many`` to the fake
Convoso server, which runs in its own process on 127.0.0.1 (a fresh one per
run) and records when each request arrived. From those server-side
timestamps:

- achieved rate: (requests - 1) / (last arrival - first arrival), the rate of
  the gaps between arrivals;
- worst window: the most requests that arrived within any one second
  (sliding, not aligned to whole seconds); the first second is also shown,
  where a bursting limiter shows its burst.

A run passes when the worst window is at most R and the achieved rate is at
least 97% of R. When ``aiolimiter`` is installed (a benchmark-only
comparison, not a dependency of the package), ``AsyncLimiter(R, 1)`` is run
the same way as a ``rate_limit=`` object, to show its burst.

    python benchmarks/rate_accuracy.py            # about 80 s
    python benchmarks/rate_accuracy.py --quick    # a smoke run, about 15 s
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from _common import BENCH_DIR, TOKEN, median, print_table, rotations, serve, verdict

from convoso_async import AsyncConvoso
from convoso_async._pacing.ratelimit import RateLimiter
from convoso_async.testing import most_in_window

FIRST_ID = 1001
CONCURRENCY = 64
#: Seconds allowed for one HTTP request; a whole run is bounded by its count and rate.
REQUEST_TIMEOUT = 30.0
#: Achieved rate a run must reach, as a share of the configured one.
MIN_ACHIEVED = 0.97

try:
    import aiolimiter
except ImportError:  # optional: the comparison is skipped
    aiolimiter = None  # type: ignore[assignment]


def limiter_names() -> list[str]:
    """The limiters to compare: ours always, aiolimiter's when it is installed."""
    return ["convoso"] if aiolimiter is None else ["convoso", "aiolimiter"]


LABELS = {
    "convoso": "AsyncConvoso(rate_limit=R)",
    "aiolimiter": "rate_limit=aiolimiter.AsyncLimiter(R, 1)",
}


def make_limiter(name: str, rate: float) -> float | RateLimiter:
    """The ``rate_limit=`` option for limiter ``name`` at ``rate`` per second."""
    if name == "aiolimiter":
        assert aiolimiter is not None
        limiter: RateLimiter = aiolimiter.AsyncLimiter(rate, 1.0)
        return limiter
    return rate


@dataclass
class Runs:
    """Every round's server-side results for one limiter at one rate."""

    requests: list[int] = field(default_factory=list)
    achieved: list[float] = field(default_factory=list)
    worst: list[int] = field(default_factory=list)
    first_second: list[int] = field(default_factory=list)
    failures: int = 0

    def add(self, arrivals: list[float], failures: int) -> None:
        """Record one run from its sorted arrival times."""
        self.failures += failures
        self.requests.append(len(arrivals))
        span = arrivals[-1] - arrivals[0] if len(arrivals) > 1 else 0.0
        self.achieved.append((len(arrivals) - 1) / span if span > 0 else math.nan)
        self.worst.append(most_in_window(arrivals, 1.0))
        self.first_second.append(sum(1 for t in arrivals if t - arrivals[0] < 1.0))


async def send(url: str, rate_limit: float | RateLimiter, count: int) -> int:
    """``count`` status changes through a paced client; returns how many failed."""
    ids = [str(FIRST_ID + k) for k in range(count)]
    async with AsyncConvoso(
        TOKEN,
        base_url=url,
        rate_limit=rate_limit,
        max_concurrency=CONCURRENCY,
        timeout=REQUEST_TIMEOUT,
    ) as convoso:
        result = await convoso.campaigns.set_status_many(ids, True)
    return len(result.failed)


def run_once(name: str, rate: float, duration: float, workdir: Path) -> tuple[list[float], int]:
    """One run against a fresh server: the sorted arrival times and the failure count."""
    count = max(2, round(rate * duration))
    dump = workdir / f"arrivals-{name}-{rate:g}.json"
    server_args = [str(BENCH_DIR / "_server.py"), "--campaigns", str(count), "--dump", str(dump)]
    with serve(server_args) as server:
        failures = asyncio.run(send(server.url, make_limiter(name, rate), count))
    # The server writes its log as it exits, which `serve` waited for.
    records = json.loads(dump.read_text())
    dump.unlink()
    return sorted(float(record["time"]) for record in records), failures


def main(argv: Sequence[str] | None = None) -> None:
    """Run every limiter at every rate, in interleaved rounds, and print the tables."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="a small, fast smoke run")
    parser.add_argument(
        "--rates", type=float, nargs="+", default=[50.0, 200.0, 1000.0], help="requests/second"
    )
    parser.add_argument(
        "--duration", type=float, default=None, help="seconds per run (default 4; quick 1.5)"
    )
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 3; quick 1)")
    args = parser.parse_args(argv)
    duration = args.duration or (1.5 if args.quick else 4.0)
    rounds = args.rounds or (1 if args.quick else 3)
    names = limiter_names()

    print(
        f"rate_accuracy: {duration:g} s per run, {rounds} interleaved rounds, "
        f"max_concurrency={CONCURRENCY}, timestamps taken by the server"
    )
    if aiolimiter is None:
        print("(aiolimiter is not installed: its comparison is skipped)")
    runs = {(name, rate): Runs() for rate in args.rates for name in names}
    pairs = [(name, rate) for rate in args.rates for name in names]
    with tempfile.TemporaryDirectory(prefix="rate-accuracy-") as tmp:
        for number, order in rotations(pairs, rounds):
            print(f"  round {number + 1}/{rounds}: ", end="", flush=True)
            for name, rate in order:
                arrivals, failures = run_once(name, rate, duration, Path(tmp))
                runs[name, rate].add(arrivals, failures)
                print(f"{name}@{rate:g} ", end="", flush=True)
            print(flush=True)

    print()
    rows: list[list[object]] = []
    for name, rate in pairs:
        run = runs[name, rate]
        worst, low = max(run.worst), min(run.achieved)
        ok = worst <= rate and low >= MIN_ACHIEVED * rate and not run.failures
        rows.append(
            [
                LABELS[name],
                f"{rate:g}",
                run.requests[0],
                f"{median(run.achieved):.1f}",
                f"{median(run.achieved) / rate:.1%}",
                f"{low / rate:.1%}",
                worst,
                " / ".join(str(count) for count in run.worst),
                max(run.first_second),
                verdict(ok),
            ]
        )
    print_table(
        [
            "limiter",
            "R req/s",
            "requests",
            "achieved req/s (median)",
            "of R (median)",
            "of R (lowest)",
            "worst 1-s window (max)",
            "each round",
            "first second (max)",
            "worst <= R and >= 97%",
        ],
        rows,
    )
    failed = {f"{name}@{rate:g}": r.failures for (name, rate), r in runs.items() if r.failures}
    if failed:
        print(f"\nFAILED REQUESTS: {failed}")


if __name__ == "__main__":
    main()
