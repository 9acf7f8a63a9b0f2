"""The example DAG under real Airflow, through the real openai client, against the emulator."""

from __future__ import annotations

import importlib.util

import jsonschema
import pytest

from tests.e2e.conftest import EXAMPLES

pytestmark = pytest.mark.e2e


def _example_module():
    spec = importlib.util.spec_from_file_location("nightly_ticket_triage", EXAMPLES / "nightly_ticket_triage.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_nightly_triage_lands_one_validated_row_per_ticket(dag_runner):
    logical_date, run = dag_runner.run("nightly_ticket_triage")
    example = _example_module()
    expected_ids = {t["ticket_id"] for t in example.synthetic_tickets(logical_date)}

    rows = dag_runner.results("nightly_ticket_triage", logical_date)
    assert len(rows) == 200
    assert {r["id"] for r in rows} == expected_ids
    succeeded = [r for r in rows if r["status"] == "succeeded"]
    assert len(succeeded) == 200
    for row in succeeded:
        jsonschema.validate(row["json"], example.TRIAGE_SCHEMA)
        assert row["provider"] == "openai" and row["input_tokens"] > 0

    # The sensor deferred: its trigger polled the batch with the async client, in the triggerer path.
    polls = [r for r in dag_runner.emulator.requests() if r["method"] == "GET" and "/batches/batch_" in r["path"]]
    assert any("AsyncOpenAI" in (r.get("user_agent") or "") for r in polls)
    assert "Deferring until 1 batch(es) end" in run.stdout + run.stderr


def test_ticket_text_with_braces_reaches_the_model_literally(dag_runner):
    logical_date, _ = dag_runner.run("nightly_ticket_triage")
    request_file = dag_runner.job_dir("nightly_ticket_triage", logical_date) / "requests" / "chunk-00000.jsonl"
    assert "The error page literally says {{ ds }} and {body}" in request_file.read_text()


def test_the_sensor_also_works_without_deferral(dag_runner):
    logical_date, run = dag_runner.run("e2e_poke_mode")
    rows = dag_runner.results("e2e_poke_mode", logical_date)
    assert sorted(r["id"] for r in rows) == sorted(f"p-{n}" for n in range(12))
    assert all(r["status"] == "succeeded" and r["text"].startswith("Summary:") for r in rows)
    assert "Deferring" not in run.stdout + run.stderr


def test_the_taskflow_decorator_runs_the_triage_example_as_a_step(dag_runner):
    logical_date, _ = dag_runner.run("e2e_taskflow_triage")
    example = _example_module()
    expected_ids = {t["ticket_id"] for t in example.synthetic_tickets(logical_date)}

    rows = dag_runner.results("e2e_taskflow_triage", logical_date, task_id="tickets_batch.submit")
    assert {r["id"] for r in rows} == expected_ids and len(rows) == 200
    for row in rows:
        assert row["status"] == "succeeded"
        jsonschema.validate(row["json"], example.TRIAGE_SCHEMA)
    # The step's final output (consolidated over retry rounds) was written, and XCom holds its URI.
    xcoms = dag_runner.xcoms("e2e_taskflow_triage", logical_date)
    assert ("tickets_batch.final", "return_value") in xcoms
