"""The package's import structure: modules form layers, so no two modules import each other, even indirectly.

Imports are read with ``ast`` from every module under ``src/streamvggt``. An import counts when it runs while the
module is imported or type-checked: at module level, in a class body, or under ``if TYPE_CHECKING:``. Imports
inside a function run only when called (lazy imports) and are allowed to point upwards.
"""

from __future__ import annotations

import ast
from collections.abc import Collection
from pathlib import Path

import streamvggt

PACKAGE_DIR = Path(streamvggt.__file__).resolve().parent
PACKAGE = "streamvggt"
CLI = "streamvggt.cli"
# ``python -m streamvggt`` runs the command line; this entry point is the one module above cli.
CLI_ENTRY_POINTS = {"streamvggt.__main__"}
# The bottom of the layering (DESIGN.md): layers need torch only; the model builds on layers and the small shared
# modules, never on what drives it (sessions, weight loading, orchestration), which it reaches lazily if at all.
ALLOWED_BELOW = {
    "streamvggt.layers": ("streamvggt.layers",),
    "streamvggt.model": (
        "streamvggt.model",
        "streamvggt.layers",
        "streamvggt.streaming.cache",
        "streamvggt.config",
        "streamvggt.runtime.device",
        "streamvggt.geometry",
    ),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules() -> dict[str, Path]:
    """Every module of the package by dotted name."""
    return {module_name(path): path for path in sorted(PACKAGE_DIR.rglob("*.py"))}


def import_nodes(tree: ast.Module, lazy: bool) -> list[ast.Import | ast.ImportFrom]:
    """The import statements of a module; those inside functions only with ``lazy``."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                found.append(child)
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) and not lazy:
                continue
            visit(child)

    visit(tree)
    return found


def imported_modules(
    name: str, source: str, is_package: bool, modules: Collection[str], lazy: bool = False
) -> set[str]:
    """The package modules that module ``name`` (Python ``source``) imports; ``from pkg import sub`` names the
    submodule, relative imports are resolved against the module's package."""
    package = name if is_package else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in import_nodes(ast.parse(source, name), lazy):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
            continue
        base = node.module or ""
        if node.level:  # relative: climb level-1 packages from this module's package
            anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            base = f"{anchor}.{base}" if base else anchor
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            targets.add(submodule if submodule in modules else base)
    return {target for target in targets if target in modules and target != name}


def import_graph(lazy: bool = False) -> dict[str, set[str]]:
    modules = package_modules()
    return {
        name: imported_modules(name, path.read_text(encoding="utf-8"), path.name == "__init__.py", modules, lazy)
        for name, path in modules.items()
    }


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of two or more modules, as [a, b, ..., a]."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def connect(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return [cycle_through(sorted(component)[0], component, graph) for component in components]


def cycle_through(start: str, component: set[str], graph: dict[str, set[str]]) -> list[str]:
    """A shortest import path start -> ... -> start inside the component (breadth first)."""
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(graph[node] & component):
                if target == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if target not in previous:
                    previous[target] = node
                    following.append(target)
        frontier = following
    raise AssertionError(f"{start} is in a component without a cycle through it")


def test_the_graph_sees_the_package_modules_and_their_imports():
    graph = import_graph()
    assert len(graph) > 50
    assert {"streamvggt.model.streamvggt", "streamvggt.streaming.session", "streamvggt.weights"} <= graph.keys()
    assert "streamvggt.model.aggregator" in graph["streamvggt.model.streamvggt"]
    assert "streamvggt.io.atomic" in graph["streamvggt.weights"]


def test_imports_in_functions_are_lazy_and_all_others_count():
    source = """
from typing import TYPE_CHECKING
import pkg.a
from pkg import b
if TYPE_CHECKING:
    from pkg.c import Thing
class Holder:
    from pkg import d
def later():
    import pkg.e
"""
    modules = {"pkg", "pkg.a", "pkg.b", "pkg.c", "pkg.d", "pkg.e", "pkg.me"}
    assert imported_modules("pkg.me", source, False, modules) == {"pkg.a", "pkg.b", "pkg.c", "pkg.d"}
    assert imported_modules("pkg.me", source, False, modules, lazy=True) == {
        "pkg.a",
        "pkg.b",
        "pkg.c",
        "pkg.d",
        "pkg.e",
    }


def test_relative_imports_resolve_against_the_package():
    source = "from . import sibling\nfrom .. import top\nfrom ..other import name\nfrom .sibling import thing\n"
    modules = {"pkg", "pkg.top", "pkg.other", "pkg.sub", "pkg.sub.me", "pkg.sub.sibling"}
    assert imported_modules("pkg.sub.me", source, False, modules) == {"pkg.sub.sibling", "pkg.top", "pkg.other"}
    assert imported_modules("pkg.sub", "from . import sibling\n", True, modules) == {"pkg.sub.sibling"}


def test_find_cycles_names_an_import_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"d"}}
    assert find_cycles(graph) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_level_import_circles():
    cycles = find_cycles(import_graph())
    assert not cycles, "import circles: " + "; ".join(" -> ".join(cycle) for cycle in cycles)


def within(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == package or name.startswith(package + ".") for package in packages)


def test_layers_and_model_import_only_what_lies_below_them():
    graph = import_graph()
    upward = sorted(
        f"{name} -> {target}"
        for part, allowed in ALLOWED_BELOW.items()
        for name, targets in graph.items()
        if within(name, (part,))
        for target in targets
        if not within(target, allowed)
    )
    assert upward == []


def test_nothing_imports_the_command_line_package():
    graph = import_graph(lazy=True)
    importers = sorted(
        f"{name} -> {target}"
        for name, targets in graph.items()
        if not within(name, (CLI,)) and name not in CLI_ENTRY_POINTS
        for target in targets
        if within(target, (CLI,))
    )
    assert importers == []
    assert CLI in graph["streamvggt.__main__"]
