#!/usr/bin/env python3
"""Draws the import graph of pgask's rooms and checks the house rules.

A room is a package under python/src/pgask (text, chunking, loaders, providers...) or a
top-level module (queue, pipelines, cli...); pgask_measure is one room. Every import counts,
including those inside functions (a lazy import is still a dependency: the old chunking <->
loaders circle was one). The script exits 1 when

- rooms import each other in a circle, or
- a room outside the command-line side imports psycopg: the rest runs inside PostgreSQL,
  where SQL goes through the `plpy` its caller hands over (no module imports plpy: PL/Python
  injects it).

    python3 scripts/import_graph.py                  # the edges, as text
    python3 scripts/import_graph.py --mermaid        # a Mermaid graph
    python3 scripts/import_graph.py --write ARCHITECTURE.md   # refresh its graph block
    python3 scripts/import_graph.py --src DIR        # another source tree (tests use it)
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pgask", "pgask_measure")
# The client side: these rooms talk to PostgreSQL through psycopg (the command line, and
# pgask.Client, pgask.AsyncClient, their writes and the LangChain / LlamaIndex integrations
# for applications).
PSYCOPG_ROOMS = frozenset({"pgask.cli", "pgask.ingest", "pgask.install", "pgask.localdb",
                           "pgask.worker", "pgask.client", "pgask.async_client",
                           "pgask.writes", "pgask.doctor", "pgask.uninstall",
                           "pgask.integrations", "pgask_measure"})
BEGIN, END = "<!-- import graph: begin -->", "<!-- import graph: end -->"


def module_name(src: Path, file: Path) -> str:
    parts = list(file.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def room_of(module: str) -> str | None:
    """pgask.chunking.packer -> pgask.chunking; pgask_measure.bench -> pgask_measure."""
    parts = module.split(".")
    if parts[0] not in PACKAGES:
        return None
    if parts[0] == "pgask_measure" or len(parts) == 1:
        return parts[0]
    return ".".join(parts[:2])


def imports_of(tree: ast.AST, module: str, is_package: bool) -> set[tuple[str, str]]:
    """(module, name) pairs a file imports: ("pgask", "pgask.pipelines") for `from pgask import
    pipelines`, ("os", "os") for `import os`."""
    found: set[tuple[str, str]] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update((alias.name, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolved against this module's package
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            # `from pgask import pipelines` imports the module pgask.pipelines; `from pgask
            # import __version__` an attribute of pgask. Both are kept; scan() drops names
            # that are not modules of the tree, falling back on the prefix.
            found.update((prefix, f"{prefix}.{alias.name}") for alias in node.names)
    return found


def scan(src: Path) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(room -> rooms it imports, room -> its modules that import psycopg)."""
    edges: dict[str, set[str]] = {}
    psycopg_users: dict[str, set[str]] = {}
    for package in PACKAGES:
        for file in sorted((src / package).rglob("*.py")) if (src / package).is_dir() else []:
            module = module_name(src, file)
            room = room_of(module)
            edges.setdefault(room, set())
            tree = ast.parse(file.read_text(encoding="utf-8"), str(file))
            for prefix, name in imports_of(tree, module, file.name == "__init__.py"):
                if prefix.split(".")[0] == "psycopg":
                    psycopg_users.setdefault(room, set()).add(module)
                imported = name if _exists(src, name) else prefix
                target = room_of(imported)
                if target is not None and target != room and _exists(src, imported):
                    edges[room].add(target)
    return edges, psycopg_users


def _exists(src: Path, name: str) -> bool:
    """Whether `name` is a module or package in the tree (not an attribute such as
    pgask.__version__, which belongs to the room `pgask` itself)."""
    path = src.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The circles of the graph, one per strongly connected component of two or more rooms
    (Tarjan's algorithm), each as a closed path."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component) + [sorted(component)[0]])

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def as_text(edges: dict[str, set[str]]) -> str:
    return "\n".join(f"{room} -> {', '.join(sorted(targets)) or '(nothing)'}"
                     for room, targets in sorted(edges.items()))


def as_mermaid(edges: dict[str, set[str]]) -> str:
    def node(room: str) -> str:
        return room.replace(".", "_")

    lines = ["```mermaid", "graph LR"]
    for room in sorted(edges):
        lines.append(f"    {node(room)}[{room}]")
    for room, targets in sorted(edges.items()):
        lines.extend(f"    {node(room)} --> {node(target)}" for target in sorted(targets))
    lines.append("```")
    return "\n".join(lines)


def write_block(path: Path, block: str) -> None:
    text = path.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{path}: no {BEGIN} ... {END} block to replace")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{BEGIN}\n{block}\n{END}{tail}", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", type=Path, default=ROOT / "python" / "src",
                        help="the source tree holding pgask/ (default: this checkout's)")
    parser.add_argument("--mermaid", action="store_true", help="print a Mermaid graph")
    parser.add_argument("--write", type=Path, metavar="FILE.md",
                        help="replace the graph between the import-graph markers in FILE.md")
    args = parser.parse_args(argv)

    edges, psycopg_users = scan(args.src)
    block = as_mermaid(edges)
    if args.write:
        write_block(args.write, block)
    print(block if args.mermaid else as_text(edges))

    problems = [f"circle: {' -> '.join(circle)}" for circle in cycles(edges)]
    problems += [f"{room} imports psycopg ({', '.join(sorted(modules))}): only the command-line "
                 f"side may ({', '.join(sorted(PSYCOPG_ROOMS))})"
                 for room, modules in sorted(psycopg_users.items())
                 if room not in PSYCOPG_ROOMS]
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
