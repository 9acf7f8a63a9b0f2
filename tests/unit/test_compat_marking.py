"""The rule that picks the tests CI runs again on the oldest Airflow line (tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.conftest import TESTS, _reaches_airflow, is_compat, oldest_line_leaves_out


@pytest.mark.parametrize(
    ("test_file", "compat"),
    [
        # Whole tiers: real Airflow runs, or our backends on the real SDK clients.
        ("e2e/test_triage_dag.py", True),
        ("integration/test_openai_backend.py", True),
        # Imports airflow itself.
        ("unit/test_links.py", True),
        # Imports airflow only in the script it runs with `python -c`, through our lazy exports.
        ("unit/test_parse_cost.py", True),
        # Loads the example DAGs by path.
        ("unit/test_bigquery_examples_parse_cost.py", True),
        # The pure core and the emulator.
        ("unit/test_templates.py", False),
        ("unit/test_pricing.py", False),
        ("emulator/test_emulator_openai_batches.py", False),
    ],
)
def test_tests_that_depend_on_airflow_are_marked_compat_and_the_pure_core_is_not(test_file: str, compat: bool):
    assert is_compat(TESTS / test_file) is compat


@pytest.mark.parametrize(
    ("source", "compat"),
    [
        ("def test_x():\n    from airflow_llm_batch.operators.submit import LLMBatchSubmitOperator\n", True),
        ("from airflow_llm_batch import llm_batch_step\n", True),
        ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import airflow\n", False),
        ("from airflow_llm_batch.batch.templates import PromptTemplate\n", False),
    ],
)
def test_a_new_test_module_is_judged_by_what_it_imports(tmp_path: Path, source: str, compat: bool):
    new_test = tmp_path / "test_new.py"
    new_test.write_text(source)
    assert _reaches_airflow(new_test) is compat


def _case(test: str, provider: str, **others: object) -> SimpleNamespace:
    params = {"provider": provider, **others}
    ident = "-".join(str(v) for v in params.values())
    return SimpleNamespace(
        path=TESTS / "e2e" / "test_x.py",
        callspec=SimpleNamespace(params=params),
        originalname=test,
        name=f"{test}[{ident}]",
        nodeid=f"tests/e2e/test_x.py::{test}[{ident}]",
    )


def test_the_oldest_line_runs_each_per_provider_e2e_case_for_one_provider_of_those_it_has():
    rows = [("expires", ("openai", "anthropic", "gemini")), ("lost_create", ("openai", "gemini"))]
    items = [_case("test_matrix", p, scenario=row) for row, providers in rows for p in providers]
    single = [_case("test_single", p) for p in ("openai", "gemini")]
    left_out = oldest_line_leaves_out([*items, *single])  # type: ignore[list-item]
    kept = [i for i in [*items, *single] if i.nodeid not in left_out]
    # One case per test and scenario, always one the group really has; the choice does not move.
    assert sorted((i.originalname, i.callspec.params.get("scenario")) for i in kept) == [
        ("test_matrix", "expires"),
        ("test_matrix", "lost_create"),
        ("test_single", None),
    ]
    assert left_out == oldest_line_leaves_out([*reversed(items), *single])  # type: ignore[list-item]


def test_per_provider_cases_outside_e2e_all_run_on_the_oldest_line():
    case = _case("test_backend", "openai")
    case.path = TESTS / "integration" / "test_x.py"
    other = _case("test_backend", "gemini")
    other.path = case.path
    assert oldest_line_leaves_out([case, other]) == set()  # type: ignore[list-item]
