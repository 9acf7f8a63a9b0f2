"""Check the package's layer rules and that its modules import no circle (stdlib ``ast`` only).

    python scripts/check_imports.py        # prints the rules checked; exit 1 with each breach

Every import counts: at module level, under ``TYPE_CHECKING`` and inside functions (a lazy import
is still an arrow between layers). The rules (``docs/structure.md``):

- ``batch/`` is the provider-neutral core: it imports neither ``io/`` nor ``operators/`` (nor the
  other Airflow-facing modules) nor Airflow itself;
- a backend (``batch/backends/``) never imports the core that calls it: ``batch/job.py``,
  ``batch/prepare.py``, ``batch/submit.py``, ``batch/finish.py``;
- no module imports itself through others (an import circle).
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

PACKAGE = "airflow_llm_batch"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE

AIRFLOW_FACING = ("operators", "sensors", "triggers", "hooks", "links", "task_group", "io", "plugins", "metrics")
FORBIDDEN: tuple[tuple[str, tuple[str, ...], str], ...] = (
    (
        f"{PACKAGE}.batch",
        (*(f"{PACKAGE}.{name}" for name in AIRFLOW_FACING), "airflow"),
        "batch/ imports no io/, operators/ or other Airflow-facing module, and no Airflow",
    ),
    (
        f"{PACKAGE}.batch.backends",
        tuple(f"{PACKAGE}.batch.{name}" for name in ("job", "prepare", "submit", "finish")),
        "batch/backends/ imports none of the core above it (job, prepare, submit, finish)",
    ),
)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(ROOT.rglob("*.py"))}


def imported(name: str, path: Path, known: dict[str, Path]) -> Iterator[str]:
    """The modules ``name`` imports (``from pkg import module`` counts as ``pkg.module``)."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolved against this module's package
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            for alias in node.names:
                candidate = f"{source}.{alias.name}"
                yield candidate if candidate in known else source


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: set(imported(name, path, known)) - {name} for name, path in known.items()}


def breaches(edges: dict[str, set[str]]) -> list[str]:
    found = []
    for name, targets in sorted(edges.items()):
        for layer, banned, rule in FORBIDDEN:
            if not within(name, layer):
                continue
            for target in sorted(targets):
                if any(within(target, b) for b in banned):
                    found.append(f"{name} imports {target}: {rule}")
    return found


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each sorted."""
    inner = {name: {t for t in targets if t in edges} for name, targets in edges.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(inner[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(inner)))
    for node in sorted(inner):
        if node not in index:
            visit(node)
    return groups


def problems() -> list[str]:
    edges = graph()
    found = breaches(edges)
    found += [f"import circle: {' <-> '.join(group)}" for group in circles(edges)]
    return found


def main() -> int:
    edges = graph()
    print(f"{len(edges)} modules of {PACKAGE}, {sum(len(t) for t in edges.values())} imports (lazy ones included)")
    for _, _, rule in FORBIDDEN:
        print(f"rule: {rule}")
    print("rule: no import circle")
    found = problems()
    for problem in found:
        print(f"BREACH {problem}")
    print("all rules hold" if not found else f"{len(found)} breach(es)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
