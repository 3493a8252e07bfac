"""What OpenTelemetry costs: CPU per request of a bulk run without it, with its API, with its SDK.

A 3,000-change ``set_status_many`` (32 in flight, the default httpx2 client) against the fake
Convoso in its own process on 127.0.0.1, each run a fresh child process, in one of three modes:

- ``no OTel``: ``opentelemetry`` cannot be imported (a finder refuses it, as if not installed);
- ``API, no SDK``: ``opentelemetry.trace`` and ``opentelemetry.metrics`` imported (as another
  library of the application would), no provider set: the API's no-op default;
- ``SDK, in-memory``: the SDK's tracer provider with a ``SimpleSpanProcessor`` into an
  ``InMemorySpanExporter`` and a meter provider with an ``InMemoryMetricReader``, set
  globally: every span and metric of the run is recorded (about 6,000 spans).

Before the timed part each child sends 64 untimed changes (connections opened, lazy imports
done). CPU per request is the child's user + system CPU over the timed part / 3,000. Rounds
run every mode once, the order rotating; the table shows medians and min-max over rounds,
and the median of each round's ratio to that round's ``no OTel`` run (the machine is a
shared 2-core box: a ratio from one round compares runs seconds apart). Targets: the first
two modes within 3% of ``no OTel`` (PASS/FAIL); the SDK's cost is reported, not judged.
Exits 1 if a target fails or a request failed.

    python benchmarks/otel_overhead.py               # 15 rounds, about 4 minutes
    python benchmarks/otel_overhead.py --rounds 5    # a quicker, noisier look
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from typing import Any

from _common import (
    TOKEN,
    cpu_seconds,
    median,
    print_table,
    rotations,
    run_json_child,
    serve,
    verdict,
)

MODES = {
    "none": "no OTel (not importable)",
    "api": "API, no SDK (no provider)",
    "sdk": "SDK, in-memory exporter",
}
#: The most CPU per request the first two modes may cost, as a ratio to ``none``.
TARGET = 1.03
CHANGES = 3000
WARMUP = 64
CONCURRENCY = 32
#: Seconds allowed for one child process (a run takes about 3).
CHILD_TIMEOUT = 180.0

_BLOCK_OTEL = """
import importlib.abc, sys

class _Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "opentelemetry":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, _Absent())
"""


def _setup(mode: str) -> dict[str, Any]:
    """Put this child in ``mode``; return what the run must read back at its end."""
    if mode == "none":
        exec(_BLOCK_OTEL, {})
        return {}
    import opentelemetry.metrics
    import opentelemetry.trace

    if mode == "api":
        return {}
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    opentelemetry.trace.set_tracer_provider(tracer_provider)
    reader = InMemoryMetricReader()
    opentelemetry.metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    return {"exporter": exporter}


async def _bulk_run(url: str, round_number: int) -> dict[str, Any]:
    from convoso_async import AsyncConvoso

    active = round_number % 2 == 0  # every run changes every campaign's state
    ids = [str(1001 + i) for i in range(CHANGES)]
    async with AsyncConvoso(TOKEN, base_url=url, max_concurrency=CONCURRENCY) as convoso:
        warm = await convoso.campaigns.set_status_many(ids[:WARMUP], active)
        started = cpu_seconds()
        result = await convoso.campaigns.set_status_many(ids, active)
        cpu = cpu_seconds() - started
    return {
        "cpu_us": cpu / CHANGES * 1e6,
        "failed": len(result.failed) + len(warm.failed),
        "ok": result.ok and warm.ok,
    }


def run_child(mode: str, url: str, round_number: int) -> None:
    kept = _setup(mode)
    measured = asyncio.run(_bulk_run(url, round_number))
    exporter = kept.get("exporter")
    measured["spans"] = 0 if exporter is None else len(exporter.get_finished_spans())
    measured["otel_loaded"] = any(m.split(".")[0] == "opentelemetry" for m in sys.modules)
    print(json.dumps(measured))


def run_rounds(rounds: int) -> dict[str, list[dict[str, Any]]]:
    server_args = ["-m", "convoso_async.testing", "--port", "0", "--campaigns", str(CHANGES)]
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    with serve(server_args) as server:
        for number, order in rotations(list(MODES), rounds):
            print(f"  round {number + 1}/{rounds}: ", end="", flush=True)
            for mode in order:
                child = [__file__, "--child", mode, "--url", server.url, "--round", str(number)]
                runs[mode].append(run_json_child(child, timeout=CHILD_TIMEOUT))
                print(mode, end=" ", flush=True)
            print(flush=True)
    return runs


def _ratios(runs: dict[str, list[dict[str, Any]]], mode: str) -> list[float]:
    """Each round's CPU per request in ``mode`` over the same round's ``none``."""
    return [
        run["cpu_us"] / base["cpu_us"] for run, base in zip(runs[mode], runs["none"], strict=True)
    ]


def report(runs: dict[str, list[dict[str, Any]]]) -> bool:
    """Print the table; True when every target is met and every request succeeded."""
    base = median([r["cpu_us"] for r in runs["none"]])
    rows: list[Sequence[object]] = []
    passed = True
    for mode, label in MODES.items():
        cpu = [r["cpu_us"] for r in runs[mode]]
        ratio = median(_ratios(runs, mode))
        judged = mode != "sdk"
        ok = ratio <= TARGET if judged else None
        passed = passed and ok is not False
        rows.append(
            [
                label,
                f"{median(cpu):.0f}",
                f"{min(cpu):.0f}-{max(cpu):.0f}",
                f"{median(cpu) / base:.3f}x",
                f"{ratio:.3f}x",
                f"<= {TARGET:.2f}x" if judged else "-",
                verdict(ok),
                f"{runs[mode][-1]['spans']:,}",
            ]
        )
    print()
    print_table(
        [
            "mode",
            "CPU µs/request",
            "min-max",
            "vs no OTel",
            "median round ratio",
            "target",
            "result",
            "spans recorded",
        ],
        rows,
    )
    if any(run["otel_loaded"] for run in runs["none"]):
        print("\nFAIL: the no-OTel child imported opentelemetry")
        passed = False
    if not all(run["ok"] for mode in MODES for run in runs[mode]):
        print("\nFAIL: a request failed")
        passed = False
    return passed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15, help="rounds of every mode (default 15)")
    parser.add_argument("--child", choices=list(MODES), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--round", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        run_child(args.child, args.url, args.round)
        return 0
    print(
        f"OpenTelemetry's cost: {CHANGES:,} status changes per run, {CONCURRENCY} in flight, "
        f"{args.rounds} rounds (Python {sys.version.split()[0]})",
        flush=True,
    )
    return 0 if report(run_rounds(args.rounds)) else 1


if __name__ == "__main__":
    sys.exit(main())
