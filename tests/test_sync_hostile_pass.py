"""`Convoso` called where a thread cannot wait for anything: at interpreter exit, from a signal
handler. Found by a second hostile pass (issue 28); each of these hung before.

Each runs in a child process, against the fake over loopback, bounded by a timeout.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from convoso_async import BatchProgress, BatchResult, Convoso
from convoso_async.testing import FakeConvoso

#: Only guards against a hang: each child's work takes a second or two.
GUARD = 20.0


def run_child(code: str, url: str, token: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CONVOSO_AUTH_TOKEN": token, "CONVOSO_BASE_URL": url}
    try:
        return subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=GUARD
        )
    except subprocess.TimeoutExpired as hung:
        pytest.fail(f"the child hung; its stderr: {hung.stderr!r}")


CALL_FROM_DEL_AT_EXIT = """
import sys
from convoso_async import ConfigurationError, Convoso

class Report:
    def __init__(self, convoso):
        self.convoso = convoso
    def __del__(self):  # runs as the interpreter shuts down, the loop thread already frozen
        try:
            self.convoso.campaigns.search()
        except ConfigurationError as exc:
            print("refused:", exc, file=sys.stderr, flush=True)

convoso = Convoso()
print(len(convoso.campaigns.search()), flush=True)
report = Report(convoso)
"""


def test_a_call_from_del_as_the_interpreter_exits_is_refused_not_a_hang() -> None:
    fake = FakeConvoso(campaigns=3)
    with fake.serve_in_thread() as url:
        child = run_child(CALL_FROM_DEL_AT_EXIT, url, fake.TOKEN)
    assert child.stdout.strip() == "3"
    assert child.returncode == 0, child.stderr
    assert "refused: " in child.stderr
    assert "shutting down" in child.stderr


CALL_FROM_A_SIGNAL_HANDLER_DURING_A_CALL = """
import os, signal, sys, threading
import convoso_async._sync.loop as loop_module
from convoso_async import Convoso

convoso = Convoso()
answers = []
signal.signal(signal.SIGUSR1, lambda *_: answers.append(len(convoso.campaigns.search())))

# The signal arrives while the first call is setting up the loop thread (SIGTERM to a
# script, say, whose handler uses the client to clean up): its handler runs right there.
starting = loop_module._Running.__init__
def start_then_signal(self, *args):
    loop_module._Running.__init__ = starting  # once
    starting(self, *args)
    signal.pthread_kill(threading.get_ident(), signal.SIGUSR1)
loop_module._Running.__init__ = start_then_signal

first = convoso.campaigns.search()
os.kill(os.getpid(), signal.SIGUSR1)  # and once more, during a call or between calls
convoso.campaigns.search()
convoso.close()
print(len(first), answers, flush=True)
"""


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="no signals to self here")
def test_a_signal_handler_that_calls_the_client_while_it_is_busy_gets_its_answer() -> None:
    fake = FakeConvoso(campaigns=3)
    with fake.serve_in_thread() as url:
        child = run_child(CALL_FROM_A_SIGNAL_HANDLER_DURING_A_CALL, url, fake.TOKEN)
    assert child.returncode == 0, child.stderr
    assert child.stdout.strip() == "3 [3, 3]"
    assert {r.path for r in fake.requests} == {"/campaigns/search"}


# -- a callback that ends the program ------------------------------------------------------------


@pytest.mark.parametrize("error", [SystemExit, GeneratorExit])
def test_a_callback_raising_system_exit_stops_the_call_in_the_caller_s_thread(
    error: type[BaseException],
) -> None:
    # sys.exit() in on_progress ("too many failures: stop"): the batch stops as on Ctrl-C
    # (partial result to on_interrupt), the exit is raised where the caller called, and the
    # client's own loop thread lives on. It killed that thread (every later call: "closed"),
    # and the caller got a BaseExceptionGroup instead.
    fake = FakeConvoso(campaigns=40, latency=0.02)
    ids = [str(1001 + n) for n in range(40)]
    partial: list[BatchResult] = []

    def stop_early(progress: BatchProgress) -> None:
        if progress.done == 2:
            raise error("enough")

    with fake.serve_in_thread() as url, Convoso(fake.TOKEN, base_url=url) as convoso:
        with pytest.raises(error, match="enough"):
            convoso.campaigns.set_status_many(
                ids, False, max_concurrency=2, on_progress=stop_early, on_interrupt=partial.append
            )
        [result] = partial
        places = [*result.succeeded, *result.failed, *result.not_sent, *result.unknown]
        assert sorted(places) == ids
        assert len(result.not_sent) >= 30  # stopped there, not run to its end
        assert len(convoso.campaigns.search()) == 40  # the client still works
