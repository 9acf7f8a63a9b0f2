"""The layer rules and the absence of import circles (``scripts/check_imports.py``) hold for the package."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "check_imports.py"


def _checker():
    spec = importlib.util.spec_from_file_location("check_imports", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_package_keeps_its_layers_and_has_no_import_circle():
    assert _checker().problems() == []


def test_the_checker_sees_a_core_module_reaching_up_and_a_circle():
    checker = _checker()
    edges = {
        "airflow_llm_batch.batch.results": {"airflow_llm_batch.io.sinks", "airflow.sdk"},
        "airflow_llm_batch.batch.backends.vertex": {"airflow_llm_batch.batch.job"},
        "airflow_llm_batch.batch.job": {"airflow_llm_batch.batch.state"},
        "airflow_llm_batch.batch.state": {"airflow_llm_batch.batch.job"},
        "airflow_llm_batch.operators.submit": {"airflow_llm_batch.io.sinks", "airflow.sdk"},
    }
    assert checker.breaches(edges) == [
        "airflow_llm_batch.batch.backends.vertex imports airflow_llm_batch.batch.job: "
        "batch/backends/ imports none of the core above it (job, prepare, submit, finish)",
        "airflow_llm_batch.batch.results imports airflow.sdk: "
        "batch/ imports no io/, operators/ or other Airflow-facing module, and no Airflow",
        "airflow_llm_batch.batch.results imports airflow_llm_batch.io.sinks: "
        "batch/ imports no io/, operators/ or other Airflow-facing module, and no Airflow",
    ]
    assert checker.circles(edges) == [["airflow_llm_batch.batch.job", "airflow_llm_batch.batch.state"]]


def test_lazy_and_type_checking_imports_count(tmp_path, monkeypatch):
    checker = _checker()
    package = tmp_path / "airflow_llm_batch"
    (package / "batch").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "batch" / "__init__.py").write_text("")
    (package / "batch" / "a.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from airflow_llm_batch.batch import b\n"
    )
    (package / "batch" / "b.py").write_text("def f():\n    from . import a\n")
    monkeypatch.setattr(checker, "ROOT", package)
    assert checker.problems() == ["import circle: airflow_llm_batch.batch.a <-> airflow_llm_batch.batch.b"]
