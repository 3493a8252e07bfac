"""One worker process of the shared-pause and shared-adaptive tests; prints its outcome as JSON.

    python tests/redis_adaptive_worker.py OUT_FILE SPEC_JSON

SPEC_JSON: ``url``, ``redis``, ``key``, ``ids``, ``rate`` (a number, or "auto"), ``adaptive``
(start from ``rate``), ``fallback`` (0: none; else the start of an ``AdaptiveLimiter`` fallback).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anyio

from convoso_async import AdaptiveLimiter, AsyncConvoso
from convoso_async.redis_limiter import RedisRateLimiter
from convoso_async.testing import FakeConvoso


async def run(spec: dict[str, Any]) -> dict[str, object]:
    fallback = AdaptiveLimiter(start=spec["fallback"]) if spec.get("fallback") else None
    limiter = RedisRateLimiter(
        spec["redis"],
        key=spec["key"],
        rate=spec["rate"],
        adaptive=bool(spec.get("adaptive")),
        timeout=0.5,
        fallback=fallback,
        retry_interval=0.5,
    )
    async with (
        limiter,
        AsyncConvoso(
            FakeConvoso.TOKEN, base_url=spec["url"], rate_limit=limiter, max_retries=6
        ) as convoso,
    ):
        result = await convoso.campaigns.set_status_many(spec["ids"], False)
    return {
        "succeeded": list(result.succeeded),
        "failed": {i: type(e).__name__ for i, e in result.failed.items()},
        "rate": limiter.rate,
    }


if __name__ == "__main__":
    out_file, spec_json = sys.argv[1:]
    Path(out_file).write_text(json.dumps(anyio.run(run, json.loads(spec_json))))
