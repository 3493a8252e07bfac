"""The project's entry points, one session per job. ``nox -l`` lists them.

- ``nox`` (= ``nox -s tests lint typecheck``): the README's test command, on the locked test
  environment (``requirements/*.txt``), on the Python nox runs under.
- ``nox -s lock``: regenerate every lock file (newest releases that fit the declared ranges).
- ``nox -s latest``: the newest Python found, every extra, the newest release of everything,
  no lock: a new upstream release is seen here on purpose, not in ``tests`` by accident.
- ``nox -s floors``: the oldest Python with the lowest version of every declared dependency.
- ``nox -s minimal``: only the runtime dependencies and the ``cli`` extra (no httpx, no
  aiohttp, no test tools): the demo and a bulk change.
- ``nox -s matrix``: the suite on every Python from 3.10 to 3.13 found, every extra, locked.
- ``nox -s fuzz``, ``nox -s stress``, ``nox -s bench``, ``nox -s soak``.

Pythons are looked for on PATH, and in pyenv's versions when pyenv is there. A session whose
Python is not found is an error, never a silent skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True
# A session whose interpreter is missing fails the run (nox's default outside CI is to skip it
# and exit 0, which is a green that ran nothing).
nox.options.error_on_missing_interpreters = True
# Only Pythons that are on this machine: never one downloaded (nox would otherwise ask uv to
# fetch a missing one, which hides that it is missing and needs a network CI does not have).
nox.options.download_python = "never"
# uv makes the environments (seconds, not minutes); plain virtualenv where uv is missing.
nox.options.default_venv_backend = "uv|virtualenv"

# The suite starts hundreds of Python processes (the CLI, README blocks, workers, servers) and
# pytest-xdist workers that each rewrite every test module's asserts: with bytecode caching off
# (PYTHONDONTWRITEBYTECODE, set in some shells and sandboxes) each of them compiles all it
# imports from source again, a third of the suite's CPU. The sessions' own environments cache
# it; uv compiles what it installs, as pip does.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
os.environ.setdefault("UV_COMPILE_BYTECODE", "1")

#: The Pythons the project declares it supports (keep in step with pyproject's classifiers).
PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
OLDEST, NEWEST = PYTHONS[0], PYTHONS[-1]
#: Every extra a user may install (the matrix, latest and the floors test them all).
EVERY_EXTRA = ".[test,aiohttp,redis,cli,otel]"
ROOT = Path(__file__).resolve().parent
LOCKS = ROOT / "requirements"

#: What each lock file holds: ``(lock, what it is compiled from)``. ``nox -s lock`` writes them
#: all; every lock is universal (one file for every Python from 3.10 and every platform) and
#: carries hashes, and each also pins the build backend so the project builds from it too.
LOCK_SOURCES: dict[str, list[str]] = {
    # The README's test command installs this one first: nox itself, and uv for the sessions.
    "nox": ["requirements/nox.in"],
    # `tests`: the default install plus the test tools (no aiohttp: its tests skip).
    "test": ["pyproject.toml", "requirements/build.in", "--extra", "test"],
    # `lint` and `typecheck`: everything, so mypy sees every library's types.
    "dev": ["pyproject.toml", "requirements/build.in", "--extra", "dev"],
    # `matrix`: every extra a user may install.
    "every": [
        "pyproject.toml",
        "requirements/build.in",
        *(
            arg
            for extra in ("test", "aiohttp", "redis", "cli", "otel")
            for arg in ("--extra", extra)
        ),
    ],
    # `minimal`: the runtime dependencies and the cli extra alone.
    "cli": ["pyproject.toml", "requirements/build.in", "--extra", "cli"],
}


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


def _everyday_python() -> str | None:
    """The Python of the everyday sessions: nox's own when the project supports it.

    ``None`` tells nox to use the interpreter it runs under. Otherwise (nox on a Python the
    project does not support) the newest supported one found on PATH; if there is none, the
    newest supported version, which nox then reports as missing, an error.
    """
    running = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if running in PYTHONS:
        return None
    found = [version for version in PYTHONS if shutil.which(f"python{version}")]
    return found[-1] if found else NEWEST


def _newest_python() -> str:
    """The newest supported Python found (``latest`` runs on it), else the newest supported."""
    found = [version for version in PYTHONS if shutil.which(f"python{version}")]
    running = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if running in PYTHONS:
        found.append(running)
    return max(found, key=lambda version: tuple(map(int, version.split(".")))) if found else NEWEST


PYTHON = _everyday_python()


def install_locked(session: nox.Session, lock: str) -> None:
    """Install ``requirements/<lock>.txt`` exactly (hash-checked), then the project on it."""
    session.install("--require-hashes", "-r", str(LOCKS / f"{lock}.txt"))
    # Every dependency and the build backend are already there, at the locked versions.
    session.install("--no-deps", "--no-build-isolation", "-e", str(ROOT))


def _workers() -> str:
    """How many pytest-xdist workers: ``CONVOSO_TEST_WORKERS``, else 6.

    The suite mostly waits on real time (servers, retries, rate limits over loopback), so more
    workers than cores pays; the tests marked ``timing`` share one worker and run one at a time.
    """
    return os.environ.get("CONVOSO_TEST_WORKERS", "6")


def run_pytest(session: nox.Session) -> None:
    """The suite in parallel, or as the caller asks: ``nox -s tests -- -k retry`` runs serially."""
    if session.posargs:
        session.run("pytest", *session.posargs)
    else:
        session.run("pytest", "-n", _workers(), "--dist", "loadgroup")


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The whole suite on the default install plus the test tools, locked, in parallel.

    A real redis-server must be on PATH for the Redis tests; tests of the aiohttp opt-in
    skip without aiohttp (``matrix`` and ``latest`` run them).
    """
    install_locked(session, "test")
    run_pytest(session)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff: lint and formatting, at the locked ruff."""
    install_locked(session, "dev")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the package, tests, benchmarks and examples, at the locked versions."""
    install_locked(session, "dev")
    session.run("mypy", "--strict")


def _uv() -> str:
    """The uv binary: the one installed beside nox (the ``uv`` package), else uv on PATH."""
    try:
        from uv import find_uv_bin
    except ImportError:
        found = shutil.which("uv")
        if found is None:
            raise RuntimeError("uv is needed: requirements/nox.txt brings it") from None
        return found
    return str(find_uv_bin())


def _venv_python(session: nox.Session) -> str:
    return str(Path(session.virtualenv.location) / "bin" / "python")


def _freeze(session: nox.Session) -> None:
    """Print what the session's environment holds, one ``name==version`` a line."""
    session.run(_uv(), "pip", "freeze", "--python", _venv_python(session), external=True)


@nox.session(venv_backend="none")
def lock(session: nox.Session) -> None:
    """Regenerate every ``requirements/*.txt`` from the declared ranges, newest releases first.

    Run it when ``latest`` has shown that a new release works (or after the code or a range
    was fixed for it), then commit the locks.
    """
    for name, sources in LOCK_SOURCES.items():
        session.run(
            _uv(), "pip", "compile", *sources,
            "--universal", "--python-version", OLDEST, "--generate-hashes", "--upgrade",
            "--quiet", "--output-file", f"requirements/{name}.txt",
            env={"UV_CUSTOM_COMPILE_COMMAND": "nox -s lock"},
            external=True,
        )  # fmt: skip


@nox.session(python=_newest_python())
def latest(session: nox.Session) -> None:
    """The newest Python, every extra, the newest release of everything, no lock; mypy too.

    What a user installing today gets. When this fails and ``tests`` passes, an upstream
    release broke something: fix the code or a declared range, then ``nox -s lock``.
    """
    session.install("--upgrade", "-e", ".[dev]")
    _freeze(session)
    run_pytest(session)
    session.run("mypy", "--strict")


@nox.session(python=PYTHONS)
def matrix(session: nox.Session) -> None:
    """The whole suite on one Python, every extra installed (aiohttp's tests run too), locked."""
    install_locked(session, "every")
    run_pytest(session)


@nox.session(python=OLDEST)
def floors(session: nox.Session) -> None:
    """The whole suite on the oldest Python with the lowest version of every declared dependency.

    A floor nobody tests is a guess: this installs exactly the floors ``pyproject.toml``
    names (runtime, extras and test tools) with uv, and runs everything.
    """
    session.run(
        _uv(), "pip", "install", "--python", _venv_python(session),
        "--resolution", "lowest-direct", "-e", EVERY_EXTRA,
        external=True,
    )  # fmt: skip
    _freeze(session)
    run_pytest(session)


@nox.session(python=PYTHON)
def minimal(session: nox.Session) -> None:
    """Only the runtime dependencies and the cli extra: the demo and a bulk change.

    Neither httpx nor aiohttp is installed, so the default path must not need them.
    """
    install_locked(session, "cli")
    session.run("python", "tests/minimal_run.py")
    session.run("convoso", "demo")


@nox.session(python=PYTHON)
def stress(session: nox.Session) -> None:
    """The whole suite N times, to catch flaky tests: `nox -s stress -- --runs 5 --hog [-k ...]`.

    ``--hog`` keeps every core busy meanwhile; other arguments go to pytest (``-n 4 --dist
    loadgroup`` for parallel workers). Prints passed, failed and seconds per run, then every
    test that failed and in how many runs; fails if any run did.
    """
    install_locked(session, "test")
    session.run("python", "tests/stress_suite.py", *session.posargs)


@nox.session(python=PYTHON)
def fuzz(session: nox.Session) -> None:
    """The property tests, exploring: a random seed and 10x the examples (``CONVOSO_FUZZ_SCALE``).

    ``nox -s tests`` runs the same tests derandomized, so CI is the same every run; this
    session looks for new failures. A failure is kept in ``.hypothesis/`` and replayed
    first by the next run; the output also prints ``--hypothesis-seed=N`` to replay the run.
    """
    install_locked(session, "test")
    session.env["CONVOSO_HYPOTHESIS_PROFILE"] = "explore"
    session.env["CONVOSO_FUZZ_SCALE"] = os.environ.get("CONVOSO_FUZZ_SCALE", "10")
    session.run("pytest", "tests/test_fuzz.py", "tests/test_schedule.py", *session.posargs)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Every benchmark script, each printing its table.

    ``startup``, ``otel_overhead`` and ``bulk_throughput`` run last: they exit non-zero when
    a target fails, which fails the session without skipping the other scripts.
    """
    install_locked(session, "dev")
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
    install_locked(session, "dev")
    session.run("python", "benchmarks/soak.py", *session.posargs)
