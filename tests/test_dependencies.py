"""The default path needs only the runtime dependencies: no httpx, no aiohttp.

A child process makes ``httpx``, ``httpcore`` and ``aiohttp`` unimportable (as if not
installed), serves the fake on loopback, and runs a search and a bulk change with the
default client, on asyncio and on trio; neither library is ever imported.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

_CHILD = """
import importlib.abc, json, sys

BLOCKED = {"httpx", "httpcore", "aiohttp"}


class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, Absent())

import anyio
from convoso_async import AsyncConvoso
from convoso_async.testing import FakeConvoso


async def main() -> dict:
    fake = FakeConvoso(campaigns=40)
    async with fake.serve() as url, AsyncConvoso(fake.TOKEN, base_url=url) as convoso:
        found = await convoso.campaigns.search()
        result = await convoso.campaigns.set_status_many([c.id for c in found], False)
    return {
        "found": len(found),
        "succeeded": len(result.succeeded),
        "statuses": sorted(set(fake.statuses().values())),
        "loaded": sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED),
    }


print(json.dumps(anyio.run(main, backend=sys.argv[1])))
"""


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_default_client_bulk_run_imports_neither_httpx_nor_aiohttp(backend: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, backend],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout)
    assert outcome == {"found": 40, "succeeded": 40, "statuses": ["N"], "loaded": []}
