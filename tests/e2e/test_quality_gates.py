"""Quality gates in a real run: 20% of items refused by the provider, min_success_rate=0.95."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.e2e


def _final_summary(dag_runner, logical_date):
    raw = dag_runner.xcoms("e2e_gates", logical_date)[("step.final", "return_value")]
    return json.loads(raw)


def _run(dag_runner, mode):
    # invalid_request is permanent: no retry round could lift the rate (and the step has none).
    dag_runner.emulator.update_scenario(completion_seconds=3.0, item_errors={"invalid_request": 0.2})
    return dag_runner.run("e2e_gates", check=False, env={"E2E_GATE_MODE": mode})


def test_fail_mode_fails_the_final_task_naming_the_rate_and_the_top_error_types(dag_runner):
    logical_date, run = _run(dag_runner, "fail")
    output = run.stdout + run.stderr
    assert run.returncode != 0
    assert "quality gate failed: min_success_rate: success rate" in output
    assert "top error types: invalid_request" in output
    # The wait task warned once that the batch ran past max_batch_age (1 second).
    assert output.count("past max_batch_age 0:00:01 (said once") == 1
    summary = _final_summary(dag_runner, logical_date)
    [gate] = [g for g in summary["gates"] if g["gate"] == "min_success_rate"]
    assert gate["action"] == "fail" and gate["value"] < 0.95
    assert summary["by_error_type"]["invalid_request"] == summary["failed"] > 0


def test_warn_mode_succeeds_with_the_gate_in_the_summary_and_a_warning_in_the_log(dag_runner):
    logical_date, run = _run(dag_runner, "warn")
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-3000:]
    assert "Quality gate min_success_rate tripped (warn): success rate" in output
    summary = _final_summary(dag_runner, logical_date)
    tripped = {g["gate"]: g for g in summary["gates"]}
    assert tripped["min_success_rate"]["action"] == "warn" and tripped["min_success_rate"]["value"] < 0.95
    assert tripped["max_batch_age"]["action"] == "warn" and tripped["max_batch_age"]["value"] > 1
