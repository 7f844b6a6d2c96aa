"""No import cycle anywhere in the package, at module level.

import-linter's ``acyclic_siblings`` contract (``make lint``) checks cycles between the
children of each package; this test also catches the ones it does not see, such as a
package's ``__init__`` and one of its own modules importing each other (``from notifyq.engine import leases`` runs
``notifyq/engine/__init__.py`` too). It builds the
graph with grimp (import-linter's own graph builder) and prints every cycle it finds.
"""

from __future__ import annotations

import ast
from pathlib import Path

import grimp

import notifyq


def cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """The strongly connected components of more than one module (and self-imports),
    each as a list of modules in a closed import chain, sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(root: str) -> None:
        # Tarjan's algorithm, iterative (no recursion limit on a large graph).
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            module, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    imported = sorted(graph.find_modules_directly_imported_by(child))
                    work.append((child, iter(imported)))
                elif child in on_stack:
                    low[module] = min(low[module], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[module])
            if low[module] == index[module]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == module:
                        break
                self_import = graph.direct_import_exists(importer=module, imported=module)
                if len(component) > 1 or self_import:
                    found.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return sorted(found)


def describe(graph: grimp.ImportGraph, component: list[str]) -> str:
    """One closed chain through the component, for the failure message."""
    first, second = component[0], component[-1] if len(component) > 1 else component[0]
    there = graph.find_shortest_chain(importer=first, imported=second) or (first, second)
    back = graph.find_shortest_chain(importer=second, imported=first) or (second, first)
    return " -> ".join([*there, *back[1:]])


def with_from_imports(graph: grimp.ImportGraph) -> grimp.ImportGraph:
    """``from p import m`` also runs ``p/__init__.py``: count it as importing ``p`` too, so
    that a package whose ``__init__`` imports its own modules closes a cycle with each module
    that imports a sibling through the package. The root package is left out: ``from
    notifyq import db`` is how every module names another, and the root's
    ``__init__`` is the public API, which re-exports from the modules below it."""
    root = Path(notifyq.__file__).parent
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        importer = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.ImportFrom)
                and node.level == 0
                and node.module in graph.modules
                and node.module not in (importer, "notifyq")  # see below
            ):
                graph.add_import(importer=importer, imported=node.module)
    return graph


def test_no_import_cycle_in_the_package() -> None:
    graph = with_from_imports(grimp.build_graph("notifyq"))
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n".join(
        f"  {', '.join(c)}\n    e.g. {describe(graph, c)}" for c in found
    )


def test_the_cycle_finder_sees_a_cycle() -> None:
    graph = grimp.ImportGraph()
    for module in ("p", "p.a", "p.b", "p.c", "p.d"):
        graph.add_module(module)
    graph.add_import(importer="p.a", imported="p.b")
    graph.add_import(importer="p.b", imported="p.c")
    graph.add_import(importer="p.c", imported="p.a")
    graph.add_import(importer="p.c", imported="p.d")
    graph.add_import(importer="p", imported="p.a")
    assert cycles(graph) == [["p.a", "p.b", "p.c"]]
    graph.add_import(importer="p.d", imported="p")
    assert cycles(graph) == [["p", "p.a", "p.b", "p.c", "p.d"]]
