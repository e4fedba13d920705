"""The package's shape: no import cycles between modules, whatever the layers contract allows."""

from __future__ import annotations

import grimp


def _cycles(graph: grimp.ImportGraph, modules: set[str]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module) & modules:
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for module in sorted(modules):
        if module not in index:
            visit(module)
    return found


def test_no_module_imports_itself_back_through_others():
    """No import cycle among chargeback's modules; imports inside functions and TYPE_CHECKING count."""
    graph = grimp.build_graph("chargeback", "chargeback_dev")
    modules = set(graph.modules)
    assert _cycles(graph, modules) == []


def test_the_cycle_finder_finds_a_cycle():
    """The check itself works: a graph with a -> b -> c -> a reports that one cycle."""
    graph = grimp.ImportGraph()
    for importer, imported in (("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")):
        graph.add_import(importer=importer, imported=imported)
    assert _cycles(graph, set(graph.modules)) == [["a", "b", "c"]]


def test_the_close_never_reads_settings_or_wiring():
    """Jobs and edges import neither chargeback.settings nor chargeback.wiring (nor the entry points)."""
    graph = grimp.build_graph("chargeback")
    upper = {
        "chargeback.settings",
        "chargeback.wiring",
        "chargeback.cli",
        "chargeback.demo",
        "chargeback.console",
    }
    lower = {
        m for m in graph.modules if m.startswith(("chargeback.jobs", "chargeback.edges", "chargeback.core"))
    }
    offenders = sorted(
        f"{module} -> {imported}"
        for module in lower
        for imported in graph.find_modules_directly_imported_by(module)
        if imported in upper
    )
    assert offenders == []
