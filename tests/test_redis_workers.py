"""Several worker processes, one Redis-held rate limit, one fake Convoso enforcing it."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from redis_server import (  # noqa: F401
    RedisServer,
    Worker,
    finish_workers,
    redis_server_fixture,
    start_worker,
)

from convoso_async.testing import FakeConvoso

pytestmark = pytest.mark.redis

WORKER = Path(__file__).with_name("redis_worker.py")
#: The workers' limiter makes each one-second window this much longer. The limiter's default
#: (3%, 30 ms) covers a request sent a little after its slot on a quiet machine; on a loaded one
#: a worker process, or the fake's thread that stamps arrivals, can run 100 ms and more late,
#: and late requests crowd into the next window of the fake, which then answers 429.
SLACK = 0.2


def start_workers(
    url: str,
    redis_url: str,
    rate: float,
    fallback_rate: float,
    groups: list[list[str]],
    tmp_path: Path,
) -> list[Worker]:
    key = f"convoso:test:{uuid.uuid4().hex}"
    return [
        start_worker(
            WORKER,
            tmp_path / f"worker{number}.json",
            url,
            redis_url,
            key,
            str(rate),
            str(SLACK),
            str(fallback_rate),
            *ids,
        )
        for number, ids in enumerate(groups)
    ]


def finish(workers: list[Worker]) -> list[dict[str, Any]]:
    return finish_workers(workers, timeout=120)


@pytest.mark.timing
def test_four_workers_stay_under_one_account_limit(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    rate = 40
    fake = FakeConvoso(campaigns=200, rate_limit=rate)
    ids = list(fake.statuses())
    groups = [ids[n::4] for n in range(4)]
    with fake.serve_in_thread() as url:
        results = finish(start_workers(url, redis_server.url, rate, 0, groups, tmp_path))
    succeeded = [i for r in results for i in r["succeeded"]]
    assert sorted(succeeded) == sorted(ids)
    assert all(not r["failed"] for r in results)
    statuses = [r.status for r in fake.requests]
    assert 429 not in statuses
    assert fake.max_in_window(1.0, path=None, accepted_only=False) <= rate
    # One budget for the four, not one each: 200 requests at 40/s span at least 199 intervals.
    arrivals = sorted(r.time for r in fake.requests)
    assert arrivals[-1] - arrivals[0] >= (len(arrivals) - 1 - rate) * (1 + SLACK) / rate
    assert set(fake.statuses().values()) == {"N"}


@pytest.mark.parametrize("fallback_rate", [0, 40])
def test_redis_stopped_mid_run_every_campaign_is_accounted_for(
    redis_server: RedisServer, tmp_path: Path, fallback_rate: float
) -> None:
    rate = 40
    fake = FakeConvoso(campaigns=160)
    ids = list(fake.statuses())
    groups = [ids[:80], ids[80:]]
    with fake.serve_in_thread() as url:
        workers = start_workers(url, redis_server.url, rate, fallback_rate, groups, tmp_path)
        deadline = time.monotonic() + 30
        while len(fake.requests) < 40 and time.monotonic() < deadline:
            time.sleep(0.02)
        redis_server.stop()
        results = finish(workers)
    accounted: list[str] = []
    for group, result in zip(groups, results, strict=True):
        buckets = [*result["succeeded"], *result["failed"], *result["skipped"]]
        assert sorted(buckets) == sorted(group)  # each id in exactly one bucket
        accounted += buckets
    assert sorted(accounted) == sorted(ids)
    failed = {i: e for r in results for i, e in r["failed"].items()}
    if fallback_rate:
        assert failed == {}  # the local fallback carried the run
    else:
        assert failed, "with Redis gone and no fallback, the rest must fail"
        assert set(failed.values()) == {"RateLimiterUnavailableError"}
    states = fake.statuses()
    for result in results:
        for campaign_id in result["succeeded"]:
            assert states[campaign_id] == "N"
