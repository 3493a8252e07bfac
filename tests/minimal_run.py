"""``nox -s minimal``'s check: the default path on the runtime dependencies alone.

Run as a script in an environment with only ``convoso-async[cli]`` installed: neither httpx
nor aiohttp is there to import, and a search and a bulk change against the fake on
loopback still work with the default client. Exits non-zero, saying why, otherwise.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys

from convoso_async import AsyncConvoso
from convoso_async.testing import FakeConvoso

ABSENT = ("httpx", "httpcore", "aiohttp")


async def bulk_change() -> str:
    fake = FakeConvoso(campaigns=200)
    async with fake.serve() as url, AsyncConvoso(fake.TOKEN, base_url=url) as convoso:
        found = await convoso.campaigns.search()
        result = await convoso.campaigns.set_status_many([c.id for c in found], False)
    if len(found) != 200 or not result.ok or set(fake.statuses().values()) != {"N"}:
        raise SystemExit(f"the bulk change went wrong: {result.summary()}")
    return result.summary()


def main() -> int:
    installed = [name for name in ABSENT if importlib.util.find_spec(name) is not None]
    if installed:
        print(f"not a minimal environment: {', '.join(installed)} installed", file=sys.stderr)
        return 1
    print(asyncio.run(bulk_change()))
    loaded = sorted(name for name in sys.modules if name.split(".")[0] in ABSENT)
    if loaded:
        print(f"the default path imported {', '.join(loaded)}", file=sys.stderr)
        return 1
    print("ok: the default path ran on the runtime dependencies alone")
    return 0


if __name__ == "__main__":
    sys.exit(main())
