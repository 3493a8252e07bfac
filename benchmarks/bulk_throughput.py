"""Bulk status changes: `set_status_many` against raw aiohttp, raw httpx and the reference loop.

Each contender sends status POSTs (``campaign_id``, ``status``, ``auth_token``
form-encoded) to the fake Convoso server, which runs in its own process on
127.0.0.1. Each run of a contender is a fresh child process, so its CPU time
and peak RSS are its own. Rounds interleave the contenders in rotating order;
the tables show medians over rounds and ratios from this one run.

Contenders:

- ``default``: ``AsyncConvoso.set_status_many`` with the client's own pool: a stock
  ``httpx2.AsyncClient`` sized ``max_concurrency`` (see ``convoso_async/_http/pool.py``;
  the ``transport="aiohttp"`` opt-in, ``convoso_async/_http/aiohttp_sender.py``, is not
  one of the contenders);
- ``stock``: the same with ``http_client=httpx.AsyncClient(limits=...)``, httpx's
  own transport;
- ``aiohttp``: raw ``aiohttp.ClientSession`` with an ``asyncio.Semaphore``;
- ``httpx``: raw stock ``httpx.AsyncClient`` with an ``asyncio.Semaphore``;
- ``httpx-aiohttp``: raw ``httpx.AsyncClient`` on ``httpx_aiohttp.AiohttpTransport``
  with a semaphore: the published aiohttp bridge for httpx, which the client
  evaluated and replaced with its own aiohttp sender (see
  ``convoso_async/_http/aiohttp_sender.py``);
- ``requests``: the API reference's loop, a bare ``requests.post`` per campaign
  (a new connection each time, as the reference does);
- ``session``: the same loop on one ``requests.Session`` (keep-alive).

Every contender decodes each JSON answer and counts failures. Before the
timed part, each sends a few untimed requests (connections, lazy imports).
At no added latency every concurrent contender sends the same number of
requests: stock httpx runs 2-3x slower in its first few seconds than later,
so a shorter run would flatter the others. The sequential loops send fewer
(they are slow, and a rate needs only a second or two), and at 50 ms latency
the stock-httpx contenders send a quarter as many as the others, in their
slow phase: read those two rows as lower bounds.

    python benchmarks/bulk_throughput.py            # about 2.5 minutes
    python benchmarks/bulk_throughput.py --quick    # a smoke run, about 25 s
    python benchmarks/bulk_throughput.py --profile  # cProfile of set_status_many
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
from typing import Any

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
CHILD_TIMEOUT = 600.0

LABELS = {
    "default": "AsyncConvoso, default transport",
    "stock": "AsyncConvoso, stock httpx transport",
    "aiohttp": "raw aiohttp + Semaphore",
    "httpx": "raw httpx (stock) + Semaphore",
    "httpx-aiohttp": "raw httpx + httpx-aiohttp transport + Semaphore",
    "requests": "sequential requests.post (API reference)",
    "session": "sequential requests.Session",
}
CONTENDERS = tuple(LABELS)
SEQUENTIAL = frozenset({"requests", "session"})
STOCK_HTTPX = frozenset({"stock", "httpx"})


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


def _ids(count: int, offset: int = 0) -> list[str]:
    return [str(FIRST_ID + offset + k) for k in range(count)]


async def _convoso(
    name: str, url: str, warmup: list[str], ids: list[str], concurrency: int, watch: Stopwatch
) -> int:
    import httpx

    from convoso_async import AsyncConvoso

    http = None
    if name == "stock":
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        http = httpx.AsyncClient(limits=limits)
    try:
        async with AsyncConvoso(
            TOKEN, base_url=url, max_concurrency=concurrency, http_client=http
        ) as convoso:
            await convoso.campaigns.set_status_many(warmup, True)
            watch.start()
            result = await convoso.campaigns.set_status_many(ids, True)
            watch.stop()
            return len(result.failed)
    finally:
        if http is not None:
            await http.aclose()


async def _raw_aiohttp(
    url: str, warmup: list[str], ids: list[str], concurrency: int, watch: Stopwatch
) -> int:
    import aiohttp

    target = url + STATUS_PATH
    semaphore = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(campaign_id: str) -> bool:
            async with semaphore:
                form = {"auth_token": TOKEN, "campaign_id": campaign_id, "status": "true"}
                async with session.post(target, data=form) as response:
                    payload = await response.json()
                    return response.status == 200 and payload.get("success") is True

        return await _gather_timed(one, warmup, ids, watch)


async def _gather_timed(
    one: Callable[[str], Awaitable[bool]], warmup: list[str], ids: list[str], watch: Stopwatch
) -> int:
    """Send ``warmup`` untimed, then ``ids`` timed, all at once; return how many failed."""

    async def send_all(batch: list[str]) -> int:
        outcomes = await asyncio.gather(*(one(campaign_id) for campaign_id in batch))
        return outcomes.count(False)

    await send_all(warmup)
    watch.start()
    failures = await send_all(ids)
    watch.stop()
    return failures


async def _raw_httpx(
    name: str, url: str, warmup: list[str], ids: list[str], concurrency: int, watch: Stopwatch
) -> int:
    import httpx

    target = url + STATUS_PATH
    semaphore = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    transport: httpx.AsyncBaseTransport | None = None
    if name == "httpx-aiohttp":
        from httpx_aiohttp import AiohttpTransport

        # The published bridge the client's own transport was measured against.
        transport = AiohttpTransport(limits=limits)
    async with httpx.AsyncClient(
        limits=limits, transport=transport, timeout=REQUEST_TIMEOUT
    ) as client:

        async def one(campaign_id: str) -> bool:
            async with semaphore:
                form = {"auth_token": TOKEN, "campaign_id": campaign_id, "status": "true"}
                response = await client.post(target, data=form)
                return response.status_code == 200 and response.json().get("success") is True

        return await _gather_timed(one, warmup, ids, watch)


def _sequential(name: str, url: str, warmup: list[str], ids: list[str], watch: Stopwatch) -> int:
    import requests

    target = url + STATUS_PATH
    session = requests.Session() if name == "session" else None
    post = requests.post if session is None else session.post

    def send_all(batch: list[str]) -> int:
        failures = 0
        for campaign_id in batch:
            # The reference's own call: `True` is form-encoded as "True".
            response = post(
                target,
                data={"auth_token": TOKEN, "campaign_id": campaign_id, "status": True},
                timeout=REQUEST_TIMEOUT,
            )
            if response.status_code != 200 or response.json().get("success") is not True:
                failures += 1
        return failures

    try:
        send_all(warmup)
        watch.start()
        failures = send_all(ids)
        watch.stop()
        return failures
    finally:
        if session is not None:
            session.close()


def run_child(args: argparse.Namespace) -> None:
    """Run one contender once and print its measurements as one JSON line."""
    name: str = args.child
    watch = Stopwatch(args.server_pid)
    warmup = _ids(args.warmup)
    ids = _ids(args.requests, offset=args.warmup)
    if name in SEQUENTIAL:
        failures = _sequential(name, args.url, warmup, ids, watch)
    elif name == "aiohttp":
        failures = asyncio.run(_raw_aiohttp(args.url, warmup, ids, args.concurrency, watch))
    elif name in ("httpx", "httpx-aiohttp"):
        failures = asyncio.run(_raw_httpx(name, args.url, warmup, ids, args.concurrency, watch))
    else:
        failures = asyncio.run(_convoso(name, args.url, warmup, ids, args.concurrency, watch))
    print(
        json.dumps(
            {**watch.result, "requests": len(ids), "failures": failures, "rss": peak_rss_mib()}
        )
    )


# -- the parent: cases, rounds, tables ---------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One server setting and how many requests each contender sends in it."""

    title: str
    latency: float
    requests: int
    stock_requests: int
    sequential_requests: int

    def requests_for(self, name: str) -> int:
        """How many timed requests contender ``name`` sends in this case."""
        if name in SEQUENTIAL:
            return self.sequential_requests
        return self.stock_requests if name in STOCK_HTTPX else self.requests


@dataclass
class Runs:
    """Every round's measurements of one contender in one case."""

    requests: int = 0
    failures: int = 0
    rates: list[float] = field(default_factory=list)
    cpu_per_1k: list[float] = field(default_factory=list)
    rss: list[float] = field(default_factory=list)
    server_busy: list[float] = field(default_factory=list)

    def add(self, sample: dict[str, Any]) -> None:
        """Record one child's measurements."""
        self.requests = int(sample["requests"])
        self.failures += int(sample["failures"])
        seconds = float(sample["seconds"])
        self.rates.append(self.requests / seconds)
        self.cpu_per_1k.append(float(sample["cpu"]) / self.requests * 1000)
        self.rss.append(float(sample["rss"]))
        if sample["server_cpu"] is not None:
            self.server_busy.append(float(sample["server_cpu"]) / seconds * 100)

    @property
    def rate(self) -> float:
        """Median requests per second."""
        return median(self.rates)

    @property
    def cpu(self) -> float:
        """Median client CPU seconds per 1,000 requests."""
        return median(self.cpu_per_1k)


def run_case(
    case: Case, contenders: Sequence[str], rounds: int, concurrency: int
) -> dict[str, Runs]:
    """Start a server for ``case``, run every contender ``rounds`` times, interleaved."""
    warmup = 2 * concurrency
    campaigns = warmup + max(case.requests_for(name) for name in contenders)
    server_args = ["-m", "convoso_async.testing", "--port", "0"]
    server_args += ["--campaigns", str(campaigns), "--latency", str(case.latency)]
    runs = {name: Runs() for name in contenders}
    with serve(server_args) as server:
        for number, order in rotations(list(contenders), rounds):
            print(f"  round {number + 1}/{rounds}: ", end="", flush=True)
            for name in order:
                sequential = name in SEQUENTIAL
                child = [__file__, "--child", name, "--url", server.url]
                child += ["--server-pid", str(server.pid), "--concurrency", str(concurrency)]
                child += ["--warmup", str(3 if sequential else warmup)]
                child += ["--requests", str(case.requests_for(name))]
                runs[name].add(run_json_child(child, timeout=CHILD_TIMEOUT))
                print(f"{name} ", end="", flush=True)
            print(flush=True)
    return runs


def print_case(case: Case, runs: dict[str, Runs], concurrency: int) -> None:
    """The measurements table and the ratios table of one case."""
    ideal = f"; ideal {concurrency / case.latency:,.0f} req/s" if case.latency else ""
    print(f"\n### {case.title}: {concurrency} in flight{ideal}\n")
    rows: list[list[object]] = []
    for name, run in runs.items():
        rates = run.rates
        busy = median(run.server_busy)
        rows.append(
            [
                LABELS[name],
                run.requests,
                f"{run.rate:,.0f}",
                f"{min(rates):,.0f}-{max(rates):,.0f}" if rates else "-",
                f"{run.cpu:.3f}",
                f"{median(run.rss):.0f}",
                "-" if math.isnan(busy) else f"{busy:.0f}%",
            ]
        )
    print_table(
        [
            "contender",
            "requests",
            "req/s (median)",
            "req/s range",
            "client CPU s / 1k req",
            "peak RSS MiB",
            "server CPU",
        ],
        rows,
    )
    failed = {name: run.failures for name, run in runs.items() if run.failures}
    if failed:
        print(f"\nFAILED REQUESTS (the numbers above are suspect): {failed}")

    references = [(ref, f"req/s vs {LABELS[ref]}") for ref in ("aiohttp", "httpx", "requests")]
    references = [(ref, title) for ref, title in references if ref in runs]
    print()
    ratio_rows = [
        [LABELS[name]]
        + [fmt_ratio(run.rate, runs[ref].rate) for ref, _ in references]
        + ([fmt_ratio(run.cpu, runs["aiohttp"].cpu)] if "aiohttp" in runs else [])
        for name, run in runs.items()
    ]
    headers = ["contender", *(title for _, title in references)]
    if "aiohttp" in runs:
        headers.append("CPU/req vs raw aiohttp")
    print_table(headers, ratio_rows)
    if "default" in runs and "httpx-aiohttp" in runs:
        # Our whole client (pipeline and transport) against a bare httpx client
        # on the published bridge: what the own transport bought.
        ours, bare = runs["default"], runs["httpx-aiohttp"]
        print(
            f"\nAsyncConvoso against bare httpx on httpx-aiohttp: {fmt_ratio(ours.rate, bare.rate)}"
            f" the req/s, {(ours.cpu - bare.cpu) * 1000:+.0f} µs CPU per request."
        )


def targets(
    loopback: dict[str, Runs] | None, latency: dict[str, Runs] | None
) -> list[list[object]]:
    """The issue's targets for the default transport, each with its measured ratio."""
    rows: list[list[object]] = []

    def check(
        title: str, runs: dict[str, Runs] | None, ref: str, goal: float, cpu: bool = False
    ) -> None:
        if runs is None or "default" not in runs or ref not in runs:
            rows.append([title, "not measured", "-"])
            return
        mine, theirs = (
            (runs["default"].cpu, runs[ref].cpu) if cpu else (runs["default"].rate, runs[ref].rate)
        )
        measured = mine / theirs if theirs > 0 else math.nan
        ok = measured <= goal if cpu else measured >= goal
        rows.append([title, f"{measured:.2f}x", verdict(None if math.isnan(measured) else ok)])

    check("loopback: req/s >= 0.8x raw aiohttp", loopback, "aiohttp", 0.8)
    check("loopback: req/s >= 6x stock httpx", loopback, "httpx", 6.0)
    check("50 ms latency: CPU/req <= 0.5x stock httpx", latency, "httpx", 0.5, cpu=True)
    check("loopback: req/s >= 3x sequential loop", loopback, "requests", 3.0)
    check("50 ms latency: req/s >= 0.95x raw aiohttp", latency, "aiohttp", 0.95)
    check("loopback: CPU/req <= 1.5x raw aiohttp", loopback, "aiohttp", 1.5, cpu=True)
    check("50 ms latency: CPU/req <= 1.5x raw aiohttp", latency, "aiohttp", 1.5, cpu=True)
    return rows


def profile(args: argparse.Namespace) -> None:
    """cProfile one `set_status_many` run on the default transport; print the top functions."""
    import cProfile
    import pstats

    case_requests = args.requests or 3000
    server_args = ["-m", "convoso_async.testing", "--port", "0"]
    server_args += ["--campaigns", str(case_requests + 2 * args.concurrency)]
    with serve(server_args) as server:
        watch = Stopwatch(server.pid)
        warmup = _ids(2 * args.concurrency)
        ids = _ids(case_requests, offset=len(warmup))
        profiler = cProfile.Profile()
        profiler.enable()
        asyncio.run(_convoso("default", server.url, warmup, ids, args.concurrency, watch))
        profiler.disable()
    stats = pstats.Stats(profiler, stream=sys.stdout)
    stats.sort_stats("tottime").print_stats(30)
    stats.sort_stats("cumulative").print_stats("convoso_async", 25)


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the command line; run the child, the profile, or the whole benchmark."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="a small, fast smoke run")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 3; quick 1)")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight")
    parser.add_argument(
        "--requests",
        type=int,
        default=None,
        help="requests per concurrent run at no added latency (default 3000; quick 400)",
    )
    parser.add_argument(
        "--contenders",
        nargs="+",
        choices=CONTENDERS,
        default=list(CONTENDERS),
        help="which contenders to run (default: all)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="cProfile set_status_many (default transport)"
    )
    # The child's options: one contender, one run.
    parser.add_argument("--child", choices=CONTENDERS, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--server-pid", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        run_child(args)
        return
    if args.profile:
        profile(args)
        return

    rounds = args.rounds or (1 if args.quick else 3)
    requests = args.requests or (400 if args.quick else 3000)
    # Loopback: every concurrent contender sends the same count, since stock
    # httpx speeds up after its first few seconds. 50 ms: fewer, to stay
    # within the time budget (the stock rows there are not used by any target).
    cases = [
        Case("Loopback, no added latency", 0.0, requests, requests, min(requests, 600)),
        Case(
            "50 ms server latency",
            0.05,
            max(1, requests // 2),
            max(1, requests // 12),
            20 if args.quick else 40,
        ),
    ]
    print(
        f"bulk_throughput: {rounds} interleaved rounds; each run a fresh child process; "
        f"Python {sys.version.split()[0]}"
    )
    measured: list[dict[str, Runs]] = []
    for case in cases:
        print(f"{case.title}:")
        measured.append(run_case(case, args.contenders, rounds, args.concurrency))
    for case, runs in zip(cases, measured, strict=True):
        print_case(case, runs, args.concurrency)
    print("\n### Targets (default transport)\n")
    print_table(["target", "measured", "result"], targets(*measured))


if __name__ == "__main__":
    main()
