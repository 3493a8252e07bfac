"""Without an optional extra, what needs it says which extra to install: one line, no traceback.

Each run is a child process in which the extra's package cannot be imported, as if it were not
installed: ``sys.modules[name] = None`` before anything else runs makes ``import name`` (and
``import name.sub``) raise ImportError.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_runner import cli_env

from convoso_async.testing import FakeConvoso

CLI_EXTRA = (
    "convoso: error: the command line needs the 'cli' extra: pip install 'convoso-async[cli]'\n"
)
SCHEDULE = Path(__file__).resolve().parent.parent / "examples" / "schedule.toml"
#: Only guards against a hang; each run takes about a second.
PROCESS_GUARD = 60.0

#: The two ways in: ``python -m convoso_async.cli``, and the ``convoso`` script, which calls
#: ``convoso_async.cli:main`` and exits with what it returns.
ENTRY_POINTS = {
    "python -m": "import runpy; runpy.run_module('convoso_async.cli', run_name='__main__')",
    "script": "from convoso_async.cli import main; sys.exit(main())",
}


def without(packages: tuple[str, ...], code: str) -> str:
    """Python source that hides ``packages`` from the import system, then runs ``code``."""
    return f"import sys\nfor name in {packages!r}:\n    sys.modules[name] = None\n{code}\n"


def run_without(
    packages: tuple[str, ...], code: str, *argv: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", without(packages, code), *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=PROCESS_GUARD,
    )


@pytest.fixture
def fake() -> FakeConvoso:
    return FakeConvoso(campaigns=[{"id": "111", "name": "Sales", "status": "Y"}])


@pytest.fixture
def fake_url(fake: FakeConvoso) -> Iterator[str]:
    with fake.serve_in_thread() as url:
        yield url


def test_hiding_a_package_makes_it_unimportable() -> None:
    run = run_without(("rich",), "import rich.console")
    assert run.returncode == 1
    assert "ModuleNotFoundError" in run.stderr


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize(
    "argv",
    [
        ["demo"],
        ["campaigns", "list"],
        ["campaigns", "activate", "111"],
        ["campaigns", "deactivate", "111", "--dry-run"],
        ["schedule", "apply", str(SCHEDULE)],
        ["schedule", "run", str(SCHEDULE)],
    ],
    ids=lambda argv: " ".join(Path(arg).name for arg in argv),
)
def test_without_rich_every_command_says_to_install_the_cli_extra_and_exits_two(
    entry: str, argv: list[str], fake: FakeConvoso, fake_url: str
) -> None:
    run = run_without(("rich",), ENTRY_POINTS[entry], *argv, env=cli_env(fake_url))
    assert run.returncode == 2
    assert run.stderr == CLI_EXTRA
    assert "Traceback" not in run.stderr
    assert run.stdout == ""
    assert fake.requests == []  # said before anything was sent


def test_without_rich_json_output_still_works(fake: FakeConvoso, fake_url: str) -> None:
    # --json prints plain JSON: nothing in it needs rich.
    code = ENTRY_POINTS["python -m"]
    listed = run_without(("rich",), code, "campaigns", "list", "--json", env=cli_env(fake_url))
    assert listed.returncode == 0, listed.stderr
    assert [c["id"] for c in json.loads(listed.stdout)] == ["111"]
    changed = run_without(
        ("rich",), code, "campaigns", "deactivate", "111", "--json", env=cli_env(fake_url)
    )
    assert changed.returncode == 0, changed.stderr
    assert json.loads(changed.stdout)["succeeded"] == ["111"]
    assert fake.statuses() == {"111": "N"}


def test_without_rich_the_version_and_the_fake_server_need_no_extra() -> None:
    code = ENTRY_POINTS["python -m"]
    version = run_without(("rich",), code, "--version")
    assert version.returncode == 0
    assert version.stdout.startswith("convoso ")
    fake_help = run_without(("rich",), code, "fake-server", "--help")
    assert fake_help.returncode == 0
    assert "usage: convoso fake-server" in fake_help.stdout


def test_without_redis_the_limiter_imports_and_constructing_it_names_the_extra() -> None:
    run = run_without(
        ("redis",),
        "from convoso_async import ConfigurationError\n"
        "from convoso_async.redis_limiter import RedisRateLimiter\n"
        "try:\n"
        "    RedisRateLimiter('redis://localhost:6379/0', rate=10)\n"
        "except ConfigurationError as error:\n"
        "    print(error)\n",
    )
    assert run.returncode == 0, run.stderr
    # Then, in brackets, the import's own error (which differs between Python versions).
    assert run.stdout.startswith(
        "RedisRateLimiter needs the 'redis' extra: pip install 'convoso-async[redis]' ("
    )
    assert run.stdout.count("\n") == 1


def test_without_aiohttp_the_opt_in_names_the_extra_and_the_default_client_works(
    fake_url: str,
) -> None:
    run = run_without(
        ("aiohttp",),
        "import anyio\n"
        "from convoso_async import AsyncConvoso, ConfigurationError\n"
        "try:\n"
        "    AsyncConvoso('t', transport='aiohttp')\n"
        "except ConfigurationError as error:\n"
        "    print(error)\n"
        "async def main():\n"
        "    async with AsyncConvoso(sys.argv[2], base_url=sys.argv[1]) as convoso:\n"
        "        print(len(await convoso.campaigns.search()))\n"
        "anyio.run(main)\n",
        fake_url,
        FakeConvoso.TOKEN,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [
        "transport=\"aiohttp\" needs aiohttp: pip install 'convoso-async[aiohttp]'",
        "1",
    ]
