"""Every ``>>>`` example in the package's docstrings runs, and shows what the code returns.

Examples that need a client, a server or ``await`` are plain indented code instead, with no
``>>>`` prompt, which doctest leaves alone.

doctest's own search skips a class whose ``__module__`` is not the module it searches, and the
public classes report ``convoso_async`` (or ``convoso_async.schedule``) as theirs; so the
examples are looked for in what each module's source defines, with that module's globals.
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import re
from pathlib import Path

import pytest

import convoso_async

PACKAGE = Path(convoso_async.__file__).parent

#: The modules whose docstrings hold ``>>>`` examples.
MODULES = [
    "convoso_async._models",
    "convoso_async._pacing.breaker",
    "convoso_async._pacing.ratelimit",
    "convoso_async._redaction",
    "convoso_async._redis_connection",
    "convoso_async.schedule._model",
    "convoso_async.schedule._reader",
]

PROMPT = re.compile(r"^\s*>>> ", re.MULTILINE)
DEFINITION = re.compile(r"^(?:async def|def|class) (\w+)", re.MULTILINE)


def doctests(module_name: str) -> list[doctest.DocTest]:
    """The examples of a module: its own docstring's, and those of everything it defines."""
    module = importlib.import_module(module_name)
    finder = doctest.DocTestFinder()
    found = doctest.DocTestFinder(recurse=False).find(module)
    for name in dict.fromkeys(DEFINITION.findall(inspect.getsource(module))):
        defined = getattr(module, name)
        found += finder.find(defined, f"{module_name}.{name}", module=False, globs=vars(module))
    return [test for test in found if test.examples]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


#: Each module's examples, found once at collection.
EXAMPLES = {name: doctests(name) for name in MODULES}


@pytest.mark.parametrize(
    "test",
    [test for tests in EXAMPLES.values() for test in tests],
    ids=lambda test: str(test.name),
)
def test_docstring_example_runs_as_shown(test: doctest.DocTest) -> None:
    report: list[str] = []
    result = doctest.DocTestRunner(verbose=False).run(test, out=report.append)
    assert result.failed == 0, "".join(report)


def test_every_example_in_the_package_is_run() -> None:
    prompts = {
        module_name(path): len(PROMPT.findall(path.read_text(encoding="utf-8")))
        for path in sorted(PACKAGE.rglob("*.py"))
    }
    run = {name: sum(len(test.examples) for test in tests) for name, tests in EXAMPLES.items()}
    assert {name: count for name, count in prompts.items() if count} == run
