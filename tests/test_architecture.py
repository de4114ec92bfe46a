"""The package's shape, read from its source with ``ast``: no import cycles, and a pure wire/.

Every import counts, including those inside functions (a lazy import still couples two modules);
only imports under ``if TYPE_CHECKING:`` are left out, since they never run.
"""
from __future__ import annotations

import ast
import os
from typing import Dict, List, Set

PACKAGE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "resque_compat")

#: What wire/ may not import, directly or through another module of ours: it is bytes and shapes.
IO_MODULES = {"redis", "gevent", "socket", "ssl", "pymysql", "requests", "urllib3", "subprocess",
              "select", "selectors", "asyncio", "dbutils"}


def _module_names() -> Dict[str, str]:
    """Dotted module name -> file path, for every module of the package."""
    found = {}
    for folder, _dirs, files in os.walk(PACKAGE_DIR):
        for name in files:
            if not name.endswith(".py"):
                continue
            rel = os.path.relpath(os.path.join(folder, name), os.path.dirname(PACKAGE_DIR))[:-3]
            dotted = rel.replace(os.sep, ".")
            if dotted.endswith(".__init__"):
                dotted = dotted[: -len(".__init__")]
            found[dotted] = os.path.join(folder, name)
    return found


def _type_checking_nodes(tree: ast.AST) -> Set[int]:
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                for inner in ast.walk(child):
                    skipped.add(id(inner))
    return skipped


def _imports(dotted: str, path: str, modules: Dict[str, str]) -> Dict[str, Set[str]]:
    """{"internal": modules of ours this one imports, "external": top-level foreign names}."""
    with open(path) as handle:
        tree = ast.parse(handle.read(), path)
    skipped = _type_checking_nodes(tree)
    is_package = path.endswith("__init__.py")
    internal: Set[str] = set()
    external: Set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "resque_compat":
                    internal.add(alias.name)
                else:
                    external.add(alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = dotted.split(".")
                base = parts if is_package else parts[:-1]
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source.split(".")[0] != "resque_compat":
                external.add(source.split(".")[0])
                continue
            for alias in node.names:
                candidate = f"{source}.{alias.name}"
                internal.add(candidate if candidate in modules else source)
    internal.discard(dotted)
    return {"internal": {m for m in internal if m in modules}, "external": external}


def import_graph() -> Dict[str, Dict[str, Set[str]]]:
    modules = _module_names()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    found: List[List[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                component.append(item)
                if item == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_package_has_no_import_cycle():
    graph = {name: deps["internal"] for name, deps in import_graph().items()}
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_planted_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_wire_imports_no_io_module_even_indirectly():
    graph = import_graph()
    for name in graph:
        if not name.startswith("resque_compat.wire"):
            continue
        seen, todo = set(), [name]
        while todo:
            current = todo.pop()
            if current in seen:
                continue
            seen.add(current)
            todo.extend(graph[current]["internal"])
        foreign = set().union(*(graph[m]["external"] for m in seen))
        assert not foreign & IO_MODULES, f"{name} reaches {sorted(foreign & IO_MODULES)} via {sorted(seen)}"


def test_top_level_holds_only_what_users_import_or_run():
    top = {name for name in _module_names() if name.count(".") == 1}
    subpackages = {"resque_compat." + p for p in
                   ("wire", "store", "runtime", "scheduler", "metrics", "pool", "cli", "listen", "common",
                    "doctor")}
    user_facing = {"resque_compat." + m for m in
                   ("__main__", "version", "errors", "settings", "log", "client", "registry", "hooks",
                    "db", "http", "redis", "activejob", "retry", "failures", "status", "triage", "retry_failures",
                    "loner", "lock", "testing")}
    assert top - subpackages - user_facing == set()
