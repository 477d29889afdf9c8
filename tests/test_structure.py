"""The package's import structure: every module sits in a rank (docs/architecture.md), imports only its own rank
or lower ones, and no modules import each other, even indirectly.

Imports are read with ``ast`` from every module under ``src/streamvggt``, wherever they stand: at module level, in a
class body, under ``if TYPE_CHECKING:`` or inside a function. A lazy import only delays when two modules meet; they
still depend on each other, so it counts like any other. A module named by a string also counts when the string is
``importlib.import_module``'s argument or a value of a dict literal (the lazy-export tables ``_PUBLIC`` and the
command line's table of delegated commands).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Collection, Sequence
from pathlib import Path

import streamvggt

PACKAGE_DIR = Path(streamvggt.__file__).resolve().parent
PACKAGE = "streamvggt"
CLI = "streamvggt.cli"
ENTRY = "streamvggt.__main__"
ARCHITECTURE_DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"

# The ranks, low to high, by module or folder below the package (a folder places everything in it). A module may
# import its own rank and lower ones; inside one rank only circles are forbidden. A new top-level module or folder
# has no rank until it is placed here, and the test below says so.
RANKS: list[tuple[str, ...]] = [
    # Shared vocabulary: the model config, geometry, optional dependencies, the per-frame result, reading inputs
    # and writing outputs (io.errors, io.atomic, io.inputs, io.outputs) and the procedural scenes. No model here.
    ("config", "geometry", "extras", "results", "io", "scenes"),
    ("layers",),  # attention, blocks, RoPE, patch embed
    ("model",),  # the network: architecture and weights only
    ("runtime",),  # how a model runs here: device, precision, compilation, allocator
    ("weights",),  # checkpoints: find, read, check, build, save
    ("streaming", "mapping"),  # the session and its cache; the long-video map
    ("pipeline",),  # options, the reconstructor, the frame loop
    ("viewer", "evaluate", "collection", "train", "demo"),  # the commands' packages
    ("cli",),  # one module per command
    # The entry points. The package's own __init__ sits here too: its lazy-export table (_PUBLIC) names modules
    # from every rank, and nothing below may import it (its __version__ apart, see ROOT_CONSTANTS).
    ("__main__", ""),
]
# Ranked names that have no code yet, so that the table can be checked for typos and stale entries.
PLANNED: set[str] = set()  # rank entries named before their package exists (none now)
# Python runs the package's __init__ before any of its submodules, so a name it defines itself and imports nothing
# for adds no dependency; importing it from below is not an upward import.
ROOT_CONSTANTS = {"__version__"}
# Narrower than the ranks at the bottom: layers need torch only; the model builds on layers, its config and
# geometry, never on what drives it (sessions, caches, weight loading, devices), not even lazily.
ALLOWED_BELOW = {
    "streamvggt.layers": ("streamvggt.layers",),
    "streamvggt.model": ("streamvggt.model", "streamvggt.layers", "streamvggt.config", "streamvggt.geometry"),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules() -> dict[str, Path]:
    """Every module of the package by dotted name."""
    return {module_name(path): path for path in sorted(PACKAGE_DIR.rglob("*.py"))}


def is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def import_nodes(tree: ast.Module) -> list[tuple[ast.Import | ast.ImportFrom, bool]]:
    """The import statements of a module, each with whether it runs when the module is imported (module level or
    class body, not inside a function or under ``if TYPE_CHECKING:``)."""
    found: list[tuple[ast.Import | ast.ImportFrom, bool]] = []

    def visit(node: ast.AST, eager: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                found.append((child, eager))
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                visit(child, False)
            elif isinstance(child, ast.If) and is_type_checking(child):
                for statement in child.body:
                    visit(ast.Module(body=[statement], type_ignores=[]), False)
                for statement in child.orelse:
                    visit(ast.Module(body=[statement], type_ignores=[]), eager)
            else:
                visit(child, eager)

    visit(tree, True)
    return found


def named_modules(tree: ast.Module) -> set[str]:
    """Module names given as strings where they are imported later: ``import_module("...")`` and dict values."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if called == "import_module" and node.args:
                names.add(node.args[0].value if isinstance(node.args[0], ast.Constant) else "")
        elif isinstance(node, ast.Dict):
            names.update(value.value for value in node.values if isinstance(value, ast.Constant))
    return {name for name in names if isinstance(name, str)}


def imported_modules(
    name: str, source: str, is_package: bool, modules: Collection[str], eager_only: bool = False
) -> set[str]:
    """The package modules that module ``name`` (Python ``source``) imports; ``from pkg import sub`` names the
    submodule, relative imports are resolved against the module's package. With ``eager_only``, only the imports
    that run when the module itself is imported."""
    package = name if is_package else name.rpartition(".")[0]
    root = name.partition(".")[0]
    tree = ast.parse(source, name)
    targets: set[str] = set()
    for node, eager in import_nodes(tree):
        if eager_only and not eager:
            continue
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
            continue
        base = node.module or ""
        if node.level:  # relative: climb level-1 packages from this module's package
            anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            base = f"{anchor}.{base}" if base else anchor
        for alias in node.names:
            if base == root and alias.name in ROOT_CONSTANTS:
                continue
            submodule = f"{base}.{alias.name}"
            targets.add(submodule if submodule in modules else base)
    if not eager_only:
        targets.update(named_modules(tree))
    return {target for target in targets if target in modules and target != name}


def import_graph(eager_only: bool = False) -> dict[str, set[str]]:
    modules = package_modules()
    return {
        name: imported_modules(name, path.read_text(encoding="utf-8"), path.name == "__init__.py", modules, eager_only)
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


def within(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == package or name.startswith(package + ".") for package in packages)


def rank_of(module: str, ranks: Sequence[tuple[str, ...]] = RANKS, package: str = PACKAGE) -> int | None:
    """The rank of a module: that of the longest table entry naming it or a folder above it; the empty entry is
    the package's own __init__ only, not everything in it."""
    best: tuple[int, int] | None = None  # (entry length, rank)
    for rank, entries in enumerate(ranks):
        for entry in entries:
            full = f"{package}.{entry}" if entry else package
            matches = module == full if not entry else within(module, (full,))
            if matches and (best is None or len(full) > best[0]):
                best = (len(full), rank)
    return None if best is None else best[1]


def upward_imports(
    graph: dict[str, set[str]], ranks: Sequence[tuple[str, ...]] = RANKS, package: str = PACKAGE
) -> list[str]:
    """Every import of a module from a higher rank than the importer's, as 'importer -> imported'."""
    found = []
    for name, targets in sorted(graph.items()):
        for target in sorted(targets):
            own, other = rank_of(name, ranks, package), rank_of(target, ranks, package)
            if own is not None and other is not None and other > own:
                found.append(f"{name} -> {target}")
    return found


# The checker's own parts: each must see what it is there to see, or the package tests below pass vacuously.


def test_the_graph_sees_the_package_modules_and_their_imports():
    graph = import_graph()
    assert len(graph) > 50
    assert {"streamvggt.model.streamvggt", "streamvggt.streaming.session", "streamvggt.weights"} <= graph.keys()
    assert "streamvggt.model.aggregator" in graph["streamvggt.model.streamvggt"]
    assert "streamvggt.io.atomic" in graph["streamvggt.weights"]
    # _PUBLIC's strings: the root names the reconstructor only through its lazy-export table and TYPE_CHECKING.
    assert "streamvggt.pipeline.reconstructor" in graph[PACKAGE]
    assert "streamvggt.train.loop" in graph["streamvggt.train"]


def test_every_import_counts_wherever_it_stands():
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
    assert imported_modules("pkg.me", source, False, modules) == {"pkg.a", "pkg.b", "pkg.c", "pkg.d", "pkg.e"}
    assert imported_modules("pkg.me", source, False, modules, eager_only=True) == {"pkg.a", "pkg.b", "pkg.d"}


def test_imports_under_type_checking_are_not_eager_but_its_else_branch_is():
    source = "import typing\nif typing.TYPE_CHECKING:\n    import pkg.a\nelse:\n    import pkg.b\n"
    modules = {"pkg", "pkg.a", "pkg.b", "pkg.me"}
    assert imported_modules("pkg.me", source, False, modules, eager_only=True) == {"pkg.b"}
    assert imported_modules("pkg.me", source, False, modules) == {"pkg.a", "pkg.b"}


def test_modules_named_in_import_module_calls_and_dict_tables_count_as_imports():
    source = """
import importlib
_PUBLIC = {"Thing": "pkg.a"}
def load():
    return importlib.import_module("pkg.b")
LOGGER = "pkg.c"
"""
    modules = {"pkg", "pkg.a", "pkg.b", "pkg.c", "pkg.me"}
    # A plain string that happens to spell a module (a logger's name) is not an import.
    assert imported_modules("pkg.me", source, False, modules) == {"pkg.a", "pkg.b"}
    assert imported_modules("pkg.me", source, False, modules, eager_only=True) == set()


def test_relative_imports_resolve_against_the_package():
    source = "from . import sibling\nfrom .. import top\nfrom ..other import name\nfrom .sibling import thing\n"
    modules = {"pkg", "pkg.top", "pkg.other", "pkg.sub", "pkg.sub.me", "pkg.sub.sibling"}
    assert imported_modules("pkg.sub.me", source, False, modules) == {"pkg.sub.sibling", "pkg.top", "pkg.other"}
    assert imported_modules("pkg.sub", "from . import sibling\n", True, modules) == {"pkg.sub.sibling"}


def test_the_root_version_is_free_and_any_other_root_name_is_an_import_of_the_root():
    modules = {"pkg", "pkg.me"}
    assert imported_modules("pkg.me", "from pkg import __version__\n", False, modules) == set()
    assert imported_modules("pkg.me", "from pkg import Thing\n", False, modules) == {"pkg"}
    assert imported_modules("pkg.me", "import pkg\n", False, modules) == {"pkg"}


def test_find_cycles_names_an_import_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"d"}}
    assert find_cycles(graph) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_a_module_takes_the_rank_of_its_longest_entry_and_the_empty_entry_is_the_root_alone():
    ranks = [("low", "mid.base"), ("mid",), ("",)]
    assert rank_of("pkg.low", ranks, "pkg") == 0
    assert rank_of("pkg.low.deep.er", ranks, "pkg") == 0
    assert rank_of("pkg.mid.base.part", ranks, "pkg") == 0
    assert rank_of("pkg.mid.other", ranks, "pkg") == 1
    assert rank_of("pkg.lowly", ranks, "pkg") is None  # a prefix of the name, not a folder above it
    assert rank_of("pkg", ranks, "pkg") == 2
    assert rank_of("pkg.new", ranks, "pkg") is None


def documented_ranks(markdown: str) -> dict[str, int]:
    """The rank table of docs/architecture.md: rows ``| rank | `name` | owns |``; the root is its __init__.py."""
    rows = re.findall(r"^\| *(\d+) *\| *`([^`]+)` *\|", markdown, re.MULTILINE)
    return {"" if name == f"{PACKAGE}/__init__.py" else name: int(rank) for rank, name in rows}


def test_documented_ranks_are_read_from_the_table_rows_only():
    markdown = "| rank | x | y |\n|---:|---|---|\n| 0 | `io` | files |\n| 9 | `streamvggt/__init__.py` | names |\n"
    markdown += "`a` 1\n| text | `b` |\n"
    assert documented_ranks(markdown) == {"io": 0, "": 9}


def test_upward_imports_are_those_to_a_higher_rank_only():
    ranks = [("a", "b"), ("c",)]
    graph = {"pkg.a": {"pkg.b", "pkg.c"}, "pkg.b": {"pkg.a"}, "pkg.c": {"pkg.a"}}
    assert upward_imports(graph, ranks, "pkg") == ["pkg.a -> pkg.c"]


# The package.


def test_every_module_has_a_rank():
    unranked = sorted(name for name in package_modules() if rank_of(name) is None)
    assert unranked == [], "place these in RANKS consciously: " + ", ".join(unranked)


def test_every_rank_entry_names_a_module_or_a_planned_one():
    modules = package_modules()
    entries = {entry for entries in RANKS for entry in entries}
    missing = sorted(entry for entry in entries if entry and f"{PACKAGE}.{entry}" not in modules)
    assert missing == sorted(PLANNED)


def test_the_architecture_doc_shows_the_ranks_of_this_test():
    ranks = {entry: rank for rank, entries in enumerate(RANKS) for entry in entries}
    assert documented_ranks(ARCHITECTURE_DOC.read_text(encoding="utf-8")) == ranks


def test_no_import_circles_counting_lazy_imports():
    cycles = find_cycles(import_graph())
    assert not cycles, "import circles: " + "; ".join(" -> ".join(cycle) for cycle in cycles)


def test_no_import_from_a_lower_rank_to_a_higher_one():
    upward = upward_imports(import_graph())
    assert upward == [], "upward imports:\n" + "\n".join(upward)


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


def test_nothing_imports_the_command_line_but_the_entry_point():
    graph = import_graph()
    importers = sorted(
        name
        for name, targets in graph.items()
        if any(within(target, (CLI,)) for target in targets) and not within(name, (CLI, ENTRY))
    )
    assert importers == []
    assert CLI in graph[ENTRY]


def test_importing_any_module_loads_nothing_through_the_root_package():
    """Python runs the root __init__ before every submodule: importing it must load nothing more, so that the
    command line's parser and input reading start without torch."""
    assert import_graph(eager_only=True)[PACKAGE] == set()
