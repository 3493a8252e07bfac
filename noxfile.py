"""The project's entry points: `nox -s tests lint typecheck`, `nox -s fuzz`, `nox -s bench`,
`nox -s stress`."""

from __future__ import annotations

import os

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True

PYTHON = "3.11"


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Unit and integration tests (a real redis-server must be on PATH for the Redis ones)."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


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

    ``bulk_throughput`` runs last: it exits non-zero when one of issue 19's targets fails,
    which fails the session without skipping the other scripts.
    """
    session.install("-e", ".[bench]")
    for script in ("rate_accuracy", "decode"):
        session.run("python", f"benchmarks/{script}.py", *session.posargs)
    session.run("python", "benchmarks/redis_limiter.py")
    session.run("python", "benchmarks/adaptive_rate.py")
    session.run("python", "benchmarks/bulk_throughput.py", *session.posargs)


@nox.session(python=PYTHON)
def soak(session: nox.Session) -> None:
    """20,000 status changes with 10% faults: every id accounted for, no leaks (~4 min)."""
    session.install("-e", ".[bench]")
    session.run("python", "benchmarks/soak.py", *session.posargs)
