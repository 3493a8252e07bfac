"""The public face: which modules are API, and that the README names exactly what they export.

A module whose dotted path has no part starting with an underscore is importable API; every
other module is private machinery that may move. The README is the documentation: each name it
imports must come from a public module's ``__all__``, and each name a public module exports must
be named in the README.
"""

from __future__ import annotations

import ast
import importlib
import json
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import convoso_async

README = Path(__file__).resolve().parent.parent / "README.md"

#: The import paths users may rely on: the client, the fake, the Redis limiter, schedules, and
#: the command line's entry point (``convoso = convoso_async.cli:main``).
PUBLIC_MODULES = {
    "convoso_async",
    "convoso_async.testing",
    "convoso_async.redis_limiter",
    "convoso_async.schedule",
    "convoso_async.cli",
}


def _all_modules() -> list[str]:
    found = ["convoso_async"]
    for info in pkgutil.walk_packages(convoso_async.__path__, prefix="convoso_async."):
        found.append(info.name)
    return found


def _is_public(name: str) -> bool:
    return not any(part.startswith("_") for part in name.split("."))


def _readme_imports() -> list[tuple[str, str]]:
    """(module, name) for every ``from convoso_async... import name`` in the README's code."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    pairs = []
    for block in blocks:
        for node in ast.walk(ast.parse(block)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("convoso_async"):
                pairs += [(node.module or "", alias.name) for alias in node.names]
    return pairs


def test_the_public_modules_are_exactly_the_pinned_list() -> None:
    public = {name for name in _all_modules() if _is_public(name)}
    assert public == PUBLIC_MODULES


@pytest.mark.parametrize("module", sorted(PUBLIC_MODULES))
def test_every_public_module_declares_what_it_exports_and_exports_it(module: str) -> None:
    loaded = importlib.import_module(module)
    exported = getattr(loaded, "__all__", None)
    assert exported, f"{module} has no __all__"
    missing = [name for name in exported if not hasattr(loaded, name)]
    assert missing == []


def test_every_name_the_readme_imports_comes_from_a_public_modules_all() -> None:
    pairs = _readme_imports()
    assert len(pairs) > 10, "the README's imports were not found: the test proves nothing"
    wrong = [
        f"from {module} import {name}"
        for module, name in pairs
        if module not in PUBLIC_MODULES or name not in importlib.import_module(module).__all__
    ]
    assert wrong == [], "the README imports from private modules or unexported names"


@pytest.mark.parametrize("module", sorted(PUBLIC_MODULES))
def test_every_exported_name_is_documented_in_the_readme(module: str) -> None:
    text = README.read_text(encoding="utf-8")
    exported = importlib.import_module(module).__all__
    undocumented = [name for name in exported if not re.search(rf"\b{re.escape(name)}\b", text)]
    assert undocumented == [], f"{module} exports names the README never mentions"


def test_private_modules_are_not_reexported_under_public_names() -> None:
    # ``from convoso_async import client`` must not work by accident: a public
    # attribute that is a private module would be API in all but name.
    leaks = [
        f"{module}.{attribute}"
        for module in PUBLIC_MODULES
        for attribute, value in vars(importlib.import_module(module)).items()
        if not attribute.startswith("_")
        and type(value).__name__ == "module"
        and value.__name__.startswith("convoso_async")
        and not _is_public(value.__name__)
    ]
    assert leaks == []


_WHERE_DEFINED = """
import importlib, json, sys
import convoso_async
homes = convoso_async._HOMES
seen = {}
for name, home in homes.items():  # from the defining module, before the package hands it out
    seen[name] = getattr(importlib.import_module(home, "convoso_async"), name).__module__
print(json.dumps(seen))
"""


def test_every_public_name_reports_the_package_as_its_module_wherever_it_comes_from() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _WHERE_DEFINED], capture_output=True, text=True, check=True
    )
    modules = json.loads(done.stdout)
    expected = dict.fromkeys(modules, "convoso_async")
    # Schedules are public in their own module, where their docs are.
    expected |= {"Schedule": "convoso_async.schedule", "ScheduleError": "convoso_async.schedule"}
    assert modules == expected
    assert set(modules) == set(convoso_async.__all__) - {"__version__"}
    assert repr(convoso_async.CampaignNotFoundError) == (
        "<class 'convoso_async.CampaignNotFoundError'>"
    )


def test_importing_the_package_loads_no_http_library() -> None:
    code = "import sys, convoso_async; print(sorted(m for m in sys.modules if m in MODULES))"
    modules = "{'httpx2', 'httpcore2', 'httpx', 'httpcore', 'aiohttp', 'trio', 'rich', 'redis'}"
    done = subprocess.run(
        [sys.executable, "-c", f"MODULES = {modules}\n{code}"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "[]"
