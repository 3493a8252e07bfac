"""A Python child process interrupted as a user would: started, told "started", then signalled.

    from interrupted_child import interrupt_after_start

Used by the tests of Ctrl-C in the sync client: the child runs a script that prints
``started`` once its work is under way; the test sends the signal and collects what the child
printed and how it ended.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Mapping

__all__ = ["interrupt_after_start"]


def interrupt_after_start(
    script: str, env: Mapping[str, str], *, timeout: float, sig: int = signal.SIGINT
) -> tuple[int, str, str]:
    """Run ``python -c script``, send ``sig`` once it prints ``started``; (exit code, out, err).

    A child still running after ``timeout`` seconds is killed (and the test fails on what
    it then returns).
    """
    child = subprocess.Popen(
        [sys.executable, "-c", script],
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "started"
        child.send_signal(sig)
        out, err = child.communicate(timeout=timeout)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    return child.returncode, out, err
