"""Bulk status changes: the client (httpx2, or aiohttp opt-in) against raw httpx2, aiohttp, httpx.

Each contender sends status POSTs (``auth_token``, ``campaign_id``, ``status``
form-encoded) to the fake Convoso server (``python -m convoso_async.testing``,
``--latency`` added to every answer), which runs in its own process on
127.0.0.1, one server per case. Each run of a contender is a fresh child
process, so its CPU time and peak RSS are its own. Every round runs every
contender once, the order rotating; the tables show medians over rounds and
ratios from this one run. Issue 19's targets are checked on those medians;
the script exits with status 1 if one fails (or a request failed).

Contenders:

- ``default``: ``AsyncConvoso.set_status_many`` with the client's own pool, a
  stock ``httpx2.AsyncClient`` (``convoso_async/_http/pool.py``);
- ``opt-in``: the same with ``AsyncConvoso(transport="aiohttp")``
  (``convoso_async/_http/aiohttp_sender.py``); the child checks it really sent
  through aiohttp (a proxy variable in the environment would make the pool
  step aside to httpx2);
- ``httpx2``: raw ``httpx2.AsyncClient`` (pool limits = the concurrency) with an
  ``asyncio.Semaphore`` around ``asyncio.gather``;
- ``aiohttp``: raw ``aiohttp.ClientSession`` (connector limit = the concurrency)
  with a semaphore;
- ``httpx``: raw stock ``httpx.AsyncClient`` (the frozen 0.28) with a semaphore,
  for the record. Its pool is slow at 64 and 128 in flight (tens of requests a
  second), so its runs stop starting requests after ``--stock-seconds``
  (default 1 s), and it warms up with 16 requests, not one per connection, so
  most of its connections open inside the timed part: its rows show its first
  second (the collapse shows where its pool holds many connections for long,
  at 64 and 128 in flight with latency);
- ``requests``: the API reference's loop, a bare ``requests.post`` per campaign
  (a new connection each time). Kept because it is cheap: it runs only in the
  first concurrency's cases (it has no concurrency), with 500 requests at no
  added latency and 10 otherwise (about 0.5 s at 50 ms, 1 s at 100 ms).

The raw contenders decode each JSON answer and count failures, as the client
does. Before the timed part each child sends ``concurrency`` untimed requests
(connections opened, lazy imports done); start-up is never timed. At no added
latency the httpx2 contenders send ``--requests`` (default 1,500: 1-2.5 s)
and the aiohttp ones three times as many (about 1 s), far more than the
32-128 in flight at a run's start and end; with latency each sends about
``--seconds`` (default 0.8 s) worth at the ideal rate, ``concurrency /
latency``.
Runs are kept short and rounds many (default 5) because on a shared machine
a burst of someone else's work lasts seconds: short runs interleaved often
let every contender share it.

Columns: req/s (median over rounds, min-max), client CPU per request (the
child's user + system CPU over the timed part / requests, in ms), peak RSS
of the child, and the server process's CPU over the same time (100% would
mean one server process was the bottleneck).

Reading the latency cases: the fake adds the same latency to every answer, so
the requests in flight travel in waves, and a wave of N answers costs the
client N x its CPU per request before the next wave leaves. At 32 in flight
and 50 ms, 0.7 ms per request (httpx2) makes a wave 50 + 22 ms, about 440
req/s, where 0.17 ms (aiohttp) makes it 55 ms, about 580: the CPU per request
shows in req/s even far from saturation.

The machine is a shared 2-core VM: client and server compete for the two
cores with whatever else runs (other test suites). Only compare numbers
from one run, and read the min-max columns: a ratio within a few percent of
its goal can fall either side on another run.

    python benchmarks/bulk_throughput.py            # 9 cases, 5 rounds: about 7 minutes
    python benchmarks/bulk_throughput.py --quick    # a smoke run, under a minute
    python benchmarks/bulk_throughput.py --concurrency 32 --latency 50 --rounds 5
    python benchmarks/bulk_throughput.py --profile  # cProfile of the default contender
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from _common import (
    TOKEN,
    cpu_seconds,
    fmt_ratio,
    median,
    peak_rss_mib,
    print_table,
    process_cpu_seconds,
    rotations,
    run_json_child,
    serve,
    verdict,
)

STATUS_PATH = "/campaigns/status"
FIRST_ID = 1001
#: Seconds allowed for one HTTP request, and for one child process.
REQUEST_TIMEOUT = 30.0
CHILD_TIMEOUT = 180.0
#: The sequential loop's timed requests: at no added latency, and with latency.
SEQUENTIAL_REQUESTS = 500
SEQUENTIAL_REQUESTS_LATENCY = 10
#: At no added latency the contenders on aiohttp send this many times ``--requests``: they
#: are 4-5x faster, and a run as long as the others' is as exposed to the machine's noise.
AIOHTTP_FACTOR = 3
ON_AIOHTTP = frozenset({"opt-in", "aiohttp"})
#: Stock httpx's untimed requests: opening 64 or 128 connections takes it seconds.
STOCK_WARMUP = 16
#: Server CPU at or above this share of one core: the server, not the client, set the pace.
SERVER_BOUND = 90.0

LABELS = {
    "default": "default: AsyncConvoso (stock httpx2)",
    "opt-in": 'aiohttp opt-in: AsyncConvoso(transport="aiohttp")',
    "httpx2": "raw httpx2 + Semaphore",
    "aiohttp": "raw aiohttp + Semaphore",
    "httpx": "stock httpx 0.28 + Semaphore",
    "requests": "sequential requests.post (API reference)",
}
CONTENDERS = tuple(LABELS)


# -- the child: one contender, one run -------------------------------------------------


class Stopwatch:
    """Wall time, this process's CPU time and the server's CPU time over the timed part."""

    def __init__(self, server_pid: int) -> None:
        self._server_pid = server_pid
        self._start: tuple[float, float, float | None] = (0.0, 0.0, None)
        self.result: dict[str, float | None] = {}

    def start(self) -> None:
        self._start = (time.perf_counter(), cpu_seconds(), process_cpu_seconds(self._server_pid))

    def stop(self) -> None:
        wall, cpu = time.perf_counter(), cpu_seconds()
        server = process_cpu_seconds(self._server_pid)
        wall0, cpu0, server0 = self._start
        self.result = {
            "seconds": wall - wall0,
            "cpu": cpu - cpu0,
            "server_cpu": None if server is None or server0 is None else server - server0,
        }


@dataclass
class Job:
    """What one child does: its ids, its limits, and what it measured."""

    url: str
    concurrency: int
    warmup: list[str]
    ids: list[str]
    watch: Stopwatch
    #: Stop starting requests after this many seconds of the timed part (0: never).
    max_seconds: float = 0.0
    sent: int = 0
    failures: int = 0
    sender: str = ""


def _ids(count: int, offset: int = 0) -> list[str]:
    return [str(FIRST_ID + offset + k) for k in range(count)]


def _form(campaign_id: str) -> dict[str, str]:
    return {"auth_token": TOKEN, "campaign_id": campaign_id, "status": "true"}


async def _convoso(name: str, job: Job) -> None:
    from convoso_async import AsyncConvoso

    transport: Literal["httpx2", "aiohttp"] = "aiohttp" if name == "opt-in" else "httpx2"
    async with AsyncConvoso(
        TOKEN, base_url=job.url, max_concurrency=job.concurrency, transport=transport
    ) as convoso:
        await convoso.campaigns.set_status_many(job.warmup, True)
        # Who sent: a proxy in the environment would turn the opt-in into httpx2.
        job.sender = type(convoso._pool.sender()).__name__
        job.watch.start()
        result = await convoso.campaigns.set_status_many(job.ids, True)
        job.watch.stop()
    job.sent = len(job.ids)
    job.failures = len(job.ids) - len(result.succeeded)


async def _gather_timed(one: Callable[[str], Awaitable[bool]], job: Job) -> None:
    """Send the warm-up untimed, then the ids timed, each behind a semaphore.

    With ``job.max_seconds``, requests not started by then are skipped, and
    only those sent count.
    """
    semaphore = asyncio.Semaphore(job.concurrency)
    deadline = math.inf

    async def guarded(campaign_id: str) -> bool | None:
        async with semaphore:
            if time.perf_counter() > deadline:
                return None
            return await one(campaign_id)

    await asyncio.gather(*(guarded(campaign_id) for campaign_id in job.warmup))
    job.watch.start()
    if job.max_seconds:
        deadline = time.perf_counter() + job.max_seconds
    outcomes = await asyncio.gather(*(guarded(campaign_id) for campaign_id in job.ids))
    job.watch.stop()
    job.sent = len(outcomes) - outcomes.count(None)
    job.failures = outcomes.count(False)


async def _raw_aiohttp(job: Job) -> None:
    import aiohttp

    target = job.url + STATUS_PATH
    connector = aiohttp.TCPConnector(limit=job.concurrency)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(campaign_id: str) -> bool:
            async with session.post(target, data=_form(campaign_id)) as response:
                payload = await response.json()
                return response.status == 200 and payload.get("success") is True

        await _gather_timed(one, job)
    job.sender = f"aiohttp {aiohttp.__version__}"


async def _raw_httpx(name: str, job: Job) -> None:
    if name == "httpx":
        import httpx as module
    else:
        import httpx2 as module  # type: ignore[no-redef]

    target = job.url + STATUS_PATH
    limits = module.Limits(
        max_connections=job.concurrency, max_keepalive_connections=job.concurrency
    )
    async with module.AsyncClient(limits=limits, timeout=REQUEST_TIMEOUT) as client:

        async def one(campaign_id: str) -> bool:
            response = await client.post(target, data=_form(campaign_id))
            return response.status_code == 200 and response.json().get("success") is True

        await _gather_timed(one, job)
    job.sender = f"{module.__name__} {module.__version__}"


def _sequential(job: Job) -> None:
    import requests

    target = job.url + STATUS_PATH

    def send_all(batch: list[str]) -> int:
        failures = 0
        for campaign_id in batch:
            # The reference's own call: `True` is form-encoded as "True".
            response = requests.post(
                target,
                data={"auth_token": TOKEN, "campaign_id": campaign_id, "status": True},
                timeout=REQUEST_TIMEOUT,
            )
            if response.status_code != 200 or response.json().get("success") is not True:
                failures += 1
        return failures

    send_all(job.warmup)
    job.watch.start()
    job.failures = send_all(job.ids)
    job.watch.stop()
    job.sent = len(job.ids)
    job.sender = "requests"


def run_job(name: str, job: Job) -> None:
    """Run contender ``name`` on ``job`` in this process."""
    if name == "requests":
        _sequential(job)
    elif name == "aiohttp":
        asyncio.run(_raw_aiohttp(job))
    elif name in ("httpx", "httpx2"):
        asyncio.run(_raw_httpx(name, job))
    else:
        asyncio.run(_convoso(name, job))


def run_child(args: argparse.Namespace) -> None:
    """Run one contender once and print its measurements as one JSON line."""
    job = Job(
        url=args.url,
        concurrency=args.concurrency,
        warmup=_ids(args.warmup),
        ids=_ids(args.requests, offset=args.warmup),
        watch=Stopwatch(args.server_pid),
        max_seconds=args.max_seconds,
    )
    run_job(args.child, job)
    print(
        json.dumps(
            {
                **job.watch.result,
                "requests": job.sent,
                "failures": job.failures,
                "rss": peak_rss_mib(),
                "sender": job.sender,
            }
        )
    )


# -- the parent: cases, rounds, tables ---------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """How much each run sends: the command line's choices."""

    requests: int  # at no added latency
    seconds: float  # with latency: about this long at the ideal rate
    stock_seconds: float  # stock httpx stops starting requests after this


@dataclass(frozen=True)
class Case:
    """One server setting: requests in flight and the latency the fake adds."""

    concurrency: int
    latency_ms: int
    sequential: bool  # whether the sequential loop runs in this case

    @property
    def title(self) -> str:
        return f"{self.concurrency} in flight, {self.latency_ms} ms latency"

    @property
    def ideal(self) -> float:
        """Requests per second if answers took exactly the added latency (inf without)."""
        return self.concurrency * 1000 / self.latency_ms if self.latency_ms else math.inf

    def requests_for(self, name: str, plan: Plan) -> int:
        """How many timed requests contender ``name`` sends (or may send) in this case."""
        if name == "requests":
            return SEQUENTIAL_REQUESTS_LATENCY if self.latency_ms else SEQUENTIAL_REQUESTS
        if not self.latency_ms:
            return plan.requests * (AIOHTTP_FACTOR if name in ON_AIOHTTP else 1)
        return max(4 * self.concurrency, round(self.ideal * plan.seconds))


@dataclass
class Runs:
    """Every round's measurements of one contender in one case."""

    sent: list[int] = field(default_factory=list)
    failures: int = 0
    rates: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    rss: list[float] = field(default_factory=list)
    server_busy: list[float] = field(default_factory=list)
    senders: set[str] = field(default_factory=set)

    def add(self, sample: dict[str, Any]) -> None:
        """Record one child's measurements."""
        sent = int(sample["requests"])
        seconds = float(sample["seconds"])
        self.sent.append(sent)
        self.failures += int(sample["failures"])
        self.rates.append(sent / seconds)
        self.cpu_ms.append(float(sample["cpu"]) / max(sent, 1) * 1000)
        self.rss.append(float(sample["rss"]))
        self.senders.add(str(sample["sender"]))
        if sample["server_cpu"] is not None:
            self.server_busy.append(float(sample["server_cpu"]) / seconds * 100)

    @property
    def rate(self) -> float:
        """Median requests per second."""
        return median(self.rates)

    @property
    def cpu(self) -> float:
        """Median client CPU milliseconds per request."""
        return median(self.cpu_ms)


def run_case(case: Case, contenders: Sequence[str], rounds: int, plan: Plan) -> dict[str, Runs]:
    """Start a server for ``case``, run every contender ``rounds`` times, interleaved."""
    names = [name for name in contenders if name != "requests" or case.sequential]
    campaigns = case.concurrency + max(case.requests_for(name, plan) for name in names)
    server_args = ["-m", "convoso_async.testing", "--port", "0", "--campaigns", str(campaigns)]
    server_args += ["--latency", str(case.latency_ms / 1000)]
    runs = {name: Runs() for name in names}
    print(f"{case.title}:", flush=True)
    with serve(server_args) as server:
        for number, order in rotations(names, rounds):
            print(f"  round {number + 1}/{rounds}: ", end="", flush=True)
            for name in order:
                child = [__file__, "--child", name, "--url", server.url]
                child += ["--server-pid", str(server.pid), "--concurrency", str(case.concurrency)]
                warmup = {"requests": 3, "httpx": STOCK_WARMUP}.get(name, case.concurrency)
                child += ["--warmup", str(warmup)]
                child += ["--requests", str(case.requests_for(name, plan))]
                if name == "httpx":
                    child += ["--max-seconds", str(plan.stock_seconds)]
                runs[name].add(run_json_child(child, timeout=CHILD_TIMEOUT))
                print(f"{name} ", end="", flush=True)
            print(flush=True)
    if "opt-in" in runs and runs["opt-in"].senders != {"AiohttpSender"}:
        raise RuntimeError(
            f"the aiohttp opt-in sent through {runs['opt-in'].senders}, not aiohttp: "
            "is a proxy variable set in the environment?"
        )
    return runs


def print_case(case: Case, runs: dict[str, Runs]) -> None:
    """The measurements table of one case."""
    ideal = f"; ideal {case.ideal:,.0f} req/s" if case.latency_ms else ""
    print(f"\n### {case.title}{ideal}\n")
    rows: list[list[object]] = []
    for name, run in runs.items():
        busy = median(run.server_busy)
        rows.append(
            [
                LABELS[name],
                f"{median(run.sent):.0f}",
                f"{run.rate:,.0f}",
                f"{min(run.rates):,.0f}-{max(run.rates):,.0f}",
                f"{run.cpu:.3f}",
                f"{min(run.cpu_ms):.3f}-{max(run.cpu_ms):.3f}",
                f"{median(run.rss):.0f}",
                "-" if math.isnan(busy) else f"{busy:.0f}%",
            ]
        )
    print_table(
        [
            "contender",
            "requests",
            "req/s (median)",
            "req/s min-max",
            "CPU ms/req",
            "CPU ms/req min-max",
            "peak RSS MiB",
            "server CPU",
        ],
        rows,
    )
    bound = [name for name, run in runs.items() if median(run.server_busy or [0.0]) >= SERVER_BOUND]
    if bound:
        print(f"\nServer-bound (server CPU >= {SERVER_BOUND:.0f}% of a core): {', '.join(bound)}.")
    failed = {name: run.failures for name, run in runs.items() if run.failures}
    if failed:
        print(f"\nFAILED REQUESTS (the numbers above are suspect): {failed}")


#: The ratio table's columns: (numerator, denominator, measure).
RATIOS: tuple[tuple[str, str, str], ...] = (
    ("default", "httpx2", "req/s"),
    ("default", "httpx2", "CPU"),
    ("opt-in", "aiohttp", "req/s"),
    ("opt-in", "aiohttp", "CPU"),
    ("default", "aiohttp", "req/s"),
    ("default", "aiohttp", "CPU"),
    ("httpx2", "aiohttp", "req/s"),
    ("httpx", "httpx2", "req/s"),
)


def _measure(run: Runs, measure: str) -> float:
    return run.rate if measure == "req/s" else run.cpu


def print_ratios(measured: Sequence[tuple[Case, dict[str, Runs]]]) -> None:
    """One row per case: each ratio of medians in `RATIOS`."""
    present = set().union(*(runs for _, runs in measured)) if measured else set()
    columns = [(a, b, m) for a, b, m in RATIOS if a in present and b in present]
    if not columns:
        return
    print("\n### Ratios (of the medians above)\n")
    rows: list[list[object]] = []
    for case, runs in measured:
        row: list[object] = [case.title]
        for a, b, measure in columns:
            ok = a in runs and b in runs
            row.append(
                fmt_ratio(_measure(runs[a], measure), _measure(runs[b], measure)) if ok else "-"
            )
        rows.append(row)
    headers = ["case", *(f"{a} / {b} {m}" for a, b, m in columns)]
    print_table(headers, rows)


@dataclass(frozen=True)
class Target:
    """One of issue 19's targets: ``mine`` against ``theirs`` on one measure."""

    mine: str
    theirs: str
    measure: str  # "req/s" (at least goal) or "CPU" (at most goal)
    goal: float
    only: tuple[int, int] | None = None  # (concurrency, latency ms), or every case

    def check(self, case: Case, runs: dict[str, Runs]) -> list[object] | None:
        """This target's row for ``case``: None if it does not apply or was not measured."""
        if self.only is not None and self.only != (case.concurrency, case.latency_ms):
            return None
        if self.mine not in runs or self.theirs not in runs:
            return None
        mine, theirs = (
            _measure(runs[self.mine], self.measure),
            _measure(runs[self.theirs], self.measure),
        )
        ratio = mine / theirs if theirs > 0 else math.nan
        # Each round's paired ratio (both ran in that round, close in time): the noise.
        pairs = [
            m / t for m, t in zip(*self._samples(runs), strict=False) if t > 0 and math.isfinite(m)
        ]
        spread = f"{median(pairs):.2f} ({min(pairs):.2f}-{max(pairs):.2f})" if pairs else "-"
        at_least = self.measure == "req/s"
        ok = None if math.isnan(ratio) else (ratio >= self.goal if at_least else ratio <= self.goal)
        goal = f"{'>=' if at_least else '<='} {self.goal:.2f}x"
        title = f"{self.mine} {self.measure} vs {LABELS[self.theirs]}"
        return [title, case.title, f"{ratio:.2f}x", spread, goal, verdict(ok)]

    def _samples(self, runs: dict[str, Runs]) -> tuple[list[float], list[float]]:
        if self.measure == "req/s":
            return runs[self.mine].rates, runs[self.theirs].rates
        return runs[self.mine].cpu_ms, runs[self.theirs].cpu_ms


#: Issue 19's targets.
TARGETS = (
    Target("default", "httpx2", "req/s", 0.9),
    Target("default", "httpx2", "CPU", 1.3),
    Target("opt-in", "aiohttp", "req/s", 0.9),
    Target("opt-in", "aiohttp", "CPU", 1.3),
    Target("default", "aiohttp", "req/s", 0.85, only=(32, 50)),
)


def print_targets(measured: Sequence[tuple[Case, dict[str, Runs]]]) -> list[list[object]]:
    """The targets table; returns the rows that failed."""
    rows = [
        row
        for target in TARGETS
        for case, runs in measured
        if (row := target.check(case, runs)) is not None
    ]
    print("\n### Targets (issue 19), from this run\n")
    if not rows:
        print("No target applies to the cases and contenders run.")
        return []
    print(
        "measured: the ratio of the medians above, which the verdict uses; per round: the\n"
        "ratio within each round (both ran in it, a few seconds apart), median (min-max).\n"
    )
    print_table(["target", "case", "measured", "per round", "goal", "result"], rows)
    return [row for row in rows if row[-1] == "FAIL"]


# -- profiling ---------------------------------------------------------------------------

#: Where profiled time goes, by the first package of the file (in order: first match wins).
_GROUPS = (
    ("convoso_async", "convoso_async/"),
    ("httpx2", "httpx2/"),
    ("httpcore2", "httpcore2/"),
    ("h11", "h11/"),
    ("anyio", "anyio/"),
    ("aiohttp", "aiohttp/"),
    ("asyncio", "asyncio/"),
    ("cattrs/attrs", "attr"),
    ("tenacity", "tenacity/"),
)


#: The event loop waiting for sockets: wall time spent idle, not CPU.
_IDLE = "(idle: the event loop waiting in select/epoll)"


def _group(filename: str, function: str) -> str:
    if filename.startswith("~") or filename.startswith("<"):
        if "of 'select." in function:
            return _IDLE
        return "C calls (socket send/recv, json, ...)"
    for name, needle in _GROUPS:
        if needle in filename:
            return name
    return "other Python"


def profile(args: argparse.Namespace) -> None:
    """cProfile one contender's timed part in this process; print where its time goes."""
    import cProfile
    import pstats

    name: str = args.profile
    concurrency = args.concurrency[0]
    latency_ms = args.latency[0]
    count = args.requests or 4000
    server_args = ["-m", "convoso_async.testing", "--port", "0"]
    server_args += ["--campaigns", str(count + concurrency)]
    server_args += ["--latency", str(latency_ms / 1000)]
    profiler = cProfile.Profile()

    class Profiled(Stopwatch):
        def start(self) -> None:
            super().start()
            profiler.enable()

        def stop(self) -> None:
            profiler.disable()
            super().stop()

    with serve(server_args) as server:
        job = Job(
            url=server.url,
            concurrency=concurrency,
            warmup=_ids(concurrency),
            ids=_ids(count, offset=concurrency),
            watch=Profiled(server.pid),
        )
        run_job(name, job)
    result = job.watch.result
    seconds, cpu = float(result["seconds"] or 0), float(result["cpu"] or 0)
    print(
        f"{LABELS[name]}: {job.sent} requests, {concurrency} in flight, {latency_ms} ms latency, "
        f"{job.sent / seconds:,.0f} req/s and {cpu / job.sent * 1000:.3f} ms CPU/request "
        "under cProfile (which slows Python code several-fold)\n"
    )
    stats = pstats.Stats(profiler, stream=sys.stdout)
    print_profile_groups(stats, job.sent)
    stats.sort_stats("tottime").print_stats(30)
    stats.sort_stats("cumulative").print_stats("convoso_async", 30)


def print_profile_groups(stats: Any, requests: int) -> None:
    """Own time (cProfile's tottime, wall clock) per request, by the package it was spent in."""
    by_group: dict[str, float] = {}
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = stats.stats
    for (filename, _, function), (_, _, tottime, _, _) in raw.items():
        group = _group(filename, function)
        by_group[group] = by_group.get(group, 0.0) + tottime
    busy = sum(spent for group, spent in by_group.items() if group != _IDLE)
    print("### Own time by package (cProfile tottime; share of the time not idle)\n")
    print_table(
        ["package", "µs per request", "share"],
        [
            [
                group,
                f"{spent / requests * 1e6:.1f}",
                "-" if group == _IDLE else f"{spent / busy * 100:.1f}%",
            ]
            for group, spent in sorted(by_group.items(), key=lambda item: -item[1])
        ],
    )
    print()


# -- the command line --------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The command line (the child's options are hidden)."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: 32 and 128 in flight at 0 and 50 ms, 1 round, small counts",
    )
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 5; quick 1)")
    parser.add_argument(
        "--concurrency",
        type=int,
        nargs="+",
        default=None,
        help="requests in flight, one case each (default 32 64 128; quick 32 128)",
    )
    parser.add_argument(
        "--latency",
        type=int,
        nargs="+",
        default=None,
        help="milliseconds the fake adds to each answer (default 0 50 100; quick 0 50)",
    )
    parser.add_argument(
        "--requests",
        type=int,
        default=None,
        help="requests per run at no added latency, 3x for the aiohttp contenders "
        "(default 1500; quick 800)",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="with latency, send about this many seconds' worth at the ideal rate "
        "(default 0.8; quick 0.5)",
    )
    parser.add_argument(
        "--stock-seconds",
        type=float,
        default=None,
        help="stock httpx stops starting requests after this (default 1; quick 1)",
    )
    parser.add_argument(
        "--contenders",
        nargs="+",
        choices=CONTENDERS,
        default=list(CONTENDERS),
        help="which contenders to run (default: all)",
    )
    parser.add_argument(
        "--profile",
        nargs="?",
        const="default",
        choices=CONTENDERS[:-1],
        help="cProfile one contender (default: default) in this process at the first "
        "--concurrency and --latency, and print where its time goes",
    )
    # The child's options: one contender, one run.
    parser.add_argument("--child", choices=CONTENDERS, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--server-pid", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--max-seconds", type=float, default=0.0, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line; run the child, the profile, or the whole benchmark."""
    args = build_parser().parse_args(argv)
    quick = args.quick
    if args.child:
        args.concurrency = args.concurrency[0]
        run_child(args)
        return 0
    args.concurrency = args.concurrency or ([32, 128] if quick else [32, 64, 128])
    args.latency = (
        args.latency if args.latency is not None else ([0, 50] if quick else [0, 50, 100])
    )
    if args.profile:
        profile(args)
        return 0

    rounds = args.rounds or (1 if quick else 5)
    plan = Plan(
        requests=args.requests or (800 if quick else 1500),
        seconds=args.seconds or (0.5 if quick else 0.8),
        stock_seconds=args.stock_seconds or 1.0,
    )
    first = args.concurrency[0]
    cases = [
        Case(concurrency, latency, sequential=concurrency == first)
        for latency in args.latency
        for concurrency in args.concurrency
    ]
    print(
        f"bulk_throughput: {len(cases)} cases, {rounds} interleaved rounds, each run a fresh "
        f"child process; Python {sys.version.split()[0]}; {_versions()}",
        flush=True,
    )
    started = time.perf_counter()
    measured = [(case, run_case(case, args.contenders, rounds, plan)) for case in cases]
    for case, runs in measured:
        print_case(case, runs)
    print_ratios(measured)
    failed_targets = print_targets(measured)
    failed_requests = sum(run.failures for _, runs in measured for run in runs.values())
    print(f"\nWall time: {time.perf_counter() - started:.0f} s")
    if failed_targets:
        print("\nTARGETS FAILED:")
        for row in failed_targets:
            print(f"  {row[0]}, {row[1]}: {row[2]} (goal {row[4]})")
    if failed_requests:
        print(f"\n{failed_requests} requests failed: the numbers are suspect.")
    return 1 if failed_targets or failed_requests else 0


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for package in ("httpx2", "httpcore2", "aiohttp", "httpx", "httpcore", "requests"):
        try:
            found.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            found.append(f"{package} not installed")
    return ", ".join(found)


if __name__ == "__main__":
    sys.exit(main())
