"""What the benchmark scripts share: a server in its own process, measurements, tables.

Only the standard library is imported here, so a benchmark's child process
that imports this module pays nothing for it in memory (peak RSS is one of
the measured columns).
"""

from __future__ import annotations

import json
import math
import os
import queue
import resource
import signal
import statistics
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from convoso_async.testing import FakeConvoso, Fault

__all__ = [
    "BENCH_DIR",
    "FAULT_MIX",
    "LOOPBACK",
    "SLOW_MARGIN",
    "TOKEN",
    "ServerProcess",
    "add_fault_mix",
    "conditional_probabilities",
    "cpu_seconds",
    "fmt_ratio",
    "median",
    "peak_rss_mib",
    "print_table",
    "process_cpu_seconds",
    "rotations",
    "run_json_child",
    "serve",
    "serve_until_signalled",
    "verdict",
]

BENCH_DIR = Path(__file__).resolve().parent
#: The only address a benchmark talks to.
LOOPBACK = "127.0.0.1"
#: The token the fake Convoso accepts unless told otherwise.
TOKEN = "test-token"
#: Upper bounds, so that a broken server or child can never hang a run.
SERVER_START_TIMEOUT = 30.0
SERVER_STOP_TIMEOUT = 15.0
#: The faults' shares of all faulted requests, in the order the fake checks them
#: (the soak's mix, which failure_modes.py's "10% faults" row reuses).
FAULT_MIX: tuple[tuple[str, float], ...] = (
    ("status", 0.40),  # HTTP 503 with an HTML page
    ("drop", 0.30),  # the connection closed without an answer
    ("slow", 0.20),  # an answer later than the client's timeout
    ("rate_limit", 0.10),  # HTTP 429 with Retry-After: 1 (pauses the whole client)
)
#: How much later than the client's timeout a slow answer comes.
SLOW_MARGIN = 0.5

_READY_PREFIX = "listening on "

T = TypeVar("T")


@dataclass(frozen=True)
class ServerProcess:
    """A server running in its own process: its pid and the base URL it printed."""

    pid: int
    url: str


@contextmanager
def serve(args: Sequence[str], *, env: dict[str, str] | None = None) -> Iterator[ServerProcess]:
    """Run ``python ARGS...`` until the block ends; yield its pid and URL.

    The child must print ``listening on http://127.0.0.1:PORT/...`` on one
    line when ready (as ``python -m convoso_async.testing`` does). It is
    stopped with SIGTERM, then killed if it does not exit in time.
    """
    process = subprocess.Popen(
        [sys.executable, *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        url = _read_url(process)
        yield ServerProcess(process.pid, url)
    finally:
        _stop(process)


def _read_url(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    stdout = process.stdout
    lines: queue.Queue[str] = queue.Queue()
    # A thread, not a blocking readline: a server that never prints must not hang us.
    threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
    try:
        line = lines.get(timeout=SERVER_START_TIMEOUT).strip()
    except queue.Empty:
        raise RuntimeError(f"the server did not start in {SERVER_START_TIMEOUT:g} s") from None
    if not line.startswith(_READY_PREFIX):
        raise RuntimeError(f"the server did not start (exit code {process.poll()}): {line!r}")
    url = line[len(_READY_PREFIX) :]
    if not url.startswith(f"http://{LOOPBACK}:"):
        raise RuntimeError(f"refusing a server that is not on {LOOPBACK}: {url!r}")
    return url


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(SERVER_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(SERVER_STOP_TIMEOUT)
    if process.stdout is not None:
        process.stdout.close()


def serve_until_signalled(
    fake: FakeConvoso, *, port: int = 0, on_signal: Callable[[], None] | None = None
) -> None:
    """Serve ``fake`` on loopback, print the ready line `serve` waits for, until SIGTERM/SIGINT.

    The body of a benchmark's server child. ``on_signal`` runs after the signal while the
    server is still up (answers that never come may hold its shutdown up).
    """
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    # Loopback only: the benchmarks never listen on another address.
    with fake.serve_in_thread(host=LOOPBACK, port=port) as url:
        print(f"{_READY_PREFIX}{url}", flush=True)
        # wait() with a timeout, in a loop, so the signal handler gets to run.
        while not stop.wait(0.5):
            pass
        if on_signal is not None:
            on_signal()


def conditional_probabilities(rate: float, mix: Sequence[tuple[str, float]]) -> list[float]:
    """Per-fault probabilities that make fault ``i`` take ``rate * share_i`` of all requests.

    The fake checks faults in order and the first that draws a hit takes the request, so each
    probability is conditional on the faults before it having missed.
    """
    probabilities = []
    left = 1.0  # the fraction of requests no earlier fault took
    for _, share in mix:
        wanted = rate * share
        probability = min(1.0, wanted / left) if left > 0 else 0.0
        probabilities.append(probability)
        left -= wanted
    return probabilities


def add_fault_mix(fake: FakeConvoso, rate: float, *, timeout: float) -> list[Fault]:
    """Script `FAULT_MIX` on ``rate`` of ``fake``'s requests; return the faults added.

    A slow answer comes `SLOW_MARGIN` seconds after the client's ``timeout``; a fault whose
    probability comes out 0 is left out.
    """
    # Imported here, not at the top: only a server child, which has the fake loaded, pays.
    from convoso_async.testing import Fault

    faults = []
    probabilities = conditional_probabilities(rate, FAULT_MIX)
    for (kind, _), probability in zip(FAULT_MIX, probabilities, strict=True):
        if probability > 0:
            delay = timeout + SLOW_MARGIN if kind == "slow" else 0.0
            faults.append(fake.add_fault(Fault(kind, probability=probability, delay=delay)))  # type: ignore[arg-type]
    return faults


def run_json_child(args: Sequence[str], *, timeout: float) -> dict[str, Any]:
    """Run ``python ARGS...`` and return the JSON object on the last line it printed."""
    done = subprocess.run(
        [sys.executable, *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"benchmark child {' '.join(args)} failed (exit code {done.returncode}):\n"
            f"{done.stderr.strip()}"
        )
    lines = done.stdout.strip().splitlines()
    if not lines:
        raise RuntimeError(f"benchmark child {' '.join(args)} printed nothing")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def cpu_seconds() -> float:
    """CPU time (user + system) this process has used so far, every thread included."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mib() -> float:
    """The most resident memory this process has used, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def process_cpu_seconds(pid: int) -> float | None:
    """CPU time another process has used, from ``/proc`` (None where that is unavailable)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces; the fields after it are plain.
    fields = text[text.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def rotations(items: Sequence[T], rounds: int) -> Iterator[tuple[int, list[T]]]:
    """``rounds`` rounds of every item, each round starting one item later.

    Interleaving rounds this way spreads slow drifts of the machine (another
    process waking up, the CPU warming) over every contender alike.
    """
    for number in range(rounds):
        shift = number % len(items) if items else 0
        yield number, [*items[shift:], *items[:shift]]


def median(values: Sequence[float]) -> float:
    """The median, or NaN for no values."""
    return statistics.median(values) if values else math.nan


def fmt_ratio(numerator: float, denominator: float) -> str:
    """``numerator / denominator`` as ``"1.23x"``, or ``"-"`` when undefined."""
    if not (math.isfinite(numerator) and math.isfinite(denominator)) or denominator <= 0:
        return "-"
    return f"{numerator / denominator:.2f}x"


def verdict(ok: bool | None) -> str:
    """PASS, FAIL, or ``-`` when the target could not be measured."""
    if ok is None:
        return "-"
    return "PASS" if ok else "FAIL"


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print a Markdown table, columns padded so it also reads as plain text.

    Numbers are right-aligned, everything else left-aligned.
    """
    cells = [[str(cell) for cell in row] for row in rows]
    numeric = [
        bool(cells) and all(_is_number(row[i]) for row in cells) for i in range(len(headers))
    ]
    widths = [
        max(len(headers[i]), *(len(row[i]) for row in cells)) if cells else len(headers[i])
        for i in range(len(headers))
    ]

    def line(values: Sequence[str]) -> str:
        padded = [
            value.rjust(width) if right else value.ljust(width)
            for value, width, right in zip(values, widths, numeric, strict=True)
        ]
        return "| " + " | ".join(padded) + " |"

    print(line(headers))
    # Markdown's "---:" marks a right-aligned column.
    rules = [
        "-" * (w + 1) + ":" if right else "-" * (w + 2)
        for w, right in zip(widths, numeric, strict=True)
    ]
    print("|" + "|".join(rules) + "|")
    for row in cells:
        print(line(row))


def _is_number(text: str) -> bool:
    # "1,234", "0.53", "1.20x", "97.5%", and "-" for a missing value.
    if text == "-":
        return True
    core = text.rstrip("x%").replace(",", "").lstrip("-")
    return core.replace(".", "", 1).isdigit()
