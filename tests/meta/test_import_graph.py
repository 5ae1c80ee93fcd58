"""The import graph of kpdoctor/ and checks/: no cycles between packages, no cycles between modules, and
the layers point one way (nothing in kpdoctor imports tests; nothing imports the checks but the registry,
which loads them by name).

Read with `ast` from the source files, so every import counts: at module level, inside functions (the
lazy imports that keep start-up fast are still dependencies) and under `if TYPE_CHECKING:` (a type is a
dependency too) - except that the module-level rule skips TYPE_CHECKING imports, which never run.

A unit of the package graph is a subpackage (`kpdoctor.gate`, `kpdoctor.dataplane`, ...), a module directly
in `kpdoctor/` (`kpdoctor.engine`, ...: the top-level modules are separate rooms, not one package), or the
checks package.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("kpdoctor", "checks")  # a missing folder (the checks moved under kpdoctor/) reads as empty

# Package-level edges that still close a cycle, each with the cycle it closes. Every entry is a known debt:
# the test fails when one is gone (delete it here) and when any other edge closes a cycle.
KNOWN_PACKAGE_CYCLE_EDGES: Mapping[tuple[str, str], str] = {}
KNOWN_MODULE_CYCLE_EDGES: Mapping[tuple[str, str], str] = {}


@dataclass(frozen=True, slots=True)
class Import:
    importer: str  # module name
    imported: str  # module name (resolved, inside SOURCES)
    type_only: bool  # under `if TYPE_CHECKING:`
    line: int


def _modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for base in SOURCES:
        for path in (ROOT / base).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _walk(node: ast.AST, type_only: bool = False) -> Iterator[tuple[ast.AST, bool]]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for stmt in child.body:
                yield stmt, True
                yield from _walk(stmt, True)
            for stmt in child.orelse:
                yield stmt, type_only
                yield from _walk(stmt, type_only)
            continue
        yield child, type_only
        yield from _walk(child, type_only)


def _imports(name: str, path: Path, known: Mapping[str, Path]) -> Iterator[Import | tuple[str, int]]:
    """Imports of one module that resolve inside SOURCES, plus (top-level name, line) of every absolute import."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node, type_only in _walk(tree):
        candidates: list[str] = []
        if isinstance(node, ast.Import):
            candidates = [a.name for a in node.names]
            for a in node.names:
                yield a.name.split(".")[0], node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
                yield module.split(".")[0], node.lineno
            candidates = [module] + [f"{module}.{a.name}" for a in node.names]
        for target in candidates:
            while target and target not in known:  # `import a.b.c` depends on the deepest module that exists
                target = target.rpartition(".")[0]
            if target and target != name:
                yield Import(name, target, type_only, node.lineno)


@dataclass(frozen=True)
class Graph:
    modules: Mapping[str, Path]
    imports: tuple[Import, ...]
    top_level: tuple[tuple[str, str, int], ...]  # (module, top-level name imported, line)


def _graph() -> Graph:
    modules = _modules()
    imports: list[Import] = []
    top: list[tuple[str, str, int]] = []
    for name, path in sorted(modules.items()):
        for item in _imports(name, path, modules):
            if isinstance(item, Import):
                imports.append(item)
            else:
                top.append((name, item[0], item[1]))
    return Graph(modules, tuple(imports), tuple(top))


GRAPH = _graph()
# The checks' package, wherever it is installed (top-level `checks/` today): the one holding KP-LEFTOVER-RULES.
CHECK_MODULE = next(m for m in sorted(GRAPH.modules) if m.rsplit(".", 1)[-1] == "leftover_rules")


def unit(module: str) -> str:
    """The package-graph unit of a module (see the module docstring)."""
    parts = module.split(".")
    if parts[0] != "kpdoctor":
        return parts[0]
    if len(parts) == 1:
        return "kpdoctor"
    path = GRAPH.modules[module]
    if len(parts) == 2 and path.name != "__init__.py":
        return module  # a module directly in kpdoctor/
    return ".".join(parts[:2])


def _edges(level: str) -> dict[tuple[str, str], list[str]]:
    """(from, to) -> where (file:line of each import that makes the edge)."""
    out: dict[tuple[str, str], list[str]] = {}
    for imp in GRAPH.imports:
        if level == "module":
            if imp.type_only:
                continue
            a, b = imp.importer, imp.imported
        else:
            a, b = unit(imp.importer), unit(imp.imported)
        if a != b:
            where = f"{GRAPH.modules[imp.importer].relative_to(ROOT)}:{imp.line}"
            found = out.setdefault((a, b), [])
            if where not in found:
                found.append(where)
    return out


def cycles(edges: Mapping[tuple[str, str], object]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan, iterative), each sorted."""
    succ: dict[str, list[str]] = {}
    for a, b in edges:
        succ.setdefault(a, []).append(b)
        succ.setdefault(b, [])
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(succ):
        if root in index:
            continue
        work = [(root, iter(sorted(succ[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(succ[w]))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        found.append(sorted(comp))
    return found


def _explain(edges: Mapping[tuple[str, str], list[str]], comps: list[list[str]]) -> str:
    lines = []
    for comp in comps:
        members = set(comp)
        lines.append("cycle: " + " <-> ".join(comp))
        for (a, b), where in sorted(edges.items()):
            if a in members and b in members:
                lines.append(f"  {a} -> {b}: {', '.join(where[:3])}")
    return "\n".join(lines)


def test_the_graph_is_read() -> None:
    """Guard against a vacuous pass: the walk sees the modules and the imports we know are there."""
    assert {"kpdoctor.engine", "kpdoctor.gate.cleanup"} <= set(GRAPH.modules)
    edges = _edges("package")
    assert ("kpdoctor.gate", "kpdoctor.dataplane") in edges  # gate/cleanup -> dataplane.chain_owners
    assert (unit(CHECK_MODULE), "kpdoctor.checks_api") in edges
    assert len(edges) > 100
    # a lazy import inside a function counts (kpdoctor.node.state.summary imports kpdoctor.node.summary)
    assert any(i.importer == "kpdoctor.node.state" and i.imported == "kpdoctor.node.summary" for i in GRAPH.imports)


def test_cycle_finder_finds_cycles() -> None:
    assert cycles({("a", "b"): 1, ("b", "c"): 1, ("c", "a"): 1, ("c", "d"): 1}) == [["a", "b", "c"]]
    assert cycles({("a", "b"): 1, ("b", "c"): 1}) == []


@pytest.mark.parametrize("level", ["package", "module"])
def test_no_import_cycles(level: str) -> None:
    edges = _edges(level)
    known = KNOWN_PACKAGE_CYCLE_EDGES if level == "package" else KNOWN_MODULE_CYCLE_EDGES
    stale = sorted(k for k in known if k not in edges)
    assert not stale, f"known cycle edges that no longer exist (delete them from the list): {stale}"
    remaining = {k: v for k, v in edges.items() if k not in known}
    comps = cycles(remaining)
    assert not comps, f"{level}-level import cycles:\n{_explain(edges, comps)}"


def test_kpdoctor_never_imports_tests() -> None:
    bad = [f"{m}:{line}" for m, top, line in GRAPH.top_level if top == "tests"]
    assert not bad, f"kpdoctor/checks import the test suite: {bad}"


def test_only_the_registry_reaches_the_checks() -> None:
    """Checks sit on top of kpdoctor: the registry loads them by name (importlib); no module imports one."""
    edges = _edges("package")
    checks = unit(CHECK_MODULE)
    bad = {k: v for k, v in edges.items() if k[1] == checks}
    assert not bad, f"imports of the checks layer from below it: {bad}"


def _absolute_kpdoctor_imports() -> Iterator[tuple[str, str, int]]:
    for name, path in sorted(GRAPH.modules.items()):
        for node, _ in _walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").startswith("kpdoctor"):
                yield name, node.module or "", node.lineno
            elif isinstance(node, ast.Import):
                yield from ((name, a.name, node.lineno) for a in node.names if a.name.startswith("kpdoctor"))


def test_every_kpdoctor_import_names_a_module_that_exists() -> None:
    """A lazy import of a module that was moved away fails only when its line runs (mypy does not follow
    every lazy path): the merge of this round's restructuring left two such imports behind."""
    known = set(GRAPH.modules) | {m.replace("checks.", "kpdoctor.checks.", 1) for m in GRAPH.modules
                                  if m == "checks" or m.startswith("checks.")} | {"kpdoctor.checks"}
    missing = [f"{name}:{line} imports {module}" for name, module, line in _absolute_kpdoctor_imports()
               if module not in known]
    assert missing == []
