"""`Convoso` used the hard way: garbage collected on its own thread, limiters shared across loops.

Against the fake over loopback. Each test here once hung; a hang now fails it (the watchdog in
``conftest.py`` dumps every thread's stack), and every wait below is bounded besides.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from interrupted_child import interrupt_after_start

from convoso_async import (
    AdaptiveLimiter,
    AsyncConvoso,
    BatchResult,
    ConfigurationError,
    Convoso,
    Limiter,
    RateLimiter,
)
from convoso_async.testing import FakeConvoso

#: Only guards against a hang: each test's work takes a few seconds at most.
GUARD = 60.0


def ids_of(count: int, first: int = 1001) -> list[str]:
    return [str(first + n) for n in range(count)]


def loop_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "convoso-sync-loop"]


def concurrently(*works: Callable[[], Any]) -> list[Any]:
    """Each ``work()`` in a thread of its own, all at once; their results, bounded by GUARD."""
    results: dict[int, Any] = {}
    errors: list[BaseException] = []

    def target(index: int, work: Callable[[], Any]) -> None:
        try:
            results[index] = work()
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=target, args=(n, work), daemon=True) for n, work in enumerate(works)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(GUARD)
    assert not any(thread.is_alive() for thread in threads), "the calls deadlocked"
    if errors:
        raise errors[0]
    return [results[n] for n in range(len(works))]


@contextlib.contextmanager
def collection_held() -> Iterator[None]:
    """No automatic collection meanwhile: garbage is collected where the test says."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# -- garbage collected on the loop thread ------------------------------------------------------


def test_an_iterator_collected_on_the_client_s_own_thread_stops_without_blocking_it() -> None:
    fake = FakeConvoso(campaigns=20, latency=0.05)
    with fake.serve_in_thread() as url, Convoso(fake.TOKEN, base_url=url) as convoso:
        with collection_held():

            def take_one_and_leave_it_in_a_cycle() -> str:
                outcomes = convoso.campaigns.iter_set_status(ids_of(10), False, max_concurrency=1)
                first = next(outcomes)
                cycle: list[object] = [outcomes]
                cycle.append(cycle)  # only the collector can free it now
                return first.campaign_id

            [taken] = concurrently(take_one_and_leave_it_in_a_cycle)

            def collect(_: object) -> None:
                gc.collect()  # on the loop thread: the iterator is finalized there

            [result] = concurrently(
                lambda: convoso.campaigns.set_status_many(["1020"], True, on_progress=collect)
            )
        assert isinstance(result, BatchResult)
        assert result.ok
        [later] = concurrently(convoso.campaigns.search)
        assert len(later) == 20
        [thread] = loop_threads()
    thread.join(GUARD)
    assert not thread.is_alive(), "close() left the loop thread running"
    assert fake.campaign_status(taken) == "N"
    # The abandoned iteration was stopped, not run to its end.
    assert [fake.campaign_status(i) for i in ids_of(10)].count("Y") >= 1


def test_close_from_a_callback_on_the_loop_thread_does_not_wait_for_itself() -> None:
    fake = FakeConvoso(campaigns=5, latency=0.05)
    with fake.serve_in_thread() as url:
        convoso = Convoso(fake.TOKEN, base_url=url)
        outcomes = convoso.campaigns.iter_set_status(ids_of(5), False, max_concurrency=1)
        [first] = concurrently(lambda: next(outcomes))
        [thread] = loop_threads()

        def close_here(_: object) -> None:
            convoso.close()

        [result] = concurrently(
            lambda: convoso.campaigns.set_status_many(["1005"], True, on_progress=close_here)
        )
        thread.join(GUARD)
        assert not thread.is_alive(), "close() from the loop thread left it running"
        with pytest.raises(ConfigurationError, match="closed"):
            convoso.campaigns.search()
        with pytest.raises(ConfigurationError, match="closed"):
            next(outcomes)
    assert first.ok
    assert isinstance(result, BatchResult)


# -- one limiter, several clients and loops ----------------------------------------------------


LIMITERS: dict[str, Callable[[], RateLimiter]] = {
    "Limiter": lambda: Limiter(20),
    "AdaptiveLimiter": lambda: AdaptiveLimiter(start=20, floor=1, ceiling=20),
}


@pytest.mark.parametrize("make", LIMITERS.values(), ids=LIMITERS.keys())
def test_two_sync_clients_share_one_in_process_limiter(make: Callable[[], RateLimiter]) -> None:
    limiter = make()
    fake = FakeConvoso(campaigns=30)
    with (
        fake.serve_in_thread() as url,
        Convoso(fake.TOKEN, base_url=url, rate_limit=limiter) as first,
        Convoso(fake.TOKEN, base_url=url, rate_limit=limiter) as second,
    ):
        results = concurrently(
            lambda: first.campaigns.set_status_many(ids_of(15), False, max_concurrency=4),
            lambda: second.campaigns.set_status_many(ids_of(15, 1016), False, max_concurrency=4),
        )
    assert all(result.ok for result in results)
    assert set(fake.statuses().values()) == {"N"}
    # One limit for both: each client's own at 20/s would let ~40 through in a second. (The
    # adaptive limiter spaces requests exactly 1/rate apart: a closed second may hold 21.)
    assert fake.max_in_window(1.0, path=None, accepted_only=False) <= 21


def test_a_sync_client_and_an_async_one_under_asyncio_run_share_one_limiter() -> None:
    limiter = Limiter(20)
    fake = FakeConvoso(campaigns=30)
    with (
        fake.serve_in_thread() as url,
        Convoso(fake.TOKEN, base_url=url, rate_limit=limiter) as blocking,
    ):

        async def in_an_app() -> BatchResult:
            async with AsyncConvoso(fake.TOKEN, base_url=url, rate_limit=limiter) as convoso:
                return await convoso.campaigns.set_status_many(
                    ids_of(15, 1016), False, max_concurrency=4
                )

        results = concurrently(
            lambda: blocking.campaigns.set_status_many(ids_of(15), False, max_concurrency=4),
            lambda: asyncio.run(in_an_app()),
        )
    assert all(result.ok for result in results)
    assert set(fake.statuses().values()) == {"N"}
    assert fake.max_in_window(1.0, path=None, accepted_only=False) <= 20


# -- Ctrl-C while a sync call blocks a running event loop ---------------------------------------

BULK_INSIDE_ASYNCIO_RUN_THEN_CTRL_C = """
import asyncio, json, sys
from convoso_async import Convoso

ids = [str(1001 + n) for n in range(200)]
partial = []

def progress(counts):
    if counts.done == 1:
        print("started", flush=True)

async def main():
    # A sync library called from an async app: the call blocks the app's loop.
    with Convoso(max_concurrency=4) as convoso:
        try:
            convoso.campaigns.set_status_many(
                ids, False, on_progress=progress, on_interrupt=partial.append
            )
        finally:
            print(json.dumps(partial[0].to_dict() if partial else None), flush=True)

asyncio.run(main())
"""


def test_ctrl_c_stops_a_sync_bulk_call_made_inside_asyncio_run_with_its_partial_result() -> None:
    fake = FakeConvoso(campaigns=200, latency=0.3)
    with fake.serve_in_thread() as url:
        env = {**os.environ, "CONVOSO_AUTH_TOKEN": fake.TOKEN, "CONVOSO_BASE_URL": url}
        returncode, out, err = interrupt_after_start(
            BULK_INSIDE_ASYNCIO_RUN_THEN_CTRL_C, env, timeout=GUARD
        )
    assert returncode in (130, -signal.SIGINT), err  # ended by the KeyboardInterrupt
    assert err.rstrip().endswith("KeyboardInterrupt"), err
    result = json.loads(out)
    assert result is not None, "on_interrupt was not called"
    places = [*result["succeeded"], *result["failed"], *result["not_sent"], *result["unknown"]]
    assert sorted(places) == ids_of(200)
    # Stopped at the Ctrl-C, not run to its end: most were never sent.
    assert len(result["not_sent"]) >= 100
    seen = {r.campaign_id for r in fake.requests if r.path == "/campaigns/status"}
    assert len(seen) < 100
    assert seen <= {*result["succeeded"], *result["failed"], *result["unknown"]}


# -- an iterator freed in a forked child ---------------------------------------------------------

ITERATOR_FREED_IN_A_FORKED_CHILD = """
import os, signal, sys
from convoso_async import Convoso

with Convoso(max_concurrency=1) as convoso:
    outcomes = convoso.campaigns.iter_set_status([str(1001 + n) for n in range(10)], False)
    next(outcomes)
    pid = os.fork()
    if pid == 0:
        signal.alarm(20)  # a hang ends the child (SIGALRM) instead of the test
        del outcomes  # the parent's work, on the parent's loop: nothing to stop or wait for
        os._exit(0)
    print("child:", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
    outcomes.close()
    print("parent: closed", flush=True)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_an_iterator_freed_in_a_forked_child_leaves_the_parent_s_work_alone() -> None:
    fake = FakeConvoso(campaigns=10, latency=0.05)
    with fake.serve_in_thread() as url:
        env = {**os.environ, "CONVOSO_AUTH_TOKEN": fake.TOKEN, "CONVOSO_BASE_URL": url}
        done = subprocess.run(
            [
                sys.executable,
                "-W",
                "ignore::DeprecationWarning",
                "-c",
                ITERATOR_FREED_IN_A_FORKED_CHILD,
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=GUARD,
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["child: 0", "parent: closed"]
