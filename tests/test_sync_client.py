"""`Convoso`, the synchronous client: the async client's calls, blocking, from wherever users are.

Against the fake over loopback: a plain script, many threads sharing one client, a thread that
runs an event loop of its own (a notebook cell), Ctrl-C in a child process during a bulk call,
a forked child (Celery's prefork pool), and the life of the loop thread. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
import trio
from interrupted_child import interrupt_after_start

from convoso_async import (
    APIError,
    AsyncConvoso,
    BatchResult,
    Campaign,
    CampaignNotFoundError,
    ConfigurationError,
    Convoso,
    StatusOutcome,
)
from convoso_async.testing import FakeConvoso, Fault

T = TypeVar("T")

#: Only guards against a hang: each test's work takes well under a few seconds.
GUARD = 60.0
STATUS = "/campaigns/status"
_AUDIT = re.compile(r"campaign=(\S+) wanted=\S+ outcome=(\S+)")


def ids_of(count: int) -> list[str]:
    return [str(1001 + n) for n in range(count)]


@contextlib.contextmanager
def sync_client(fake: FakeConvoso, **options: Any) -> Iterator[Convoso]:
    with fake.serve_in_thread() as url, Convoso(fake.TOKEN, base_url=url, **options) as convoso:
        yield convoso


def in_thread(work: Callable[[], T]) -> T:
    """``work()`` in a new thread, bounded: a deadlock fails the test instead of hanging it."""
    results: list[T] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            results.append(work())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(GUARD)
    assert not thread.is_alive(), "the call deadlocked"
    if errors:
        raise errors[0]
    return results[0]


def pointed_at(url: str) -> dict[str, str]:
    """This environment, with the fake's token and ``url`` as the API root, for a child process."""
    return {**os.environ, "CONVOSO_AUTH_TOKEN": FakeConvoso.TOKEN, "CONVOSO_BASE_URL": url}


def loop_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "convoso-sync-loop"]


# -- the same client --------------------------------------------------------------------------


def test_the_sync_client_takes_the_async_client_s_options_and_has_its_calls() -> None:
    def parameters(function: Callable[..., Any]) -> list[tuple[str, object, object]]:
        shown = inspect.signature(function).parameters.values()
        return [(p.name, p.kind, p.default) for p in shown]

    assert parameters(Convoso.__init__) == parameters(AsyncConvoso.__init__)
    convoso, twin = Convoso("tok-1234567890"), AsyncConvoso("tok-1234567890")
    assert parameters(convoso.with_options) == parameters(twin.with_options)
    assert parameters(convoso.post) == parameters(twin.post)
    for name in ("search", "set_status", "activate", "deactivate", "set_status_many"):
        assert parameters(getattr(convoso.campaigns, name)) == parameters(
            getattr(twin.campaigns, name)
        )
    assert parameters(convoso.campaigns.apply_statuses) == parameters(twin.campaigns.apply_statuses)
    assert parameters(convoso.campaigns.iter_set_status) == parameters(
        twin.campaigns.iter_set_status
    )
    assert convoso.timeout == twin.timeout
    assert repr(convoso).startswith("Convoso(base_url='https://api.convoso.com/v1'")
    with pytest.raises(ConfigurationError, match="max_concurrency"):
        Convoso("tok-1234567890", max_concurrency=0)
    convoso.close()


def test_a_script_gets_the_same_models_results_and_errors() -> None:
    fake = FakeConvoso(campaigns=5)
    fake.add_endpoint("/leads/search")
    with sync_client(fake) as convoso:
        campaigns = convoso.campaigns.search()
        assert convoso.campaigns.deactivate("1001") is None
        result = convoso.campaigns.set_status_many(["1002", "1003", "404"], False)
        mixed = convoso.campaigns.apply_statuses({"1001": True, "1004": False})
        outcomes = list(convoso.campaigns.iter_set_status(["1005", "1001", "9"], True))
        answer = convoso.post("/leads/search", {"list_id": 5})
        with pytest.raises(CampaignNotFoundError, match="'404' does not exist"):
            convoso.campaigns.activate("404")
        with pytest.raises(TypeError, match="active must be True or False"):
            convoso.campaigns.set_status("1001", "false")  # type: ignore[arg-type]
        with pytest.raises(APIError):
            convoso.post("/leads/unknown")
    assert all(isinstance(c, Campaign) for c in campaigns)
    assert isinstance(result, BatchResult)
    assert sorted(result.succeeded) == ["1002", "1003"]
    assert isinstance(result.failed["404"], CampaignNotFoundError)
    assert mixed.ok
    assert all(isinstance(o, StatusOutcome) for o in outcomes)
    assert {o.campaign_id: o.ok for o in outcomes} == {"1005": True, "1001": True, "9": False}
    assert answer["fields"] == {"list_id": "5"}
    assert fake.statuses() == {"1001": "Y", "1002": "N", "1003": "N", "1004": "N", "1005": "Y"}


def test_with_options_copies_share_the_loop_and_closing_the_original_ends_them() -> None:
    fake = FakeConvoso(campaigns=2)
    with fake.serve_in_thread() as url:
        convoso = Convoso(fake.TOKEN, base_url=url, rate_limit=100)
        patient = convoso.with_options(timeout=120, max_retries=8)
        assert (patient.timeout, patient.max_retries) == (120.0, 8)
        assert patient.rate_limiter is convoso.rate_limiter
        assert patient.circuit_breaker is convoso.circuit_breaker
        assert len(patient.campaigns.search()) == 2
        patient.close()  # a copy's close does nothing
        assert len(convoso.campaigns.search()) == 2
        assert len(loop_threads()) == 1  # one loop for the client and its copy
        convoso.close()
        convoso.close()  # again: nothing
        for client in (convoso, patient):
            with pytest.raises(ConfigurationError, match="closed"):
                client.campaigns.search()
    assert loop_threads() == []


def test_a_client_that_is_never_used_starts_no_thread() -> None:
    with Convoso("tok-1234567890") as convoso:
        assert convoso.max_concurrency == 8
        assert loop_threads() == []


def test_a_forgotten_client_stops_its_thread_when_it_is_collected() -> None:
    fake = FakeConvoso(campaigns=1)
    with fake.serve_in_thread() as url:
        convoso = Convoso(fake.TOKEN, base_url=url)
        convoso.campaigns.search()
        [thread] = loop_threads()
        del convoso
        gc.collect()
        thread.join(GUARD)
    assert not thread.is_alive()


def test_a_call_from_inside_its_own_callback_is_refused_not_deadlocked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeConvoso(campaigns=3)
    with sync_client(fake) as convoso:

        def progress(_: object) -> None:
            convoso.campaigns.search()  # runs in the loop's own thread: would wait for itself

        result = in_thread(
            lambda: convoso.campaigns.set_status_many(ids_of(3), False, on_progress=progress)
        )
    assert result.ok
    assert "would wait for itself" in caplog.text


# -- many threads, one client ----------------------------------------------------------------


def test_many_threads_share_one_pool_one_limiter_and_one_429_pause() -> None:
    fake = FakeConvoso(campaigns=64, latency=0.05)
    fake.add_endpoint("/leads/search")
    fake.add_fault(Fault("rate_limit", retry_after=1, on_requests={20}))
    threads = 16
    with sync_client(fake, max_concurrency=4, rate_limit=40) as convoso:

        def work(index: int) -> None:
            for campaign_id in ids_of(64)[index::threads]:
                convoso.campaigns.deactivate(campaign_id)
            convoso.post("/leads/search", {"thread": index}, idempotent=True)

        workers = [threading.Thread(target=work, args=(n,), daemon=True) for n in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(GUARD)
        assert not any(worker.is_alive() for worker in workers)
    assert set(fake.statuses().values()) == {"N"}
    assert sum(1 for r in fake.requests if r.path == "/leads/search") == threads
    # One pool of 4 connections for all 16 threads (each thread's own would allow 16)...
    assert max(r.in_flight for r in fake.requests) <= 4
    # ...one limiter (each thread's own at 40/s would let ~80 through in a second)...
    assert fake.max_in_window(1.0, path=None, accepted_only=False) <= 40
    # ...and one 429 pause: once it was answered (those already on their way aside), no
    # thread sent anything until its Retry-After (1 s) had passed.
    [throttled] = [r for r in fake.requests if r.status == 429]
    later = [r.time - throttled.time for r in fake.requests if r.seq > throttled.seq]
    assert [t for t in later if 0.3 < t < 0.95] == []
    assert max(later) >= 0.95


# -- a thread with an event loop running (a notebook cell) -------------------------------------


def test_a_sync_call_inside_a_running_asyncio_loop_does_not_deadlock() -> None:
    fake = FakeConvoso(campaigns=3)
    with sync_client(fake) as convoso:

        async def cell() -> tuple[int, list[str]]:
            # A notebook runs each cell in its event loop: a blocking call from in there.
            found = convoso.campaigns.search()
            outcomes = [o.campaign_id for o in convoso.campaigns.iter_set_status(["1001"], False)]
            return len(found), outcomes

        assert in_thread(lambda: asyncio.run(cell())) == (3, ["1001"])
        assert in_thread(lambda: trio.run(cell)) == (3, ["1001"])
        assert len(convoso.campaigns.search()) == 3  # and plainly, from this thread
    assert fake.campaign_status("1001") == "N"


# -- iter_set_status, a plain iterator ---------------------------------------------------------


def audit(caplog: pytest.LogCaptureFixture) -> dict[str, list[str]]:
    lines: dict[str, list[str]] = {}
    for record in caplog.records:
        found = _AUDIT.search(record.getMessage()) if record.name.endswith("audit") else None
        if found is not None:
            lines.setdefault(found[1], []).append(found[2])
    return lines


def test_breaking_out_of_iter_set_status_stops_the_work_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="convoso_async.audit")
    fake = FakeConvoso(campaigns=40, latency=0.3)
    with sync_client(fake) as convoso:

        def first() -> StatusOutcome:
            for outcome in convoso.campaigns.iter_set_status(ids_of(40), False, max_concurrency=2):
                return outcome  # leaves the loop: the iterator is closed here
            raise AssertionError("no outcome")

        taken = in_thread(first)
        sent_when_closed = len(fake.requests)
        time.sleep(0.5)  # longer than an answer takes: nothing more goes out
    assert taken.ok
    assert len(fake.requests) == sent_when_closed <= 4
    lines = audit(caplog)
    assert lines[taken.campaign_id] == ["succeeded"]
    assert [outcome for ids in lines.values() for outcome in ids].count("unknown") >= 1


# -- Ctrl-C in a child process during a bulk call ----------------------------------------------

BULK_THEN_CTRL_C = """
import json, logging, sys
from convoso_async import Convoso

logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(name)s %(message)s")
ids = [str(1001 + n) for n in range(200)]
partial = []

def progress(counts):
    if counts.done == 1:
        print("started", flush=True)

with Convoso(max_concurrency=4) as convoso:
    try:
        convoso.campaigns.set_status_many(
            ids, False, on_progress=progress, on_interrupt=partial.append
        )
    finally:
        print(json.dumps(partial[0].to_dict() if partial else None), flush=True)
"""


def test_ctrl_c_during_a_sync_bulk_call_accounts_for_every_id_then_raises_keyboard_interrupt() -> (
    None
):
    fake = FakeConvoso(campaigns=200, latency=0.3)
    with fake.serve_in_thread() as url:
        returncode, out, err = interrupt_after_start(
            BULK_THEN_CTRL_C, pointed_at(url), timeout=GUARD
        )
    assert returncode in (130, -signal.SIGINT), err  # ended by the KeyboardInterrupt
    assert err.rstrip().endswith("KeyboardInterrupt"), err
    result = json.loads(out)
    ids = ids_of(200)
    places = [*result["succeeded"], *result["failed"], *result["not_sent"], *result["unknown"]]
    assert sorted(places) == ids
    assert result["not_sent"], "most were never sent"
    seen = {r.campaign_id for r in fake.requests if r.path == STATUS}
    assert seen <= {*result["succeeded"], *result["failed"], *result["unknown"]}
    # One audit line per id, as the async client writes them when cancelled.
    lines: dict[str, list[str]] = {}
    for found in _AUDIT.finditer(err):
        lines.setdefault(found[1], []).append(found[2])
    assert sorted(lines) == ids
    assert all(len(outcomes) == 1 for outcomes in lines.values())
    assert {i for i, o in lines.items() if o == ["unknown"]} == set(result["unknown"])


# -- a forked child ----------------------------------------------------------------------------

FORKED = """
import os, signal, sys, traceback
from convoso_async import ConfigurationError, Convoso

def in_child(check):
    pid = os.fork()
    if pid == 0:
        signal.alarm(20)  # a hang ends the child (SIGALRM) instead of the test
        try:
            code = check()
        except BaseException:
            traceback.print_exc()
            code = 99
        sys.stdout.flush()
        os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])

unused = Convoso()

def first_used_in_the_child():
    with unused:
        return 0 if len(unused.campaigns.search()) == 3 else 1

print("made before the fork, used in the child:", in_child(first_used_in_the_child), flush=True)

used = Convoso()
used.campaigns.search()

def used_in_the_parent():
    try:
        used.campaigns.search()
    except ConfigurationError as error:
        print("child:", error, flush=True)
        used.close()  # touches nothing of the parent's
    else:
        return 2
    with Convoso() as fresh:
        return 0 if len(fresh.campaigns.search()) == 3 else 1

print("used in the parent, then in the child:", in_child(used_in_the_parent), flush=True)
print("the parent still works:", len(used.campaigns.search()), flush=True)
used.close()
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_forked_child_starts_its_own_loop_or_is_told_clearly_never_hangs() -> None:
    fake = FakeConvoso(campaigns=3)
    with fake.serve_in_thread() as url:
        done = subprocess.run(
            [sys.executable, "-c", FORKED],
            env=pointed_at(url),
            capture_output=True,
            text=True,
            timeout=GUARD,
        )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "made before the fork, used in the child: 0"
    assert lines[1].startswith("child: this Convoso was first used in process")
    assert "Create the Convoso in the child" in lines[1]
    assert lines[2:] == [
        "used in the parent, then in the child: 0",
        "the parent still works: 3",
    ]
