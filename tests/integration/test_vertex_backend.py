"""The core flow through the Vertex backend: chunk files loaded into BigQuery request tables, batch
prediction jobs created with the real google.genai client, results read from the output tables."""

from __future__ import annotations

import pytest

from airflow_llm_batch.batch.backends.base import ClientConfig, RequestSpec
from airflow_llm_batch.batch.backends.vertex import VertexBackend, labels, status_error
from airflow_llm_batch.batch.job import JobState
from airflow_llm_batch.batch.records import ErrorType, JobKey, Kind
from airflow_llm_batch.batch.schema import ResponseSchema
from airflow_llm_batch.exceptions import ConfigurationError
from tests.integration.harness import KEY, collect_rows, items, submit_items, wait_for

SCHEMA = {"type": "object", "properties": {"label": {"type": "string", "enum": ["spam", "ham"]}}, "required": ["label"]}
SPEC = RequestSpec(model="gemini-2.5-flash", kind=Kind.CHAT, response_schema=ResponseSchema.coerce(SCHEMA))


@pytest.fixture
def backend(llm_batch_emulator):
    llm_batch_emulator.set_scenario(completion_seconds=0.3)
    extra = {"project": "test-project", "bigquery_endpoint": llm_batch_emulator.bigquery_url, "max_retries": 0}
    backend = VertexBackend(
        ClientConfig(api_key="token", base_url=llm_batch_emulator.vertex_base_url, extra=extra),
        VertexBackend.default_limits.with_overrides({"max_requests": 20}),
    )
    backend.bigquery.create_dataset("llm_batch")
    yield backend
    backend.close()


def run(backend, tmp_path, count):
    return submit_items(backend, tmp_path, items(count), SPEC, template="{text}", timeout_seconds=60)


def collect(backend, layout, manifest):
    return collect_rows(backend, layout, manifest, ResponseSchema.coerce(SCHEMA).validator())


wait = wait_for


def test_items_land_one_row_each_with_errors_on_the_taxonomy(backend, tmp_path, llm_batch_emulator):
    llm_batch_emulator.update_scenario(
        item_errors={"rate_limited": 0.1, "context_length": 0.1}, invalid_output_rate=0.1
    )
    layout, manifest = run(backend, tmp_path, 45)
    assert [b.count for b in manifest.batches] == [20, 20, 5]
    assert all("/batchPredictionJobs/" in b for b in manifest.batch_ids)
    statuses = wait(backend, manifest)
    assert sum(s.total for s in statuses) == 45 and all(s.done == s.total for s in statuses)
    summary, rows = collect(backend, layout, manifest)
    assert sorted(r["id"] for r in rows) == sorted(f"msg/{i}" for i in range(45))
    assert set(summary["by_error_type"]) == {"rate_limited", "context_length", "invalid_output"}
    assert all(r["provider"] == "vertex" and r["json"]["label"] in ("spam", "ham") for r in rows if r["json"])
    assert all(r["retryable"] for r in rows if r["error_type"] == "rate_limited")
    assert not any(r["retryable"] for r in rows if r["error_type"] == "context_length")
    ledger = llm_batch_emulator.ledger()
    assert {b["job_key"] for b in ledger["batches"]} == {KEY.digest()} and not ledger["duplicate_batches"]


def test_a_lost_create_response_is_found_again_by_its_labels(backend, tmp_path, llm_batch_emulator):
    layout, manifest = run(backend, tmp_path, 3)
    assert backend.find_batch(KEY, 0) == manifest.batch_ids[0]
    assert backend.find_batch(KEY, 1) is None
    state = JobState.load(layout.state_file)
    state.data.pop("handed_off", None)  # it died before handing its first wave on
    state.set_chunk(0, state="intent", batch_id=None)  # as if the task died during the create call
    _, again = run(backend, tmp_path, 3)
    assert again.batch_ids == manifest.batch_ids and len(llm_batch_emulator.ledger()["batches"]) == 1


def test_a_failed_job_is_a_batch_failure_with_its_reason(backend, tmp_path, llm_batch_emulator):
    llm_batch_emulator.update_scenario(batch_outcome="failed")
    layout, manifest = run(backend, tmp_path, 3)
    wait(backend, manifest)
    summary, rows = collect(backend, layout, manifest)
    [failed] = summary["failed_batches"]
    assert "failed validation" in failed["reason"]
    assert len(rows) == 3 and all("failed validation" in r["error_message"] and not r["retryable"] for r in rows)


def test_an_expired_job_marks_the_unfinished_items_expired(backend, tmp_path, llm_batch_emulator):
    llm_batch_emulator.update_scenario(batch_outcome="expired")
    layout, manifest = run(backend, tmp_path, 10)
    wait(backend, manifest)
    summary, _ = collect(backend, layout, manifest)
    assert summary["succeeded"] == 5 and summary["by_error_type"] == {"expired": 5}


def test_embeddings_and_a_missing_project_are_refused_before_any_call(llm_batch_emulator):
    backend = VertexBackend(ClientConfig(api_key="t", extra={}))
    with pytest.raises(ConfigurationError, match="'project' extra"):
        backend.check_spec(SPEC)
    with pytest.raises(ConfigurationError, match="Developer-API only"):
        backend.check_spec(RequestSpec(model="m", kind=Kind.EMBEDDING))


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (
            'Bad Request: {"error": {"code": 400, "message": "bad role", "status": "INVALID_ARGUMENT"}}',
            "invalid_request",
        ),
        ("Too Many Requests: 429 RESOURCE_EXHAUSTED quota", "rate_limited"),
        ("Internal error encountered.", "server_error"),
        ('{"code": 400, "message": "The input token count exceeds the maximum"}', "context_length"),
    ],
)
def test_status_cells_map_onto_the_taxonomy(status, error_type):
    from airflow_llm_batch.batch.backends.vertex import outcome_of_row

    outcome = outcome_of_row("k", None, status, Kind.CHAT)
    assert not outcome.succeeded and outcome.error_type == ErrorType(error_type)
    assert status_error(status)["message"]


def test_labels_are_valid_vertex_labels():
    found = labels(JobKey("Nightly.Triage", "classify.submit", "r"), 3)
    assert found["airflow_chunk"] == "3" and found["airflow_dag"] == "nightly-triage"
    assert all(len(v) <= 63 and v == v.lower() for v in found.values())
