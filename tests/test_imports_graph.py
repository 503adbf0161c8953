"""edgec's import graph has no cycles, between modules or between its packages.

Every ``import`` in every module counts (module level and inside functions, which are often used to
dodge a cycle rather than a heavy dependency), except those under ``if TYPE_CHECKING:``, which never
run. A cycle fails with the modules in it and the line of each import that closes it. See
docs/architecture.md ("Dependency rules") for the layering the graph follows.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import edgec

ROOT = Path(edgec.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return skip


def _known(name: str) -> str | None:
    """The edgec module ``name`` names, or its closest enclosing one (None outside edgec)."""
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name if name in MODULES and name.startswith("edgec") else None


def _targets(module: str, is_package: bool, node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            parts = module.split(".") if is_package else module.split(".")[:-1]
            parts = parts[:len(parts) - (node.level - 1)]
            base = ".".join(parts + ([node.module] if node.module else []))
        # `from pkg import sub` imports the submodule pkg.sub; `from mod import name` imports mod.
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
    return [t for t in map(_known, names) if t is not None and t != module]


def import_graph() -> dict[str, dict[str, int]]:
    """``{module: {imported edgec module: line of the first such import}}`` over every module of edgec."""
    graph: dict[str, dict[str, int]] = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        skip = _type_checking_nodes(tree)
        edges = graph.setdefault(name, {})
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in skip:
                for target in _targets(name, path.name == "__init__.py", node):
                    edges.setdefault(target, node.lineno)
    return graph


def package_of(module: str) -> str:
    """``edgec.compress.qat`` -> ``edgec.compress``; top-level modules are their own node."""
    return ".".join(module.split(".")[:2])


def package_graph(graph: dict[str, dict[str, int]]) -> dict[str, dict[str, str]]:
    """Packages' graph: ``{package: {imported package: 'module:line -> module' of one such import}}``."""
    out: dict[str, dict[str, str]] = {}
    for src, edges in graph.items():
        for dst, line in edges.items():
            a, b = package_of(src), package_of(dst)
            if a != b and b != "edgec":
                out.setdefault(a, {}).setdefault(b, f"{src}:{line} -> {dst}")
    return out


def cycles(graph: dict[str, dict]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _describe(component: list[str], graph: dict[str, dict]) -> str:
    members = set(component)
    lines = [f"  {src} -> {dst} ({where})" for src in component for dst, where in sorted(graph[src].items())
             if dst in members]
    return "cycle between " + ", ".join(component) + ":\n" + "\n".join(lines)


def test_the_walker_sees_every_kind_of_import(tmp_path):
    graph = import_graph()
    assert "edgec.errors" in graph["edgec.recipe"]                  # module level
    assert "edgec.registry" in graph["edgec.compress.calibrate"]    # from-import
    assert cycles({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b": 1}, "b": {}}) == []
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import edgec.pipeline\n"
                     "def f():\n    from edgec import recipe\n")
    skip = _type_checking_nodes(tree)
    kept = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) and id(n) not in skip]
    assert [t for n in kept for t in _targets("edgec.x", False, n)] == ["edgec.recipe"]  # function-local counts


def test_no_import_cycle_between_modules():
    graph = import_graph()
    found = cycles(graph)
    assert not found, "\n".join(_describe(c, graph) for c in found)


def test_no_import_cycle_between_packages():
    graph = package_graph(import_graph())
    found = cycles(graph)
    assert not found, "\n".join(_describe(c, graph) for c in found)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_stay_under_500_lines(module):
    lines = MODULES[module].read_text(encoding="utf-8").count("\n")
    assert lines < 500, f"{MODULES[module]} has {lines} lines: split it"
