"""Without OpenTelemetry installed, the library works and imports nothing of it.

A child process makes ``opentelemetry`` unimportable (as if not installed; this test runs
whether it is installed or not), serves the fake on loopback, and runs a search, a bulk
change through every bulk call, a retry and a tripped circuit breaker, on asyncio and trio.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

_CHILD = """
import contextlib, importlib.abc, json, sys


class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "opentelemetry":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, Absent())

import anyio
import convoso_async
from convoso_async import AsyncConvoso, CircuitBreaker, _telemetry
from convoso_async.testing import FakeConvoso, Fault


async def main() -> dict:
    fake = FakeConvoso(campaigns=30)
    fake.add_fault(Fault("status", status=503, on_requests={3}))
    async with fake.serve() as url, AsyncConvoso(fake.TOKEN, base_url=url, rate_limit="auto") as c:
        found = await c.campaigns.search()
        ids = [x.id for x in found]
        many = await c.campaigns.set_status_many(ids[:10], False, skip_unchanged=True)
        mixed = await c.campaigns.apply_statuses(dict.fromkeys(ids[10:20], True))
        streamed = [o.ok async for o in c.campaigns.iter_set_status(ids[20:], False)]
    fake.add_fault(Fault("status", status=503))
    breaker = CircuitBreaker(failure_threshold=1, cooldown=60)
    async with fake.serve() as url, AsyncConvoso(
        fake.TOKEN, base_url=url, max_retries=0, circuit_breaker=breaker
    ) as c:
        broken = await c.campaigns.set_status_many(ids[:3], True, max_concurrency=1)
    return {
        "ok": [many.ok, mixed.ok, all(streamed), len(streamed)],
        "broken": [len(broken.failed), len(broken.not_sent), breaker.state],
        "active": _telemetry.active() is not None,
        "loaded": sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry"),
    }


with convoso_async.set_testing():
    print(json.dumps(anyio.run(main, backend=sys.argv[1])))
"""


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_without_opentelemetry_every_call_works_and_imports_none_of_it(backend: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, backend],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "ok": [True, True, True, 10],
        "broken": [1, 2, "open"],
        "active": False,
        "loaded": [],
    }
