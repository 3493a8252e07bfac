"""No two modules of convoso_async import each other, directly or round a longer circle.

Every module is parsed with `ast`, so the graph holds every import the code can make: at the top,
under `if TYPE_CHECKING:`, and inside functions (a late import hides a circle, it does not remove
it). Relative imports are resolved, and `from pkg import name` counts as importing `pkg.name` when
that is a module, else `pkg`. Importing `a.b` is not counted as importing the package `a` (Python
runs `a/__init__.py` first, but that is the package's public face, not a dependency of `a.b`).
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterator, Mapping
from pathlib import Path

import convoso_async

PACKAGE_DIR = Path(convoso_async.__file__).resolve().parent

# module -> imported module -> line of the first such import (for the failure message)
Graph = dict[str, dict[str, int]]


def _module_names(root: Path, package: str) -> dict[str, Path]:
    """Every module under `root` by dotted name; a package is named by its `__init__.py`."""
    modules: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _imported(module: str, is_package: bool, tree: ast.AST) -> Iterator[tuple[str, list[str], int]]:
    """(module imported from, names imported or [] for `import x`, line) for every import."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, [], node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                # `from . import x` in a package's __init__ means the package itself.
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            yield source, [alias.name for alias in node.names], node.lineno


def import_graph(root: Path, package: str) -> Graph:
    """The import graph between the modules of the package at `root`, outside imports left out."""
    modules = _module_names(root, package)
    graph: Graph = {name: {} for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for source, names, line in _imported(name, path.name == "__init__.py", tree):
            targets = [f"{source}.{n}" if f"{source}.{n}" in modules else source for n in names]
            for target in targets or [source]:
                if target in modules and target != name:
                    graph[name].setdefault(target, line)
    return graph


def _strongly_connected(graph: Mapping[str, Mapping[str, int]]) -> list[list[str]]:
    """Tarjan's algorithm: the groups of modules that all reach each other."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def _one_circle(graph: Mapping[str, Mapping[str, int]], group: list[str]) -> list[str]:
    """The shortest circle through the group's first module, start repeated at the end."""
    start = group[0]
    members = set(group)
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for node in frontier:
            for nxt in sorted(graph[node]):
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [*reversed(path), start]
                if nxt in members and nxt not in came_from:
                    came_from[nxt] = node
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"{group} is not a circle")  # pragma: no cover - Tarjan said it was


def circles(graph: Mapping[str, Mapping[str, int]]) -> list[str]:
    """One line per circle, each step with the line of the import: `a (line 3) -> b ... -> a`."""
    found = []
    for group in _strongly_connected(graph):
        circle = _one_circle(graph, group)
        steps = [f"{a} (line {graph[a][b]})" for a, b in itertools.pairwise(circle)]
        found.append(
            " -> ".join([*steps, circle[-1]]) + f"   [all in this circle: {', '.join(group)}]"
        )
    return found


def test_no_module_of_convoso_async_imports_one_that_imports_it_back() -> None:
    graph = import_graph(PACKAGE_DIR, "convoso_async")
    assert len(graph) > 10  # the walk found the package, not an empty folder
    found = circles(graph)
    assert not found, "import circles in convoso_async:\n" + "\n".join(found)


def test_the_graph_sees_circles_through_type_checking_late_and_relative_imports(
    tmp_path: Path,
) -> None:
    root = tmp_path / "pkg"
    (root / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "from pkg.a import A\n",
        "a.py": "import typing\nif typing.TYPE_CHECKING:\n    from .sub import b\n",
        "sub/__init__.py": "",
        "sub/b.py": "def f() -> None:\n    from ..c import C\n",
        "c.py": "import pkg.a\nC = 2\n",
        "lonely.py": "import os\nfrom pkg import a\n",
    }
    for name, text in files.items():
        (root / name).write_text(text, encoding="utf-8")

    graph = import_graph(root, "pkg")

    assert graph["pkg.a"] == {"pkg.sub.b": 3}  # a submodule named in `from . import`
    assert graph["pkg.sub.b"] == {"pkg.c": 2}  # inside a function, two levels up
    assert graph["pkg.lonely"] == {"pkg.a": 2}  # `os` is outside the package
    assert circles(graph) == [
        "pkg.a (line 3) -> pkg.sub.b (line 2) -> pkg.c (line 1) -> pkg.a"
        "   [all in this circle: pkg.a, pkg.c, pkg.sub.b]"
    ]
    (root / "c.py").write_text("C = 2\n", encoding="utf-8")
    assert circles(import_graph(root, "pkg")) == []
