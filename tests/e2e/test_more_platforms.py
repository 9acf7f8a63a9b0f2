"""The triage DAG on more places to run the same step: switching the connection and the model only.

OpenAI's Responses API (chosen by the connection's ``endpoint`` extra, or by a model served only
there), an OpenAI-compatible host that refuses batch metadata, and Azure OpenAI: one row per
ticket, the same columns as everywhere, structured output validated.
"""

from __future__ import annotations

import jsonschema
import pytest

from airflow_llm_batch.batch.records import ITEM_RESULT_COLUMNS
from tests.e2e.test_triage_dag import _example_module

pytestmark = pytest.mark.e2e


def _assert_triage_rows(dag_runner, logical_date: str, provider: str) -> list[dict]:
    example = _example_module()
    rows = dag_runner.results("nightly_ticket_triage", logical_date)
    assert sorted(r["id"] for r in rows) == sorted(t["ticket_id"] for t in example.synthetic_tickets(logical_date))
    assert all(tuple(row) == ITEM_RESULT_COLUMNS for row in rows)
    assert {r["provider"] for r in rows} == {provider}
    assert all(r["status"] == "succeeded" and r["finish_reason"] == "stop" and r["output_tokens"] for r in rows)
    for row in rows:
        jsonschema.validate(row["json"], example.TRIAGE_SCHEMA)
    return rows


@pytest.mark.parametrize(
    ("conn_id", "model"),
    [("llm_batch_openai_responses", "gpt-4.1-mini"), ("llm_batch_openai", "gpt-5-pro")],
    ids=["endpoint-extra", "responses-only-model"],
)
def test_the_triage_dag_runs_on_openai_responses(dag_runner, conn_id, model):
    env = {"LLM_BATCH_TRIAGE_CONN_ID": conn_id, "LLM_BATCH_TRIAGE_MODEL": model}
    logical_date, _ = dag_runner.run("nightly_ticket_triage", env=env)
    rows = _assert_triage_rows(dag_runner, logical_date, "openai")
    assert {r["model"] for r in rows} == {model}
    request = (dag_runner.job_dir("nightly_ticket_triage", logical_date) / "requests" / "chunk-00000.jsonl").read_text()
    first = request.splitlines()[0]  # (a batch accepts only lines of its own endpoint: ``url_mismatch``)
    assert (
        '"url":"/v1/responses"' in first
        and '"max_output_tokens":200' in first
        and '"format":{"type":"json_schema"' in first
    )


def test_the_triage_dag_runs_on_a_compatible_host_without_tags(dag_runner):
    dag_runner.emulator.update_scenario(openai_metadata="refused")  # a create with metadata: HTTP 400
    env = {"LLM_BATCH_TRIAGE_CONN_ID": "llm_batch_openai_compatible", "LLM_BATCH_TRIAGE_MODEL": "gpt-4.1-mini"}
    logical_date, _ = dag_runner.run("nightly_ticket_triage", env=env)
    rows = _assert_triage_rows(dag_runner, logical_date, "openai_compatible")
    assert len({r["batch_id"] for r in rows}) == 1
    creates = [
        r for r in dag_runner.emulator.requests("openai") if r["method"] == "POST" and r["path"].endswith("/batches")
    ]
    assert len(creates) == 1  # submitted once, untagged, and found again through the record alone


def test_the_triage_dag_runs_on_azure_openai(dag_runner):
    env = {
        "LLM_BATCH_TRIAGE_CONN_ID": "llm_batch_azure_openai",
        "LLM_BATCH_TRIAGE_MODEL": "gpt-4.1-mini",
    }  # a deployment
    logical_date, _ = dag_runner.run("nightly_ticket_triage", env=env)
    rows = _assert_triage_rows(dag_runner, logical_date, "azure_openai")
    assert {r["model"] for r in rows} == {"gpt-4.1-mini"}
    requests = dag_runner.emulator.requests("azure_openai")
    assert requests and all("api-version=2025-04-01-preview" in r["query"] for r in requests)
    assert dag_runner.emulator.requests("openai") == []
