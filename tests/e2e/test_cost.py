"""Cost under real Airflow: the summary prices the emulator's token counts; max_cost stops a run first."""

from __future__ import annotations

import json
import sqlite3

import pytest
from openai import OpenAI

from airflow_llm_batch.batch.pricing import SHIPPED_PRICES
from tests.e2e.conftest import API_KEY

pytestmark = pytest.mark.e2e


def _batch_usage(emulator, batch_id):
    """The token counts the (emulated) provider reports for the batch: what it would bill."""
    with OpenAI(api_key=API_KEY, base_url=emulator.openai_base_url, max_retries=0) as client:
        usage = client.batches.retrieve(batch_id).usage
    return usage.input_tokens, usage.output_tokens


def _summary(dag_runner, dag_id, logical_date):
    return json.loads(dag_runner.xcoms(dag_id, logical_date)[("results", "return_value")])


def test_the_summary_cost_is_the_providers_token_usage_times_the_price_table(dag_runner):
    logical_date, _ = dag_runner.run("e2e_cost")
    summary = _summary(dag_runner, "e2e_cost", logical_date)
    [batch_id] = summary["batch_ids"]
    input_tokens, output_tokens = _batch_usage(dag_runner.emulator, batch_id)
    assert (summary["input_tokens"], summary["output_tokens"]) == (input_tokens, output_tokens)

    price_in, price_out, _ = SHIPPED_PRICES["gpt-4.1-mini"]
    expected = (input_tokens * price_in + output_tokens * price_out) / 1e6
    cost = summary["cost"]
    assert cost["batch"] == pytest.approx(expected, abs=1e-6)
    assert cost["realtime"] == pytest.approx(2 * expected, abs=1e-6)
    assert cost["savings"] == pytest.approx(expected, abs=1e-6)
    assert cost["currency"] == "USD" and "gpt-4.1-mini" in cost["price_source"]

    # The estimate made before submitting is an upper bound of what the run cost.
    manifest = json.loads(dag_runner.xcoms("e2e_cost", logical_date)[("submit", "return_value")])
    assert manifest["extra"]["cost_estimate"]["batch"] >= cost["batch"]


def test_the_price_table_setting_overrides_the_shipped_prices(dag_runner):
    prices = {"gpt-4.1-mini": {"input": 10.0, "output": 20.0}}
    logical_date, _ = dag_runner.run("e2e_cost", env={"AIRFLOW__LLM_BATCH__PRICE_TABLE": json.dumps(prices)})
    summary = _summary(dag_runner, "e2e_cost", logical_date)
    input_tokens, output_tokens = _batch_usage(dag_runner.emulator, summary["batch_ids"][0])
    assert summary["cost"]["batch"] == pytest.approx((input_tokens * 10 + output_tokens * 20) / 1e6, abs=1e-6)
    assert summary["cost"]["price_source"] == "[llm_batch] price_table: gpt-4.1-mini"


def test_a_run_over_max_cost_fails_before_the_provider_sees_any_request(dag_runner):
    _, run = dag_runner.run("e2e_over_budget", check=False)
    output = run.stdout + run.stderr
    assert run.returncode != 0
    assert "BudgetExceededError" in output
    assert "the estimated cost is above max_cost=$0.0001, so nothing was submitted" in output
    for part in ("for 30 item(s)", "input tokens (request files' bytes / 4)", "max_tokens=60", "gpt-4.1-mini"):
        assert part in output, part
    assert dag_runner.emulator.requests() == []


def test_the_results_task_updates_its_asset_with_where_the_results_are(dag_runner):
    logical_date, _ = dag_runner.run("e2e_cost")
    summary = _summary(dag_runner, "e2e_cost", logical_date)
    with sqlite3.connect(dag_runner.sandbox.home / "airflow.db") as db:
        rows = db.execute(
            "SELECT e.extra FROM asset_event e JOIN asset a ON a.id = e.asset_id "
            "WHERE a.uri = ? AND e.source_run_id = ?",
            ("llm-batch://e2e_cost/results", dag_runner.run_id("e2e_cost", logical_date)),
        ).fetchall()
    [(extra,)] = rows
    extra = json.loads(extra)
    assert extra["output_uri"] == summary["output_uri"]
    assert (extra["items"], extra["succeeded"], extra["failed"]) == (30, summary["succeeded"], summary["failed"])
    assert extra["cost_batch"] == summary["cost"]["batch"]
