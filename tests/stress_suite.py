"""Run the whole test suite several times and report every test that ever failed.

    python tests/stress_suite.py [--runs N] [--hog] [PYTEST ARGS...]
    nox -s stress -- --runs 5 --hog -k fault_matrix

A flaky test fails one run in ten, or only while the machine is busy: one green run proves little.
This runs pytest ``--runs`` times in a row (each in a fresh process, as CI would), optionally with
``--hog``: one busy-looping process per core for the whole time, so every test meets a loaded
machine. It prints one row per run (passed, failed, seconds), then each test that failed in any
run and in how many, and exits 1 if any run failed. Arguments it does not know go to pytest.

Not collected as tests (its name does not start with ``test_``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Run:
    """What one pytest run ended in."""

    number: int
    exit_code: int
    seconds: float
    passed: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)  # test ids that failed or errored

    @property
    def ok(self) -> bool:
        # A non-zero exit with no failed test (a collection error, an interrupted run, nothing
        # collected) is a failed run too.
        return self.exit_code == 0 and not self.failed


def read_junit(path: Path, run: Run) -> None:
    """Count ``run``'s outcomes from pytest's JUnit XML report."""
    for case in ET.parse(path).getroot().iter("testcase"):
        test_id = f"{case.get('classname', '')}::{case.get('name', '')}"
        if case.find("failure") is not None or case.find("error") is not None:
            run.failed.append(test_id)
        elif case.find("skipped") is not None:
            run.skipped += 1
        else:
            run.passed += 1


@contextlib.contextmanager
def cpu_hogs(count: int) -> Iterator[None]:
    """``count`` processes that keep one core each busy until the block ends."""
    hogs = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"], stdin=subprocess.DEVNULL)
        for _ in range(count)
    ]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
        for hog in hogs:
            hog.wait()


def run_suite(number: int, pytest_args: list[str], report_dir: Path) -> Run:
    report = report_dir / f"run{number}.xml"
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        f"--junitxml={report}",
        *pytest_args,
    ]
    print(f"--- run {number}: {' '.join(command[1:])}", flush=True)
    started = time.monotonic()
    exit_code = subprocess.call(command, cwd=ROOT)
    run = Run(number, exit_code, time.monotonic() - started)
    if report.exists():
        read_junit(report, run)
    return run


def print_report(runs: list[Run], hog: bool) -> None:
    cores = os.cpu_count() or 1
    load = f"with {cores} CPU hogs (every core busy)" if hog else "alone"
    print(f"\n{len(runs)} runs of the suite, {load}:\n")
    print(f"{'run':>4} {'passed':>7} {'failed':>7} {'skipped':>8} {'exit':>5} {'seconds':>8}")
    for run in runs:
        print(
            f"{run.number:>4} {run.passed:>7} {len(run.failed):>7} {run.skipped:>8}"
            f" {run.exit_code:>5} {run.seconds:>8.1f}"
        )
    failures = Counter(test_id for run in runs for test_id in run.failed)
    if not failures:
        bad = [run.number for run in runs if not run.ok]
        print("\nno test failed" + (f"; but runs {bad} exited non-zero" if bad else ""))
        return
    print(f"\n{len(failures)} tests failed at least once:\n")
    width = max(len(test_id) for test_id in failures)
    print(f"{'test':<{width}}  failed in")
    for test_id, count in failures.most_common():
        print(f"{test_id:<{width}}  {count}/{len(runs)} runs")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Run the whole test suite several times; report every test that failed.",
        epilog="Any other argument goes to pytest (use -- first for one that looks like ours).",
    )
    parser.add_argument("--runs", type=int, default=5, help="how many runs (default 5)")
    parser.add_argument("--hog", action="store_true", help="keep every core busy meanwhile")
    args, pytest_args = parser.parse_known_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if pytest_args[:1] == ["--"]:
        pytest_args = pytest_args[1:]

    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="stress-") as report_dir:
        hogs = cpu_hogs(os.cpu_count() or 1) if args.hog else contextlib.nullcontext()
        with hogs:
            for number in range(1, args.runs + 1):
                runs.append(run_suite(number, pytest_args, Path(report_dir)))
    print_report(runs, args.hog)
    return 0 if all(run.ok for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
