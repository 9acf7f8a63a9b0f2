"""The core flow through the OpenAI backend and the real openai client, against the emulator.

prepare -> submit (state file) -> poll (async client) -> collect results, without Airflow.
"""

from __future__ import annotations

import json

import pytest

from airflow_llm_batch.batch.backends.base import ClientConfig, RequestSpec
from airflow_llm_batch.batch.backends.openai import OpenAIBackend
from airflow_llm_batch.batch.job import JobState
from airflow_llm_batch.batch.records import Kind
from airflow_llm_batch.batch.results import collect_results
from airflow_llm_batch.batch.schema import ResponseSchema
from airflow_llm_batch.exceptions import StateConflictError
from airflow_llm_batch.io.sinks import open_sink
from tests.integration.harness import KEY, collect_rows, submit_items, wait_for

SCHEMA = {
    "type": "object",
    "properties": {"label": {"type": "string", "enum": ["spam", "ham"]}, "why": {"type": "string"}},
    "required": ["label", "why"],
}
SPEC = RequestSpec(model="gpt-test", kind=Kind.CHAT, response_schema=ResponseSchema.coerce(SCHEMA))


@pytest.fixture
def backend(llm_batch_emulator):
    llm_batch_emulator.set_scenario(completion_seconds=0.3)
    limits = OpenAIBackend.default_limits.with_overrides({"max_requests": 20})
    backend = OpenAIBackend(
        ClientConfig(api_key="k", base_url=llm_batch_emulator.openai_base_url, extra={"max_retries": 0}), limits
    )
    yield backend
    backend.close()


def _items(n: int) -> list[dict[str, str]]:
    return [{"id": f"msg/{i}", "text": f"message {i}"} for i in range(n)]


def _run(backend, tmp_path, items, spec=None, key=KEY, **submit_kwargs):
    return submit_items(backend, tmp_path, items, spec or SPEC, key, **submit_kwargs)


def _collect(backend, layout, manifest):
    return collect_rows(backend, layout, manifest, ResponseSchema.coerce(SCHEMA).validator())


_wait = wait_for


def test_items_above_the_batch_limit_land_complete_across_batches(backend, tmp_path, llm_batch_emulator):
    layout, manifest = _run(backend, tmp_path, _items(45))
    assert [b.count for b in manifest.batches] == [20, 20, 5]
    _wait(backend, manifest)
    summary, rows = _collect(backend, layout, manifest)
    assert sorted(r["id"] for r in rows) == sorted(f"msg/{i}" for i in range(45))
    assert summary["succeeded"] == 45 and all(r["json"]["label"] in ("spam", "ham") for r in rows)
    assert summary["input_tokens"] > 0
    assert len(llm_batch_emulator.ledger()["batches"]) == 3


def test_item_errors_invalid_output_and_missing_lines_each_end_in_one_row(backend, tmp_path, llm_batch_emulator):
    llm_batch_emulator.update_scenario(
        item_errors={"server_error": 0.1, "context_length": 0.1}, invalid_output_rate=0.1, malformed_line_rate=0.05
    )
    layout, manifest = _run(backend, tmp_path, _items(200))
    _wait(backend, manifest)
    summary, rows = _collect(backend, layout, manifest)
    assert len(rows) == 200 and len({r["id"] for r in rows}) == 200
    types = summary["by_error_type"]
    assert {"server_error", "context_length", "invalid_output", "missing"} <= set(types)
    invalid = [r for r in rows if r["error_type"] == "invalid_output"]
    assert all(r["retryable"] and r["text"] is not None for r in invalid)
    assert all(not r["retryable"] for r in rows if r["error_type"] == "context_length")
    failed_ids = [json.loads(line)["id"] for line in (layout.results_dir / "failed_items.jsonl").read_text().split()]
    assert sorted(failed_ids) == sorted(r["id"] for r in rows if r["status"] == "failed")


def test_a_second_submit_of_the_same_job_reattaches_instead_of_paying_again(backend, tmp_path, llm_batch_emulator):
    _, first = _run(backend, tmp_path, _items(30))
    _, second = _run(backend, tmp_path, _items(30))
    assert second.batch_ids == first.batch_ids
    assert second.deadline == first.deadline  # fixed at the first submit
    ledger = llm_batch_emulator.ledger()
    assert len(ledger["batches"]) == 2 and ledger["duplicate_batches"] == []


def test_a_create_whose_response_was_lost_is_found_by_its_metadata_tag(backend, tmp_path, llm_batch_emulator):
    layout, first = _run(backend, tmp_path, _items(5))
    state = JobState.load(layout.state_file)
    state.data.pop("handed_off", None)  # it died before handing its first wave on
    state.set_chunk(0, state="intent", batch_id=None)  # as if the task died during the create call
    _, second = _run(backend, tmp_path, _items(5))
    assert second.batch_ids == first.batch_ids
    assert len(llm_batch_emulator.ledger()["batches"]) == 1


def test_changed_input_under_the_same_job_key_is_refused_by_default(backend, tmp_path, llm_batch_emulator):
    _run(backend, tmp_path, _items(5))
    with pytest.raises(StateConflictError, match="on_input_change='resubmit'"):
        _run(backend, tmp_path, _items(6))
    assert len(llm_batch_emulator.ledger()["batches"]) == 1
    _, resubmitted = _run(backend, tmp_path, _items(6), on_input_change="resubmit")
    assert len(llm_batch_emulator.ledger()["batches"]) == 2 and resubmitted.item_count == 6


def test_embeddings_land_unit_vectors(backend, tmp_path):
    spec = RequestSpec(model="text-embedding-3-small", kind=Kind.EMBEDDING, parameters={"dimensions": 32})
    layout, manifest = _run(backend, tmp_path, _items(4), spec=spec)
    _wait(backend, manifest)
    sink = open_sink(layout.results_dir, "parquet")
    summary = collect_results(manifest, backend, layout, sink, None)
    import pyarrow.parquet as pq

    table = pq.read_table(layout.results_dir / "results.parquet")
    vectors = table.column("embedding").to_pylist()
    assert summary["succeeded"] == 4 and all(len(v) == 32 for v in vectors)
    assert all(abs(sum(x * x for x in v) - 1) < 1e-3 for v in vectors)


def test_an_expired_batch_keeps_finished_items_and_marks_the_rest_retryable(backend, tmp_path, llm_batch_emulator):
    llm_batch_emulator.update_scenario(batch_outcome="expired")
    layout, manifest = _run(backend, tmp_path, _items(20))
    [status] = _wait(backend, manifest)
    assert status.outcome.value == "expired"
    summary, rows = _collect(backend, layout, manifest)
    assert len(rows) == 20
    assert summary["succeeded"] > 0 and summary["by_error_type"].get("expired", 0) > 0
    assert all(r["retryable"] for r in rows if r["status"] == "failed")
