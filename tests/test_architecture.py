"""The rooms of docs/architecture.md hold: module sizes, no import cycles, imports that point down."""

import ast
import importlib.util
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "tpc"
MAX_LINES = 600


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(name: str) -> set[str]:
    """The tpc modules ``name`` imports anywhere (functions included), except under TYPE_CHECKING."""
    tree = ast.parse(MODULES[name].read_text())
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
                base = importlib.util.resolve_name("." * node.level + base, package)
            found.update(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
                         for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {module for module in found if module in MODULES and module != name}


GRAPH = {name: _imports(name) for name in MODULES}


def _reachable(start: str, graph: dict[str, set[str]]) -> set[str]:
    seen, stack = set(), [start]
    while stack:
        for module in graph[stack.pop()]:
            if module not in seen:
                seen.add(module)
                stack.append(module)
    return seen


def test_no_module_is_longer_than_the_limit():
    lengths = {name: len(path.read_text().splitlines()) for name, path in MODULES.items()}
    assert {name: n for name, n in lengths.items() if n > MAX_LINES} == {}


def test_no_import_cycle_between_modules():
    """A package's ``__init__`` re-exporting its own submodules is not a cycle; anything else is."""
    graph = {name: {module for module in imports if not (MODULES[name].name == "__init__.py"
                                                          and module.startswith(name + "."))}
             for name, imports in GRAPH.items()}
    cycles = sorted(name for name in graph if name in _reachable(name, graph))
    assert cycles == []


def test_only_the_harness_imports_the_harness():
    assert sorted(name for name, imports in GRAPH.items() if "tpc.testing" in imports) == []


@pytest.mark.parametrize("room,forbidden", [
    ("tpc.so3", ("tpc.lower", "tpc.schedule", "tpc.build", "tpc.tune", "tpc.runtime", "tpc.ops")),
    ("tpc.ops", ("tpc.lower", "tpc.schedule", "tpc.build", "tpc.tune", "tpc.runtime", "tpc.graph")),
    ("tpc.runtime", ("tpc.lower", "tpc.schedule", "tpc.build", "tpc.tune")),
    ("tpc.verify", ("tpc.lower", "tpc.schedule", "tpc.build", "tpc.tune", "tpc.testing")),
    ("tpc.graph.runtime", ("tpc.lower", "tpc.schedule", "tpc.build", "tpc.tune", "tpc.graph.compiler")),
])
def test_rooms_import_only_what_is_below_them(room, forbidden):
    modules = [name for name in MODULES if name == room or name.startswith(room + ".")]
    reached = set().union(*(_reachable(name, GRAPH) | {name} for name in modules))
    assert sorted(name for name in reached if name.startswith(forbidden)) == []
