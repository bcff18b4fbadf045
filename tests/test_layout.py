"""The layout rules of issue 13, checked over the source tree with ``ast`` (nothing is imported).

- no import cycle between the modules of ``memory`` and ``proxy`` (function-level imports count:
  hiding one inside a function does not break the cycle);
- nothing shipped (``memory``, ``proxy``, ``scripts``) imports the test suite;
- no function in ``memory`` or ``proxy`` is longer than 60 lines.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("memory", "proxy")
MAX_FUNCTION_LINES = 60


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def sources(*roots: str) -> Iterator[tuple[str, Path, ast.Module]]:
    for root in roots:
        for path in sorted((ROOT / root).rglob("*.py")):
            yield module_name(path), path, ast.parse(path.read_text(), str(path))


def imported(module: str, path: Path, tree: ast.Module) -> set[str]:
    """Every module name ``tree`` imports, with relative imports resolved."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (``from memory import x`` counts the package
    ``memory`` and, when ``x`` is a module, ``memory.x``)."""
    trees = {name: (path, tree) for name, path, tree in sources(*PACKAGES)}
    return {
        name: {dep for dep in imported(name, path, tree) if dep in trees and dep != name}
        for name, (path, tree) in trees.items()
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for dep in sorted(graph[node]):
            if dep not in index:
                visit(dep)
                low[node] = min(low[node], low[dep])
            elif dep in stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle() -> None:
    graph = import_graph()
    assert len(graph) > 10
    assert cycles(graph) == []


def test_nothing_shipped_imports_the_tests() -> None:
    offenders = [
        f"{path.relative_to(ROOT)} imports {dep}"
        for name, path, tree in sources(*PACKAGES, "scripts", "testing")
        for dep in imported(name, path, tree)
        if dep == "tests" or dep.startswith("tests.")
    ]
    assert offenders == []


def test_functions_are_short() -> None:
    long = [
        f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)"
        for _, path, tree in sources(*PACKAGES)
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and (lines := (node.end_lineno or node.lineno) - node.lineno + 1) > MAX_FUNCTION_LINES
    ]
    assert long == []
