"""One worker process of the multi-process Redis tests: a bulk change, its outcome as JSON.

    python tests/redis_worker.py OUT_FILE BASE_URL REDIS_URL KEY RATE SLACK FALLBACK_RATE ID...

SLACK is the limiter's ``slack``. FALLBACK_RATE 0 means no fallback: a Redis outage fails the
affected campaigns.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anyio

from convoso_async import AsyncConvoso, Limiter
from convoso_async.redis_limiter import RedisRateLimiter
from convoso_async.testing import FakeConvoso


async def run(argv: list[str]) -> dict[str, object]:
    base_url, redis_url, key, rate, slack, fallback_rate, *ids = argv
    fallback = Limiter(float(fallback_rate)) if float(fallback_rate) > 0 else None
    # A stopped Redis refuses at once; the timeout is for a live one on a loaded machine.
    limiter = RedisRateLimiter(
        redis_url,
        key=key,
        rate=float(rate),
        slack=float(slack),
        timeout=5.0,
        fallback=fallback,
        retry_interval=0.5,
    )
    async with (
        limiter,
        AsyncConvoso(
            FakeConvoso.TOKEN, base_url=base_url, rate_limit=limiter, max_concurrency=8
        ) as convoso,
    ):
        result = await convoso.campaigns.set_status_many(ids, False)
    return {
        "succeeded": list(result.succeeded),
        "failed": {i: type(e).__name__ for i, e in result.failed.items()},
        "skipped": list(result.skipped),
    }


if __name__ == "__main__":
    out_file, *rest = sys.argv[1:]
    Path(out_file).write_text(json.dumps(anyio.run(run, rest)))
