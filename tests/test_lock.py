"""The test environment's lock files agree with what the project declares, and CI runs the
README's test command as written.

``requirements/*.txt`` pin exact versions (``nox -s lock`` writes them); ``pyproject.toml``
declares ranges. A range changed without a new lock, or a dependency added without one, fails
here rather than as an import error in some session.
"""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
#: tomllib, or on Python 3.10 tomli (a runtime dependency there).
toml: Any = importlib.import_module("tomllib" if sys.version_info >= (3, 11) else "tomli")
PYPROJECT = toml.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
#: Each lock and the extras it is compiled with (noxfile.LOCK_SOURCES says the same).
LOCKS = {
    "test": ["test"],
    "dev": ["dev"],
    "every": ["test", "aiohttp", "redis", "cli", "otel"],
    "cli": ["cli"],
}


def locked_versions(lock: str, environment: dict[str, str]) -> dict[str, Version]:
    """``name -> version`` of a lock file, for the pins whose markers hold in ``environment``."""
    pins: dict[str, Version] = {}
    text = (ROOT / "requirements" / f"{lock}.txt").read_text(encoding="utf-8")
    for line in text.splitlines():
        if not line or line[0] in "# " or line.startswith("--"):
            continue  # comments, hash continuation lines, options
        requirement = Requirement(line.rstrip(" \\"))
        if requirement.marker is None or requirement.marker.evaluate(environment):
            (pin,) = requirement.specifier
            assert pin.operator == "==", f"{lock}.txt: {line!r} is not an exact pin"
            pins[canonicalize_name(requirement.name)] = Version(pin.version)
    return pins


def declared(extras: list[str]) -> list[Requirement]:
    """The runtime requirements plus those of ``extras``, self-references expanded."""
    optional = PYPROJECT["project"]["optional-dependencies"]
    wanted, seen = list(extras), set()
    found = [Requirement(text) for text in PYPROJECT["project"]["dependencies"]]
    while wanted:
        extra = wanted.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for text in optional[extra]:
            requirement = Requirement(text)
            if canonicalize_name(requirement.name) == "convoso-async":
                wanted.extend(requirement.extras)
            else:
                found.append(requirement)
    return found


@pytest.mark.parametrize("python", ["3.10", "3.11", "3.12", "3.13"])
@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_every_declared_dependency_is_locked_inside_its_range(lock: str, python: str) -> None:
    environment = {key: str(value) for key, value in default_environment().items()}
    environment |= {
        "python_version": python,
        "python_full_version": f"{python}.0",
        "extra": "",
    }
    pins = locked_versions(lock, environment)
    for requirement in declared(LOCKS[lock]):
        if requirement.marker is not None and not requirement.marker.evaluate(environment):
            continue
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} is declared but not in requirements/{lock}.txt"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"requirements/{lock}.txt pins {name}=={pins[name]} outside {requirement}: "
            "run `nox -s lock`"
        )


def test_every_lock_holds_the_build_backend_and_hashes() -> None:
    for lock in [*LOCKS, "nox"]:
        text = (ROOT / "requirements" / f"{lock}.txt").read_text(encoding="utf-8")
        pins = len(re.findall(r"^\S+==", text, flags=re.MULTILINE))
        assert pins, f"{lock}.txt pins nothing"
        assert text.count("--hash=sha256:") >= pins, f"{lock}.txt lacks hashes"
        if lock != "nox":  # the sessions build the project from the lock, with no isolation
            assert re.search(r"^hatchling==", text, flags=re.MULTILINE), lock
            assert re.search(r"^editables==", text, flags=re.MULTILINE), lock


def readme_test_command() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = re.findall(r"```bash\n(python3 -m venv .venv .*)\n```", readme)
    assert len(commands) >= 2, "the README opens with two commands"
    return str(commands[1])


def test_ci_runs_the_readmes_test_command_as_written() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    command = readme_test_command()
    assert "--require-hashes -r requirements/nox.txt" in command
    assert any(line.strip() == command for line in ci.splitlines())
