"""Benchmark the Redis-backed rate limiter against a private loopback redis-server.

Measures, in one run:

- the cost of one ``acquire()`` when no waiting is needed (rate set very
  high), next to a bare Redis PING for scale;
- the aggregate rate that 1, 4 and 16 processes achieve together against one
  configured rate, and the most grants seen in any 1-second window (by each
  process's wall clock right after ``acquire()`` returned).

    python benchmarks/redis_limiter.py                 # about 30 s
    python benchmarks/redis_limiter.py --rate 100 --processes 1 8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import redis.asyncio as aioredis

from convoso_async.redis_limiter import DEFAULT_SLACK, RedisRateLimiter
from convoso_async.testing import most_in_window

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# One process of the aggregate-rate run: one task acquiring as fast as the
# limiter lets it, from a shared start signal until its deadline.
WORKER = """
import asyncio, json, sys, time
import redis.asyncio as aioredis
from convoso_async.redis_limiter import RedisRateLimiter

url, key, rate, duration = sys.argv[1:5]

async def main():
    async with aioredis.Redis.from_url(url) as client:
        limiter = RedisRateLimiter(client, key=key, rate=float(rate))
        await client.ping()
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        stamps = []
        end = time.monotonic() + float(duration)
        while time.monotonic() < end:
            await limiter.acquire()
            stamps.append(time.time())
        print(json.dumps(stamps), flush=True)

asyncio.run(main())
"""


@contextmanager
def redis_server(binary: str) -> Iterator[str]:
    """A throwaway redis-server on a free loopback port; yields its URL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="redis-bench-") as workdir:
        args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "no", "--daemonize", "no", "--dir", workdir]
        process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
                        conn.sendall(b"PING\r\n")
                        if conn.recv(64).startswith(b"+PONG"):
                            break
                except OSError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("redis-server did not start")
                time.sleep(0.02)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.terminate()
            process.wait(timeout=10)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def measure_overhead(url: str, calls: int) -> dict[str, tuple[float, float]]:
    """Median and p99 in µs of a PING and of a no-wait ``acquire()``."""
    results: dict[str, tuple[float, float]] = {}
    async with aioredis.Redis.from_url(url) as client:
        limiter = RedisRateLimiter(client, key="bench:overhead", rate=1e9)
        await limiter.acquire()  # connect and load the script first

        async def ping() -> None:
            await client.ping()

        calls_by_name: dict[str, Callable[[], Awaitable[None]]] = {
            "redis PING": ping,
            "acquire()": limiter.acquire,
        }
        for name, call in calls_by_name.items():
            samples = []
            for _ in range(calls):
                start = time.perf_counter()
                await call()
                samples.append((time.perf_counter() - start) * 1e6)
            results[name] = (statistics.median(samples), percentile(samples, 0.99))
    return results


def run_processes(url: str, key: str, count: int, rate: float, duration: float) -> list[float]:
    """Start ``count`` worker processes on one key; return every grant's time, sorted."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), *sys.path])}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, url, key, str(rate), str(duration)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )
        for _ in range(count)
    ]
    try:
        for worker in workers:
            assert worker.stdout is not None
            if worker.stdout.readline().strip() != "ready":
                raise SystemExit("a worker process failed to start")
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        outputs = [worker.communicate(timeout=duration + 60)[0] for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    return sorted(stamp for output in outputs for stamp in json.loads(output))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=200.0, help="configured requests/second")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per process run")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--calls", type=int, default=2000, help="calls for the overhead run")
    parser.add_argument("--redis-server", default=shutil.which("redis-server") or "redis-server")
    args = parser.parse_args()

    with redis_server(args.redis_server) as url:
        overhead = asyncio.run(measure_overhead(url, args.calls))
        print(f"Overhead, sequential calls on one connection ({args.calls} each):")
        print(f"  {'call':<12} {'median µs':>10} {'p99 µs':>10}")
        for name, (median, p99) in overhead.items():
            print(f"  {name:<12} {median:>10.0f} {p99:>10.0f}")

        ceiling = args.rate / (1 + DEFAULT_SLACK)
        print(
            f"\nAggregate rate, configured {args.rate:g}/s (ceiling with {DEFAULT_SLACK:.0%} "
            f"slack: {ceiling:.1f}/s), {args.duration:g} s per run:"
        )
        header = f"  {'processes':>9} {'grants':>7} {'achieved/s':>11} {'of rate':>8}"
        print(f"{header} {'worst 1-s window':>17} {'allowed':>8}")
        for count in args.processes:
            stamps = run_processes(url, f"bench:procs{count}", count, args.rate, args.duration)
            span = stamps[-1] - stamps[0]
            achieved = (len(stamps) - 1) / span if span > 0 else float("nan")
            worst = most_in_window(stamps, 1.0)
            print(
                f"  {count:>9} {len(stamps):>7} {achieved:>11.1f} {achieved / args.rate:>8.1%}"
                f" {worst:>17} {int(args.rate):>8}"
            )


if __name__ == "__main__":
    main()
