"""Marks every test ``compat`` when its outcome can change with the installed Airflow or SDK versions.

CI runs the whole suite on the newest Airflow, then only the ``compat`` tests on the oldest supported
Airflow with the lowest versions of our direct dependencies (``make test-oldest``): the pure core and
the emulator do not change with Airflow's version, so running them twice would only cost time.

A test is ``compat`` when
- it lives in ``tests/e2e``, ``tests/ui`` or ``tests/integration`` (real Airflow runs, or our backends
  driving the real vendor SDK clients, whose floors the oldest run installs), or
- its module or a ``conftest.py`` above it imports ``airflow``, directly or through the modules of this
  package and of ``tests`` it imports (imports inside functions count: they run when the test does;
  imports under ``if TYPE_CHECKING:`` do not; the imports of a script the test hands to
  ``python -c`` as a string constant do), or
- it loads the example DAGs (names ``dags_examples``).

One exception keeps the oldest line's run short: an end-to-end test run once per provider (a
``provider`` parameter) is ``compat`` for one provider only, the same one every time, drawn from the
test's name and its other parameters so the providers take turns across tests. What such a run
checks on the oldest line is Airflow's side (deferral, triggerer, XCom, retries), which is the same
for every provider; each provider's SDK is exercised on that line by the integration tier.

The rule reads the source, so a new test lands on the right side without anyone marking it.
"""

from __future__ import annotations

import ast
import zlib
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
THIS_FILE = Path(__file__).resolve()
# Our own top-level packages, whose modules the rule follows; any other import is a leaf.
OWN_PACKAGES = ("airflow_llm_batch", "tests")
COMPAT_TIERS = ("e2e", "ui", "integration")
EXAMPLE_DAGS = "dags_examples"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "compat: depends on the installed Airflow or SDK versions; runs again on the oldest line "
        "(set automatically by tests/conftest.py, see tests/README.md)",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    left_out = oldest_line_leaves_out(items)
    for item in items:
        if is_compat(Path(item.path)) and item.nodeid not in left_out:
            item.add_marker(pytest.mark.compat)


def oldest_line_leaves_out(items: list[pytest.Item]) -> set[str]:
    """The node ids of the end-to-end cases of per-provider tests that the oldest line leaves out.

    Every e2e case with a ``provider`` parameter belongs to a group (the test function and its other
    parameters); the group keeps one provider, drawn from the group's name, so the choice is stable
    and spreads over the providers.
    """
    groups: dict[str, dict[str, str]] = {}
    for item in items:
        callspec = getattr(item, "callspec", None)
        relative = Path(item.path).resolve().relative_to(TESTS)
        if callspec is None or relative.parts[0] != "e2e" or "provider" not in callspec.params:
            continue
        others = sorted((name, repr(value)) for name, value in callspec.params.items() if name != "provider")
        group = f"{relative}::{getattr(item, 'originalname', item.name)}{others}"
        groups.setdefault(group, {})[str(callspec.params["provider"])] = item.nodeid
    left_out: set[str] = set()
    for group, by_provider in groups.items():
        providers = sorted(by_provider)
        kept = providers[zlib.crc32(group.encode()) % len(providers)]
        left_out.update(nodeid for provider, nodeid in by_provider.items() if provider != kept)
    return left_out


@cache
def is_compat(test_file: Path) -> bool:
    relative = test_file.resolve().relative_to(TESTS)
    if relative.parts[0] in COMPAT_TIERS:
        return True
    sources = [test_file, *(d / "conftest.py" for d in test_file.parents if d.is_relative_to(TESTS))]
    # This file names ``dags_examples`` itself and imports nothing that matters.
    sources = [source.resolve() for source in sources if source.is_file() and source.resolve() != THIS_FILE]
    # The example DAGs import Airflow; tests load them by path, not by import.
    if any(EXAMPLE_DAGS in source.read_text() for source in sources):
        return True
    return any(_reaches_airflow(source) for source in sources)


def _reaches_airflow(source: Path, seen: set[Path] | None = None) -> bool:
    """Whether ``source`` imports ``airflow``, itself or through our own modules (depth first)."""
    seen = set() if seen is None else seen
    if source in seen:
        return False
    seen.add(source)
    for module in _imported_modules(source):
        if module == "airflow" or module.startswith("airflow."):
            return True
        own = _own_module_file(module)
        if own is not None and _reaches_airflow(own, seen):
            return True
    return False


@cache
def _imported_modules(source: Path) -> tuple[str, ...]:
    """Absolute names of every module ``source`` imports, outside ``if TYPE_CHECKING:`` blocks."""
    tree = ast.parse(source.read_bytes(), filename=str(source))
    package = _module_name(source).rpartition(".")[0] if source.name != "__init__.py" else _module_name(source)
    names: list[str] = []
    for node in [*_runtime_nodes(tree), *_scripts_in_strings(tree)]:
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base]) if base else ".".join(anchor)
            names.append(base)
            # ``from pkg import sub`` may name a submodule.
            names.extend(f"{base}.{alias.name}" for alias in node.names)
    return tuple(names)


def _scripts_in_strings(tree: ast.AST) -> list[ast.AST]:
    """The statements of string constants that parse as Python with imports (``python -c`` probes)."""
    nodes: list[ast.AST] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
        elif isinstance(node, ast.JoinedStr):  # f-string: its holes become a harmless name
            text = "".join(part.value if isinstance(part, ast.Constant) else "_" for part in node.values)
        else:
            continue
        if "import" not in text:
            continue
        try:
            nodes.extend(ast.walk(ast.parse(text)))
        except SyntaxError:
            continue
    return nodes


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    nodes: list[ast.AST] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        nodes.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return nodes


def _module_name(source: Path) -> str:
    if not source.is_relative_to(ROOT):
        return source.stem
    parts = source.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts)


def _own_module_file(module: str) -> Path | None:
    if not module.startswith(OWN_PACKAGES):
        return None
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    # ``from airflow_llm_batch import LLMBatchSubmitOperator``: a name the package exports lazily
    # (module ``__getattr__``), declared for type checkers under ``if TYPE_CHECKING:``.
    package, _, name = module.rpartition(".")
    init = ROOT.joinpath(*package.split("."), "__init__.py")
    home = _lazy_exports(init).get(name) if init.is_file() else None
    return _own_module_file(home) if home else None


@cache
def _lazy_exports(init: Path) -> dict[str, str]:
    exports: dict[str, str] = {}
    for node in ast.walk(ast.parse(init.read_bytes())):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for statement in node.body:
                if isinstance(statement, ast.ImportFrom) and statement.module and not statement.level:
                    exports.update((alias.asname or alias.name, statement.module) for alias in statement.names)
    return exports
