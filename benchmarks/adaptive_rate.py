"""Pacing without being told the limit: rate_limit="auto" and the shared Redis mode.

A fake Convoso on 127.0.0.1 enforces a limit the clients are not told (40
requests in any sliding second, ``Retry-After: 1`` on a 429). Worker processes
(1, or 4 sharing the work) deactivate ``--changes`` campaigns between them
with ``set_status_many`` (8 in flight, 3 retries). Each contender runs on its
own fresh fake; the fake's own arrival log gives every number:

- 429s: answers 429 over the run, and their share of all requests;
- converged after: seconds from the first request to the start of the first
  5-second window with no 429 and at least 75% of the limit accepted;
- after convergence: requests accepted from then to the last one, as a
  fraction of what the limit would have allowed in that time;
- per second after: requests accepted in each whole second after convergence
  (the lowest is a second spent in a 429's pause): how far the rate swings;
- worst 1-s window: the most requests (429s included) that arrived within
  any one second;
- failed: campaigns whose change still failed after the retries.

Targets for the adaptive contenders: >= 85% of the limit after convergence,
and < 1% of requests answered 429.

    python benchmarks/adaptive_rate.py                   # 1,000 changes per row, ~5 min
    python benchmarks/adaptive_rate.py --changes 3000    # the issue's size, ~15 min
    python benchmarks/adaptive_rate.py --quick           # 200 changes, 1 process, ~1 min

The 4-process Redis rows need ``redis-server`` on PATH (skipped without it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import LOOPBACK, print_table, verdict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
#: Upper bound on one contender's run, so that nothing can hang the benchmark.
RUN_TIMEOUT = 900.0
#: The window that decides convergence, and the share of the limit it must carry.
CONVERGED_WINDOW = 5.0
CONVERGED_SHARE = 0.75
TARGET_SHARE = 0.85
TARGET_429 = 0.01


@dataclass(frozen=True)
class Contender:
    """One row: how many processes, and what each passes as ``rate_limit``."""

    name: str
    processes: int
    #: "auto" (AdaptiveLimiter), "fixed" (a number), "none", "redis-auto", "redis-fixed".
    kind: str
    #: The start rate (adaptive) or the rate (fixed), as a multiple of the true limit.
    factor: float = 1.0

    @property
    def adaptive(self) -> bool:
        return self.kind in ("auto", "redis-auto")


CONTENDERS = [
    Contender('"auto", start 5x too high', 1, "auto", 5.0),
    Contender('"auto", start 5x too low', 1, "auto", 0.2),
    Contender("fixed rate_limit = limit", 1, "fixed", 1.0),
    Contender("fixed rate_limit = 2x limit", 1, "fixed", 2.0),
    Contender("no rate_limit", 1, "none"),
    Contender("Redis adaptive, start 5x too high", 4, "redis-auto", 5.0),
    Contender("Redis adaptive, start 5x too low", 4, "redis-auto", 0.2),
    Contender('"auto" in each process, not shared, 5x too low', 4, "auto", 0.2),
    Contender("Redis fixed rate = limit", 4, "redis-fixed", 1.0),
    Contender("Redis fixed rate = 2x limit", 4, "redis-fixed", 2.0),
    Contender("no rate_limit", 4, "none"),
]


# --- one worker process ----------------------------------------------------------------------


async def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Deactivate ``spec["ids"]`` with the contender's limiter; report the outcome."""
    from convoso_async import AdaptiveLimiter, AsyncConvoso, RateLimiter
    from convoso_async.redis_limiter import RedisRateLimiter

    kind, rate = spec["kind"], float(spec["rate"])
    limiter: float | RateLimiter | None
    redis_limiter: RedisRateLimiter | None = None
    if kind == "auto":
        limiter = AdaptiveLimiter(start=rate)
    elif kind == "fixed":
        limiter = rate
    elif kind == "redis-auto":
        limiter = redis_limiter = RedisRateLimiter(
            spec["redis"], key=spec["key"], rate=rate, adaptive=True
        )
    elif kind == "redis-fixed":
        limiter = redis_limiter = RedisRateLimiter(spec["redis"], key=spec["key"], rate=rate)
    else:
        limiter = None
    async with AsyncConvoso(spec["token"], base_url=spec["url"], rate_limit=limiter) as convoso:
        if redis_limiter is not None:
            await redis_limiter.acquire()  # connect and load the scripts before the start
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        started = time.monotonic()
        result = await convoso.campaigns.set_status_many(spec["ids"], False)
        elapsed = time.monotonic() - started
        final = getattr(convoso.rate_limiter, "rate", None)
    if redis_limiter is not None:
        await redis_limiter.aclose()
    return {"failed": len(result.failed), "elapsed": elapsed, "final_rate": final}


# --- the parent: serve, run, measure -----------------------------------------------------------


def run_contender(
    contender: Contender, limit: int, changes: int, redis_url: str | None
) -> dict[str, Any]:
    """Run one contender against a fresh fake; return the fake's log and the workers' reports."""
    from convoso_async.testing import FakeConvoso

    fake = FakeConvoso(campaigns=changes, rate_limit=limit, retry_after=1.0)
    ids = list(fake.statuses())
    key = f"bench:adaptive:{uuid.uuid4().hex}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), *sys.path])}
    env.pop("CONVOSO_LOG", None)
    with fake.serve_in_thread(host=LOOPBACK) as url:
        workers = []
        for number in range(contender.processes):
            spec = {
                "kind": contender.kind,
                "rate": contender.factor * limit,
                "url": url,
                "token": FakeConvoso.TOKEN,
                "redis": redis_url,
                "key": key,
                "ids": ids[number :: contender.processes],
            }
            workers.append(
                subprocess.Popen(
                    [sys.executable, __file__, "--worker", json.dumps(spec)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    env=env,
                    text=True,
                )
            )
        reports = []
        try:
            for process in workers:
                assert process.stdout is not None
                if process.stdout.readline().strip() != "ready":
                    raise SystemExit(f"a worker of {contender.name!r} failed to start")
            for process in workers:
                assert process.stdin is not None
                process.stdin.write("go\n")
                process.stdin.flush()
            for process in workers:
                out, _ = process.communicate(timeout=RUN_TIMEOUT)
                if process.returncode != 0:
                    raise SystemExit(f"a worker of {contender.name!r} failed")
                reports.append(json.loads(out.strip().splitlines()[-1]))
        finally:
            for process in workers:
                if process.poll() is None:
                    process.kill()
                    process.wait()
        log = [(r.time, r.status) for r in fake.requests if r.path == "/campaigns/status"]
    return {"log": log, "reports": reports}


def measure(log: list[tuple[float, int]], limit: int) -> dict[str, Any]:
    """The row's numbers from the server's arrival log."""
    from convoso_async.testing import most_in_window

    times = [t for t, _ in log]
    first = min(times)
    accepted = sorted(t for t, status in log if status != 429)
    throttled = sorted(t for t, status in log if status == 429)
    converged: float | None = None
    step = 0.25
    start = first
    while start + CONVERGED_WINDOW <= max(times):
        end = start + CONVERGED_WINDOW
        ok = sum(1 for t in accepted if start <= t < end)
        hit = any(start <= t < end for t in throttled)
        if not hit and ok >= CONVERGED_SHARE * limit * CONVERGED_WINDOW:
            converged = start
            break
        start += step
    share: float | None = None
    seconds: list[int] = []
    if converged is not None:
        after = [t for t in accepted if t >= converged]
        span = after[-1] - converged if len(after) > 1 else 0.0
        # n arrivals span n - 1 intervals: count the first as the span's start.
        share = (len(after) - 1) / (span * limit) if span > 0 else None
        # Accepted per whole second after convergence: how much the rate swings.
        seconds = [0] * int(span)
        for t in after:
            if int(t - converged) < len(seconds):
                seconds[int(t - converged)] += 1
    return {
        "requests": len(log),
        "throttled": len(throttled),
        "converged": None if converged is None else converged - first,
        "share": share,
        "worst": most_in_window(times, 1.0),
        "swing": (min(seconds), statistics.median(seconds), max(seconds)) if seconds else None,
        "duration": max(times) - first,
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Run every contender once and print the table."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--changes", type=int, default=1000, help="status changes per row")
    parser.add_argument("--limit", type=int, default=40, help="the fake's requests per second")
    parser.add_argument("--quick", action="store_true", help="200 changes, 1-process rows only")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(asyncio.run(worker(json.loads(args.worker)))), flush=True)
        return
    changes = 200 if args.quick else args.changes
    contenders = [c for c in CONTENDERS if not (args.quick and c.processes > 1)]
    binary = shutil.which("redis-server")
    if binary is None:
        print("redis-server is not on PATH: skipping the Redis rows", file=sys.stderr)
        contenders = [c for c in contenders if not c.kind.startswith("redis")]

    from redis_limiter import redis_server

    rows = []
    with redis_server(binary) if binary else contextlib.nullcontext() as redis_url:
        for contender in contenders:
            began = time.monotonic()
            run = run_contender(contender, args.limit, changes, redis_url)
            numbers = measure(run["log"], args.limit)
            failed = sum(r["failed"] for r in run["reports"])
            finals = [r["final_rate"] for r in run["reports"] if r["final_rate"] is not None]
            print(
                f"  {contender.processes} x {contender.name}: {time.monotonic() - began:.0f} s",
                file=sys.stderr,
                flush=True,
            )
            share_429 = numbers["throttled"] / numbers["requests"]
            ok: bool | None = None
            if contender.adaptive:
                ok = (
                    numbers["share"] is not None
                    and numbers["share"] >= TARGET_SHARE
                    and share_429 < TARGET_429
                )
            rows.append(
                [
                    contender.processes,
                    contender.name,
                    numbers["requests"],
                    f"{numbers['throttled']} ({share_429:.1%})",
                    "-" if numbers["converged"] is None else f"{numbers['converged']:.1f}",
                    "-" if numbers["share"] is None else f"{numbers['share']:.0%}",
                    "-" if numbers["swing"] is None else "{} / {:g} / {}".format(*numbers["swing"]),
                    numbers["worst"],
                    f"{numbers['duration']:.1f}",
                    failed,
                    "-" if not finals else "/".join(f"{rate:.1f}" for rate in finals),
                    verdict(ok),
                ]
            )
    print(
        f"\nadaptive_rate: the fake allows {args.limit} requests in any sliding second "
        f"(Retry-After: 1), {changes} status changes per row, 8 in flight per process, "
        "max_retries=3\n"
    )
    print_table(
        [
            "processes",
            "rate_limit",
            "requests",
            "429s",
            "converged after s",
            "after convergence, of limit",
            "per second after (min / median / max)",
            "worst 1-s window",
            "run s",
            "failed",
            "final rate",
            ">= 85% and < 1% 429",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
