"""One DAG, three providers: switching the connection and the model is all it takes."""

from __future__ import annotations

import math

import jsonschema
import pyarrow.parquet as pq
import pytest

from airflow_llm_batch.batch.records import ITEM_RESULT_COLUMNS
from tests.e2e.conftest import SMALL_BATCH
from tests.e2e.test_triage_dag import _example_module

pytestmark = pytest.mark.e2e

MODELS = {"openai": "gpt-4.1-mini", "anthropic": "claude-haiku-4-5", "gemini": "gemini-2.5-flash"}


@pytest.mark.parametrize("provider", sorted(MODELS))
def test_the_triage_dag_lands_one_row_per_ticket_on_every_provider(dag_runner, provider):
    """Also: output that breaks the schema becomes invalid_output rows, and 200 items split into
    batches of at most SMALL_BATCH (the limit lowered through the connection) land complete."""
    dag_runner.emulator.update_scenario(invalid_output_rate=0.1, completion_seconds=1.5)
    env = {"LLM_BATCH_TRIAGE_CONN_ID": f"small_batches_{provider}", "LLM_BATCH_TRIAGE_MODEL": MODELS[provider]}
    logical_date, _ = dag_runner.run("nightly_ticket_triage", env=env)

    example = _example_module()
    rows = dag_runner.results("nightly_ticket_triage", logical_date)
    assert sorted(r["id"] for r in rows) == sorted(t["ticket_id"] for t in example.synthetic_tickets(logical_date))
    assert all(tuple(row) == ITEM_RESULT_COLUMNS for row in rows)
    assert {r["provider"] for r in rows} == {provider}
    assert len({r["batch_id"] for r in rows}) == math.ceil(200 / SMALL_BATCH)

    invalid = [r for r in rows if r["error_type"] == "invalid_output"]
    assert invalid and all(r["retryable"] and r["text"] for r in invalid)
    for row in rows:
        if row["status"] == "succeeded":
            jsonschema.validate(row["json"], example.TRIAGE_SCHEMA)
    assert len(invalid) + sum(r["status"] == "succeeded" for r in rows) == 200


def test_anthropic_summaries_with_prompt_caching(dag_runner):
    logical_date, _ = dag_runner.run("nightly_summaries")
    rows = dag_runner.results("nightly_summaries", logical_date)
    assert len(rows) == 60 and all(r["status"] == "succeeded" and r["text"] for r in rows)
    assert all(tuple(row) == ITEM_RESULT_COLUMNS for row in rows)
    request_file = dag_runner.job_dir("nightly_summaries", logical_date) / "requests" / "chunk-00000.jsonl"
    assert '"cache_control":{"type":"ephemeral"}' in request_file.read_text()


@pytest.mark.parametrize("provider", ["gemini", "openai"])
def test_free_text_summaries_on_the_other_providers(dag_runner, provider):
    env = {"LLM_BATCH_SUMMARIES_CONN_ID": f"llm_batch_{provider}", "LLM_BATCH_SUMMARIES_MODEL": MODELS[provider]}
    logical_date, _ = dag_runner.run("nightly_summaries", env=env)
    rows = dag_runner.results("nightly_summaries", logical_date)
    assert len({r["id"] for r in rows}) == 60
    assert all(r["status"] == "succeeded" and r["text"] and r["provider"] == provider for r in rows)
    assert all(tuple(row) == ITEM_RESULT_COLUMNS for row in rows)


@pytest.mark.parametrize(
    ("conn_id", "model"), [("llm_batch_gemini", "gemini-embedding-001"), ("llm_batch_openai", "text-embedding-3-small")]
)
def test_embeddings_land_in_parquet_on_gemini_and_openai(dag_runner, conn_id, model):
    env = {"LLM_BATCH_EMBEDDINGS_CONN_ID": conn_id, "LLM_BATCH_EMBEDDINGS_MODEL": model}
    logical_date, _ = dag_runner.run("nightly_embeddings", env=env)
    path = dag_runner.job_dir("nightly_embeddings", logical_date) / "results" / "results.parquet"
    table = pq.read_table(path)
    assert table.num_rows == 120 and len(set(table.column("id").to_pylist())) == 120
    assert all(len(vector) == 256 for vector in table.column("embedding").to_pylist())
