"""Running the ``convoso`` command against the fake server: as a child process, or in-process."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

import convoso_async
from convoso_async.testing import FakeConvoso


def cli_command(*argv: str) -> list[str]:
    """``python -m convoso_async.cli ARGV...``: the `convoso` command as a child process."""
    return [sys.executable, "-m", "convoso_async.cli", *argv]


def cli_env(url: str, **extra: str) -> dict[str, str]:
    """This environment, plus the fake's token and ``url`` as the API root, for a child process."""
    return {**os.environ, "CONVOSO_AUTH_TOKEN": FakeConvoso.TOKEN, "CONVOSO_BASE_URL": url, **extra}


@contextmanager
def serving_cli(fake: FakeConvoso, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Serve ``fake`` on loopback for in-process `main` runs; yield its URL.

    Retries do not sleep, and the token and base-URL variables point at the fake.
    """
    with convoso_async.set_testing(), fake.serve_in_thread() as url:
        monkeypatch.setenv("CONVOSO_AUTH_TOKEN", fake.TOKEN)
        monkeypatch.setenv("CONVOSO_BASE_URL", url)
        yield url
