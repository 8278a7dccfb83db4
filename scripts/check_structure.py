#!/usr/bin/env python3
"""Structure gate run by scripts/test: no import cycle inside tether/ (lazy imports
included, since a function-level import only hides a cycle), modules under 600 lines,
test files under 800."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIMITS = {"tether": 600, "tests": 800}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The tether modules ``path`` imports (resolving ``from pkg import module``)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        out |= {n for n in names if n in modules}
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def main() -> int:
    files = sorted((ROOT / "tether").rglob("*.py"))
    modules = {module_name(f) for f in files}
    # a package's __init__ is not an edge target when the import names a submodule
    graph = {module_name(f): imports_of(f, modules) - {module_name(f)} for f in files}
    for pkg in [m for m in modules if any(o.startswith(m + ".") for o in modules)]:
        graph[pkg] = {d for d in graph[pkg] if not d.startswith(pkg + ".")}
    problems = [f"import cycle: {' <-> '.join(c)}" for c in cycles(graph)]
    for top, limit in LIMITS.items():
        for f in sorted((ROOT / top).rglob("*.py")):
            n = len(f.read_text(encoding="utf-8").splitlines())
            if n > limit:
                problems.append(f"{f.relative_to(ROOT)}: {n} lines (limit {limit})")
    for p in problems:
        print(p, file=sys.stderr)
    print(f"structure: {len(files)} modules, {sum(len(v) for v in graph.values())} imports, "
          f"{'ok' if not problems else f'{len(problems)} problem(s)'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
