"""The dashboard's rows from stored summaries, and what the plugin costs a process that loads plugins."""

from __future__ import annotations

import subprocess
import sys

from airflow_llm_batch.batch.dashboard_rows import step_rows


def _results(attempt, succeeded, failed, batch, errors=None, **extra):
    return {
        "job_key": "d/s/r/-1",
        "provider": "openai",
        "model": "gpt-4.1-mini",
        "attempt": attempt,
        "items": succeeded + failed,
        "succeeded": succeeded,
        "failed": failed,
        "by_error_type": errors or {},
        "cost": {"batch": 0.01 * attempt, "savings": 0.01},
        "batch_ids": [batch],
        "batch_age_seconds": 30.0,
        **extra,
    }


def test_a_step_shows_its_final_summary_with_every_rounds_batches():
    final = {**_results(1, 95, 5, "x", {"invalid_request": 5}), "attempts": 2, "gates": []}
    final.pop("batch_ids")
    entries = [
        ("run1", "triage.results", _results(1, 80, 20, "b1", {"rate_limited": 15, "invalid_request": 5})),
        ("run1", "triage.retry_1_results", _results(2, 15, 5, "b2", {"invalid_request": 5})),
        ("run1", "triage.final", final),
        ("run1", "load", {"rows": 3}),  # another task's return value: left out
    ]
    [row] = step_rows(entries)
    assert row["step"] == "triage" and row["success_rate"] == 0.95 and row["retries"] == 1
    assert row["batch_ids"] == ["b1", "b2"] and row["gates_set"] and row["gates"] == []
    assert row["cost_per_success"] == round(0.01 / 95, 6)


def test_a_lone_results_task_is_its_own_step_and_runs_stay_apart():
    rows = step_rows([("r1", "results", _results(1, 10, 0, "a")), ("r2", "results", _results(1, 5, 5, "b"))])
    assert [(r["run_id"], r["step"], r["success_rate"], r["gates_set"]) for r in rows] == [
        ("r1", "results", 1.0, False),
        ("r2", "results", 0.5, False),
    ]


PROBE = """
import sys
from airflow import plugins_manager
if hasattr(plugins_manager, "_get_plugins"):  # Airflow 3.2+
    plugins = plugins_manager._get_plugins()[0]
else:  # Airflow 3.1
    plugins_manager.ensure_plugins_loaded()
    plugins = plugins_manager.plugins or []
names = [p.name for p in plugins]
print("llm_batch_dashboard" in names, "airflow_llm_batch.plugins.dashboard_app" in sys.modules)
"""


def test_loading_airflow_plugins_does_not_build_the_dashboard_app(tmp_path):
    """Processes that load plugins (the DAG processor, workers) get the view's name, not its app."""
    env = {"AIRFLOW_HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, env=env)
    assert result.stdout.split() == ["True", "False"]
