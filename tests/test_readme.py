"""Every code block of README.md runs, as written, against the fake Convoso.

The blocks are read from README.md at test time (no copies), and each runs
in its own process with ``CONVOSO_AUTH_TOKEN`` and ``CONVOSO_BASE_URL`` set
for a fresh fake serving the API reference's campaigns 111, 222 and 333
(what ``convoso fake-server --reference`` serves), in a scratch directory
where ``examples/`` is the project's.

The convention, by fence:

- ```python: run as a script; top-level ``await`` / ``async with`` / ``async
  for`` are allowed, as in ``python -m asyncio``. A block that defines
  ``test_*`` functions is a test file: it runs under pytest, with
  pytest-asyncio in its default strict mode.
- ```bash: each command runs in turn with ``sh`` (``convoso`` and ``python``
  are this environment's) and must exit 0. A command whose comment says
  "until Ctrl-C" is a server: it must print a line, then stop with exit 0 on
  SIGINT.
- ```toml: a schedule file; it must load.
- ```text: output, diagrams, tables: not run.
- A block right after ``<!-- readme: not run (why) -->`` is not run; the why
  is required (installing from the network, a run of several minutes).

Any other fence fails `test_every_block_is_run_or_says_why_not`, so a new
block is run or explicitly excused.
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from convoso_async.schedule import Schedule
from convoso_async.testing import FakeConvoso, reference_campaigns

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
#: Upper bound on one command or block; each takes about a second.
RUN_TIMEOUT = 120.0

FENCE = re.compile(r"^```(?P<info>[^`]*)$")
NOT_RUN = re.compile(r"^<!-- readme: not run \((?P<why>[^)]+)\) -->$")
RUN_LANGUAGES = {"python", "bash", "toml"}
QUIET_LANGUAGES = {"text"}

#: Runs one python block from stdin, allowing top-level await as `python -m asyncio` does.
BLOCK_RUNNER = """\
import ast, asyncio, sys
source = sys.stdin.read()
code = compile(source, "README.md", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
result = eval(code, {"__name__": "__main__"})
if asyncio.iscoroutine(result):
    asyncio.run(result)
"""


class Block(NamedTuple):
    line: int
    language: str
    source: str
    not_run: str | None


def readme_blocks() -> list[Block]:
    lines = README.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        fence = FENCE.match(lines[index])
        if fence is None:
            index += 1
            continue
        start = index
        index += 1
        while not lines[index].startswith("```"):
            index += 1
        before = next((line.strip() for line in reversed(lines[:start]) if line.strip()), "")
        excused = NOT_RUN.match(before)
        blocks.append(
            Block(
                line=start + 1,
                language=fence["info"].strip().split(" ")[0],
                source="\n".join(lines[start + 1 : index]) + "\n",
                not_run=excused["why"] if excused else None,
            )
        )
        index += 1
    return blocks


BLOCKS = readme_blocks()
RUN = [b for b in BLOCKS if b.not_run is None and b.language in RUN_LANGUAGES]


def test_every_block_is_run_or_says_why_not() -> None:
    unexplained = [
        f"README.md:{b.line}: ```{b.language}"
        for b in BLOCKS
        if b.not_run is None and b.language not in RUN_LANGUAGES | QUIET_LANGUAGES
    ]
    assert unexplained == [], "fence output as ```text, or run it (see this module's docstring)"
    sources = "".join(b.source for b in RUN)
    for must_run in ("async def main()", "convoso campaigns list", "async def test_"):
        assert must_run in sources


@pytest.fixture
def session(tmp_path: Path) -> Iterator[tuple[dict[str, str], Path]]:
    """The environment and scratch directory one block runs in, with its own fake Convoso."""
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    fake = FakeConvoso(campaigns=reference_campaigns())
    with fake.serve_in_thread() as url:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONVOSO_")}
        env |= {"CONVOSO_AUTH_TOKEN": fake.TOKEN, "CONVOSO_BASE_URL": url}
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        env.pop("PYTEST_ADDOPTS", None)
        yield env, tmp_path


@pytest.mark.parametrize("block", RUN, ids=[f"line{b.line}-{b.language}" for b in RUN])
def test_readme_block_runs_as_written(block: Block, session: tuple[dict[str, str], Path]) -> None:
    env, cwd = session
    if block.language == "toml":
        Schedule.from_toml(block.source, source=f"README.md:{block.line}")
    elif block.language == "python":
        run_python(block, env, cwd)
    else:
        for command in shell_commands(block.source):
            run_command(command, env, cwd)


def run_python(block: Block, env: dict[str, str], cwd: Path) -> None:
    if re.search(r"^(async )?def test_", block.source, re.MULTILINE):
        test_file = cwd / "test_readme_block.py"
        test_file.write_text(block.source, encoding="utf-8")
        argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        argv += ["-o", "asyncio_mode=strict", str(test_file)]
        done = subprocess.run(
            argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert re.search(r"\b1 passed\b", done.stdout), done.stdout
        return
    done = subprocess.run(
        [sys.executable, "-c", BLOCK_RUNNER],
        input=block.source,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    assert done.returncode == 0, f"README.md:{block.line}\n{done.stdout}{done.stderr}"
    assert "Traceback" not in done.stderr


def shell_commands(source: str) -> list[str]:
    """The block's commands: continuation lines joined, blank and comment-only lines dropped."""
    commands: list[str] = []
    pending = ""
    for line in source.splitlines():
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        command = (pending + line).strip()
        pending = ""
        if command and not command.startswith("#"):
            commands.append(command)
    return commands


def run_command(command: str, env: dict[str, str], cwd: Path) -> None:
    if "until Ctrl-C" in command:
        run_server(command, env, cwd)
        return
    done = subprocess.run(
        ["sh", "-c", command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    assert done.returncode == 0, f"$ {command}\n{done.stdout}{done.stderr}"
    assert "Traceback" not in done.stderr


def run_server(command: str, env: dict[str, str], cwd: Path) -> None:
    """A command that serves until Ctrl-C: it must print a line, then stop cleanly on SIGINT."""
    process = subprocess.Popen(
        ["sh", "-c", f"exec {command}"],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            assert selector.select(RUN_TIMEOUT), f"$ {command}\nprinted nothing"
        first = process.stdout.readline()
        assert first.strip(), f"$ {command}\nended without output"
        time.sleep(0.2)  # a moment at work, then the user's Ctrl-C
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=RUN_TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, f"$ {command}\n{first}{out}{err}"
    assert "Traceback" not in err
