"""The project's entry points, one session per job. ``nox -l`` lists them.

- ``nox -s tests lint typecheck``: the README's test command (the default install plus the
  test tools, ruff, mypy --strict).
- ``nox -s matrix``: the suite on every Python from 3.10 to 3.13 found, with every extra;
  ``nox -s matrix-3.13`` on one.
- ``nox -s floors``: the suite on the oldest Python with the lowest version of every
  dependency the project declares (uv's ``--resolution lowest-direct``).
- ``nox -s minimal``: only the runtime dependencies and the ``cli`` extra (no httpx, no
  aiohttp, no test tools): the demo and a bulk change.
- ``nox -s fuzz``, ``nox -s stress``, ``nox -s bench``, ``nox -s soak``.

Pythons are looked for on PATH, and in pyenv's versions when pyenv is there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True

#: The Python of the everyday sessions, and the ones the project declares it supports.
PYTHON = "3.11"
PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
OLDEST, NEWEST = PYTHONS[0], PYTHONS[-1]
#: Every extra a user may install (the matrix and the floors test them all).
EVERY_EXTRA = ".[test,aiohttp,redis,cli,otel]"


def _pyenv_pythons_on_path() -> None:
    """Put pyenv's interpreters on PATH (nox finds ``python3.X`` there), newest patch first."""
    pyenv = shutil.which("pyenv")
    if pyenv is not None:
        found = subprocess.run([pyenv, "root"], capture_output=True, text=True).stdout.strip()
        root = Path(found)
    else:  # pyenv installed but not on this PATH (a CI job's shell, say)
        root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    versions = sorted((root / "versions").glob("3.*/bin"), reverse=True)
    os.environ["PATH"] = os.pathsep.join([os.environ.get("PATH", ""), *map(str, versions)])


_pyenv_pythons_on_path()


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The whole suite on the default install plus the test tools.

    A real redis-server must be on PATH for the Redis tests; tests of the aiohttp opt-in
    skip without aiohttp (``matrix`` runs them).
    """
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHONS)
def matrix(session: nox.Session) -> None:
    """The whole suite on one Python, with every extra installed (aiohttp's tests run too)."""
    session.install("-e", EVERY_EXTRA)
    session.run("pytest", *session.posargs)


@nox.session(python=OLDEST)
def floors(session: nox.Session) -> None:
    """The whole suite on the oldest Python with the lowest version of every declared dependency.

    A floor nobody tests is a guess: this installs exactly the floors ``pyproject.toml``
    names (runtime, extras and test tools) with uv, and runs everything.
    """
    session.install("uv>=0.4")
    session.run(
        "uv",
        "pip",
        "install",
        "--python",
        str(Path(session.virtualenv.location) / "bin" / "python"),
        "--resolution",
        "lowest-direct",
        "-e",
        EVERY_EXTRA,
    )
    session.run("python", "-m", "pip", "list", "--format=freeze")
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHON)
def minimal(session: nox.Session) -> None:
    """Only the runtime dependencies and the cli extra: the demo and a bulk change.

    Neither httpx nor aiohttp is installed, so the default path must not need them.
    """
    session.install("-e", ".[cli]")
    session.run("python", "tests/minimal_run.py")
    session.run("convoso", "demo")


@nox.session(python=PYTHON)
def stress(session: nox.Session) -> None:
    """The whole suite N times, to catch flaky tests: `nox -s stress -- --runs 5 --hog [-k ...]`.

    ``--hog`` keeps every core busy meanwhile; other arguments go to pytest. Prints passed, failed
    and seconds per run, then every test that failed and in how many runs; fails if any run did.
    """
    session.install("-e", ".[test]")
    session.run("python", "tests/stress_suite.py", *session.posargs)


@nox.session(python=PYTHON)
def fuzz(session: nox.Session) -> None:
    """The property tests, exploring: a random seed and 10x the examples (``CONVOSO_FUZZ_SCALE``).

    ``nox -s tests`` runs the same tests derandomized, so CI is the same every run; this
    session looks for new failures. A failure is kept in ``.hypothesis/`` and replayed
    first by the next run; the output also prints ``--hypothesis-seed=N`` to replay the run.
    """
    session.install("-e", ".[test]")
    session.env["CONVOSO_HYPOTHESIS_PROFILE"] = "explore"
    session.env["CONVOSO_FUZZ_SCALE"] = os.environ.get("CONVOSO_FUZZ_SCALE", "10")
    session.run("pytest", "tests/test_fuzz.py", "tests/test_schedule.py", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff: lint and formatting."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the package, tests, benchmarks and examples."""
    session.install("-e", ".[dev]")
    session.run("mypy", "--strict")


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Every benchmark script, each printing its table.

    ``startup``, ``otel_overhead`` and ``bulk_throughput`` run last: they exit non-zero when
    a target fails, which fails the session without skipping the other scripts.
    """
    session.install("-e", ".[bench]")
    for script in ("rate_accuracy", "decode"):
        session.run("python", f"benchmarks/{script}.py", *session.posargs)
    session.run("python", "benchmarks/redis_limiter.py")
    session.run("python", "benchmarks/adaptive_rate.py")
    session.run("python", "benchmarks/startup.py")
    session.run("python", "benchmarks/otel_overhead.py")
    session.run("python", "benchmarks/bulk_throughput.py", *session.posargs)


@nox.session(python=PYTHON)
def soak(session: nox.Session) -> None:
    """20,000 status changes with 10% faults: every id accounted for, no leaks (~4 min)."""
    session.install("-e", ".[bench]")
    session.run("python", "benchmarks/soak.py", *session.posargs)
