"""The triage DAG on more places to run the same step: switching the connection and the model only.

OpenAI's Responses API (chosen by the connection's ``endpoint`` extra, or by a model served only
there), an OpenAI-compatible host that refuses batch metadata, and Azure OpenAI: one row per
ticket, the same columns as everywhere, structured output validated. One test with a ``provider``
parameter, so that the oldest Airflow line runs one platform of it (``tests/conftest.py``).
"""

from __future__ import annotations

from typing import Any

import jsonschema
import pyarrow.parquet as pq
import pytest

from airflow_llm_batch.batch.records import ITEM_RESULT_COLUMNS
from tests.e2e.conftest import API_KEY, BEDROCK_BUCKET, bedrock_bucket
from tests.e2e.test_readable_logs import _assert_nowhere, _everything_logged
from tests.e2e.test_triage_dag import _example_module

pytestmark = pytest.mark.e2e

# platform -> (connection, model, emulator scenario, the rows' provider)
PLATFORMS: dict[str, tuple[str, str, dict[str, Any], str]] = {
    "openai_responses": ("llm_batch_openai_responses", "gpt-4.1-mini", {}, "openai"),
    "openai_responses_only_model": ("llm_batch_openai", "gpt-5-pro", {}, "openai"),
    # A create carrying metadata is answered 400 there.
    "openai_compatible": (
        "llm_batch_openai_compatible",
        "gpt-4.1-mini",
        {"openai_metadata": "refused"},
        "openai_compatible",
    ),
    # The model names a deployment (here named after its model, as most are).
    "azure_openai": ("llm_batch_azure_openai", "gpt-4.1-mini", {}, "azure_openai"),
    # An AWS connection (type ``aws``), a Claude model on Bedrock; the records go through S3.
    "bedrock": ("llm_batch_bedrock", "anthropic.claude-3-5-haiku-20241022-v1:0", {}, "bedrock"),
}


@pytest.mark.parametrize("provider", sorted(PLATFORMS))
def test_the_triage_dag_runs_on_more_platforms(dag_runner, provider):
    conn_id, model, scenario, row_provider = PLATFORMS[provider]
    emulator = dag_runner.emulator
    emulator.update_scenario(**scenario)
    s3 = bedrock_bucket(emulator) if provider == "bedrock" else None
    logical_date, run = dag_runner.run(
        "nightly_ticket_triage", env={"LLM_BATCH_TRIAGE_CONN_ID": conn_id, "LLM_BATCH_TRIAGE_MODEL": model}
    )

    example = _example_module()
    rows = dag_runner.results("nightly_ticket_triage", logical_date)
    assert sorted(r["id"] for r in rows) == sorted(t["ticket_id"] for t in example.synthetic_tickets(logical_date))
    assert all(tuple(row) == ITEM_RESULT_COLUMNS for row in rows)
    assert {r["provider"] for r in rows} == {row_provider} and {r["model"] for r in rows} == {model}
    # Claude on Bedrock answers structured output through a forced tool (docs/platforms.md).
    finish = "tool_use" if provider == "bedrock" else "stop"
    assert all(r["status"] == "succeeded" and r["finish_reason"] == finish and r["output_tokens"] for r in rows)
    for row in rows:
        jsonschema.validate(row["json"], example.TRIAGE_SCHEMA)

    first = (dag_runner.job_dir("nightly_ticket_triage", logical_date) / "requests" / "chunk-00000.jsonl").open()
    line = first.readline()
    first.close()
    creates = [
        r
        for r in emulator.requests()
        if r["method"] == "POST" and r["path"].endswith(("/batches", "/model-invocation-job"))
    ]
    assert len(creates) == 1  # one batch, created once (on the compatible host: untagged, kept by the record)
    if provider.startswith("openai_responses"):
        # (a batch accepts only lines of its own endpoint: ``url_mismatch`` otherwise)
        assert '"url":"/v1/responses"' in line and '"max_output_tokens":200' in line
        assert '"text":{"format":{"type":"json_schema"' in line
    if provider == "azure_openai":
        assert '"url":"/chat/completions"' in line
        azure = emulator.requests("azure_openai")
        assert azure and all("api-version=2025-04-01-preview" in r["query"] for r in azure)
        assert emulator.requests("openai") == []
    if provider == "bedrock":
        assert '"recordId":' in line and '"anthropic_version":"bedrock-2023-05-31"' in line
        assert {r["provider"] for r in emulator.requests()} == {"bedrock"}
        # The Results task deleted the S3 copies of the job (records in and out, manifest).
        assert s3 is not None and s3.list_objects_v2(Bucket=BEDROCK_BUCKET)["KeyCount"] == 0
        # The secret access key (the connection's password) is nowhere: logs, XCom, DB, work dir.
        _assert_nowhere(
            API_KEY, dag_runner, dag_runner.sandbox, _everything_logged(dag_runner.sandbox, run), logical_date
        )


def test_embeddings_on_bedrock(dag_runner):
    """Titan Text Embeddings V2 through the embeddings example, switching connection and model only."""
    bedrock_bucket(dag_runner.emulator)
    env = {
        "LLM_BATCH_EMBEDDINGS_CONN_ID": "llm_batch_bedrock",
        "LLM_BATCH_EMBEDDINGS_MODEL": "amazon.titan-embed-text-v2:0",
    }
    logical_date, _ = dag_runner.run("nightly_embeddings", env=env)
    table = pq.read_table(dag_runner.job_dir("nightly_embeddings", logical_date) / "results" / "results.parquet")
    rows = table.to_pylist()
    assert len({r["id"] for r in rows}) == len(rows) == 120
    assert all(r["status"] == "succeeded" and r["provider"] == "bedrock" and len(r["embedding"]) == 256 for r in rows)
