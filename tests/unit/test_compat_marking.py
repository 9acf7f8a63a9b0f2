"""The rule that picks the tests CI runs again on the oldest Airflow line (tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import TESTS, _reaches_airflow, is_compat


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
