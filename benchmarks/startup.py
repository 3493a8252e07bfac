"""Start-up: how long a fresh interpreter takes to get to work, against its baselines.

Each command runs as a whole new process, interleaved with the others in rotating order,
``--runs`` times; the table shows the median, min and max wall time, and the ratios the
project holds itself to:

- ``convoso --help`` at most 4x ``python -c pass`` (it imports no HTTP library);
- ``import convoso_async`` at most 1.3x ``import httpx2``.

For the record, it also times what using the client really loads:
``from convoso_async import AsyncConvoso`` (httpx2, attrs, cattrs, tenacity, anyio).

    python benchmarks/startup.py            # 15 runs of each, about 15 s
    python benchmarks/startup.py --runs 40
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from _common import median, print_table, rotations

CONVOSO = str(Path(sys.executable).with_name("convoso"))
COMMANDS: dict[str, list[str]] = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "import httpx2": [sys.executable, "-c", "import httpx2"],
    "import convoso_async": [sys.executable, "-c", "import convoso_async"],
    "from convoso_async import AsyncConvoso": [
        sys.executable,
        "-c",
        "from convoso_async import AsyncConvoso",
    ],
    "convoso --help": [CONVOSO, "--help"],
}
#: (what, of, at most this many times): the targets this script checks.
TARGETS = [
    ("convoso --help", "python -c pass", 4.0),
    ("import convoso_async", "import httpx2", 1.3),
]


def wall_seconds(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, check=True, env=os.environ.copy())
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="runs of each command")
    args = parser.parse_args()

    names = list(COMMANDS)
    for name in names:  # warm the OS file cache and the .pyc files first
        wall_seconds(COMMANDS[name])
    times: dict[str, list[float]] = {name: [] for name in names}
    for _, order in rotations(names, args.runs):
        for name in order:
            times[name].append(wall_seconds(COMMANDS[name]))

    base = median(times["python -c pass"])
    rows = [
        [
            name,
            f"{median(times[name]) * 1000:.1f}",
            f"{min(times[name]) * 1000:.1f}-{max(times[name]) * 1000:.1f}",
            f"{median(times[name]) / base:.2f}x",
        ]
        for name in names
    ]
    print(f"\nStart-up, {args.runs} runs of each, interleaved (Python {sys.version.split()[0]})\n")
    print_table(["command", "median ms", "min-max ms", "vs python -c pass"], rows)

    failed = 0
    checks = []
    for what, of, limit in TARGETS:
        ratio = median(times[what]) / median(times[of])
        ok = ratio <= limit
        failed += not ok
        checks.append([f"{what} <= {limit:g}x {of}", f"{ratio:.2f}x", "PASS" if ok else "FAIL"])
    print()
    print_table(["target", "measured", "result"], checks)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
