"""``dry_run=True``: every request rendered, checked and written, a plan with tokens and cost, and
not one request to the provider."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.e2e


def test_a_dry_run_of_the_triage_example_writes_requests_and_a_plan_and_calls_no_provider(dag_runner):
    logical_date, run = dag_runner.run("nightly_ticket_triage", conf={"dry_run": True})
    output = run.stdout + run.stderr
    job = dag_runner.job_dir("nightly_ticket_triage", logical_date)
    plan = json.loads((job / "plan.json").read_text())
    assert plan["dry_run"] is True and plan["items"] == 200 and plan["batches"] == 1
    assert plan["chunks"][0]["count"] == 200 and plan["waves"] == [[0]]
    assert plan["estimated_input_tokens"] > 200 * 50 and plan["estimated_output_tokens"] == 200 * 200
    assert plan["cost_estimate"]["batch"] > 0 and plan["cost_estimate"]["model_priced_as"] == "gpt-4.1-mini"
    lines = (job / "requests" / "chunk-00000.jsonl").read_text().splitlines()
    assert len(lines) == 200 and json.loads(lines[0])["body"]["model"] == "gpt-4.1-mini"
    assert "DRY RUN: nothing was sent to openai. 200 item(s) in 1 batch(es)" in output
    assert "estimated cost $" in output
    assert dag_runner.emulator.requests("openai") == []
    assert not (job / "state.json").exists()  # a real run of the same task starts from scratch
    assert not (job / "results").exists()  # the sensor and the results skipped
