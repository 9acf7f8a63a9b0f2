"""The core flow through the Gemini backend and the real google.genai client, against the emulator.

prepare -> submit (state file) -> poll (async client) -> collect results, without Airflow; both the
inline and the uploaded-file path (``inline_max_bytes=1`` forces the file).
"""

from __future__ import annotations

import json

import pytest

from airflow_llm_batch.batch.backends.base import ClientConfig, RequestSpec
from airflow_llm_batch.batch.backends.gemini import GeminiBackend, display_name
from airflow_llm_batch.batch.job import JobState
from airflow_llm_batch.batch.records import JobKey, Kind
from airflow_llm_batch.batch.results import collect_results
from airflow_llm_batch.batch.schema import ResponseSchema
from airflow_llm_batch.io.sinks import open_sink
from tests.integration.harness import KEY, collect_rows, submit_items, wait_for

SCHEMA = {
    "type": "object",
    "properties": {"label": {"type": "string", "enum": ["spam", "ham"]}, "why": {"type": "string"}},
    "required": ["label", "why"],
}
CHAT = RequestSpec(
    model="gemini-x", kind=Kind.CHAT, system_prompt="Answer in JSON.", response_schema=ResponseSchema.coerce(SCHEMA)
)


def _backend(emu, **extra):
    limits = GeminiBackend.default_limits.with_overrides({"max_requests": 20})
    config = ClientConfig(api_key="k", base_url=emu.gemini_base_url, extra={"max_retries": 0, **extra})
    return GeminiBackend(config, limits)


@pytest.fixture(params=["inline", "file"])
def backend(request, llm_batch_emulator):
    llm_batch_emulator.set_scenario(completion_seconds=0.3)
    backend = _backend(llm_batch_emulator, **({"inline_max_bytes": 1} if request.param == "file" else {}))
    yield backend
    backend.close()


def _items(n: int) -> list[dict[str, str]]:
    return [{"id": f"msg/{i}", "text": f"message {i}"} for i in range(n)]


def _run(backend, tmp_path, items, spec=CHAT, key=KEY):
    return submit_items(backend, tmp_path, items, spec, key)


def _collect(backend, layout, manifest, validator=None, output_format="jsonl"):
    return collect_rows(backend, layout, manifest, validator, output_format)


_wait = wait_for


def _sent_requests(emu, batch_id):
    """What the emulator received for a batch, in request order (read from its in-process state)."""
    batch = emu.state.services["gemini"].batches[batch_id.removeprefix("batches/")]
    return [(item.key, item.request) for item in batch.items]


def test_items_above_the_batch_limit_land_complete_across_batches(backend, tmp_path, llm_batch_emulator):
    layout, manifest = _run(backend, tmp_path, _items(45))
    assert [b.count for b in manifest.batches] == [20, 20, 5]
    assert all(b.startswith("batches/") for b in manifest.batch_ids)
    _wait(backend, manifest)
    summary, rows = _collect(backend, layout, manifest, ResponseSchema.coerce(SCHEMA).validator())
    assert sorted(r["id"] for r in rows) == sorted(f"msg/{i}" for i in range(45))
    assert summary["succeeded"] == 45 and all(r["json"]["label"] in ("spam", "ham") for r in rows)
    assert summary["input_tokens"] > 0 and summary["output_tokens"] > 0
    assert all(r["provider"] == "gemini" and r["finish_reason"] == "STOP" for r in rows)
    assert len(llm_batch_emulator.ledger()["batches"]) == 3


def test_inline_and_file_submissions_send_exactly_the_built_request(backend, tmp_path, llm_batch_emulator):
    layout, manifest = _run(backend, tmp_path, _items(2))
    written = [json.loads(line) for line in layout.chunk_file(0).read_text().splitlines()]
    sent = _sent_requests(llm_batch_emulator, manifest.batch_ids[0])
    assert sent == [(line["key"], line["request"]) for line in written]
    assert "model" not in sent[0][1] and sent[0][1]["generationConfig"]["responseJsonSchema"] == SCHEMA


def test_the_file_path_is_taken_when_forced_and_inline_otherwise(llm_batch_emulator, tmp_path):
    llm_batch_emulator.set_scenario(completion_seconds=0.3)
    for extra, uploads in (({}, 0), ({"inline_max_bytes": 1}, 1)):
        backend = _backend(llm_batch_emulator, **extra)
        _run(backend, tmp_path / str(uploads), _items(3))
        starts = [r for r in llm_batch_emulator.requests("gemini") if "/upload/" in r["path"] and not r["query"]]
        assert len(starts) == uploads
        backend.close()
        llm_batch_emulator.reset()


def test_item_errors_invalid_output_and_missing_lines_each_end_in_one_row(backend, tmp_path, llm_batch_emulator):
    llm_batch_emulator.update_scenario(
        item_errors={"rate_limited": 0.1, "server_error": 0.1, "context_length": 0.1, "content_filtered": 0.1},
        invalid_output_rate=0.1,
        malformed_line_rate=0.05,
    )
    layout, manifest = _run(backend, tmp_path, _items(200))
    _wait(backend, manifest)
    summary, rows = _collect(backend, layout, manifest, ResponseSchema.coerce(SCHEMA).validator())
    assert len(rows) == 200 and len({r["id"] for r in rows}) == 200
    types = summary["by_error_type"]
    expected = {"rate_limited", "server_error", "context_length", "content_filtered", "invalid_output"}
    is_file = backend.inline_max_bytes == 1
    # Torn lines exist only in a responses file; their items come back as missing.
    assert expected | ({"missing"} if is_file else set()) == set(types)
    by_type = {t: [r for r in rows if r["error_type"] == t] for t in types}
    assert all(r["retryable"] and r["text"] for r in by_type["invalid_output"])
    assert not any(r["retryable"] for r in by_type["context_length"] + by_type["content_filtered"])
    assert all(r["retryable"] for r in by_type["rate_limited"] + by_type["server_error"])
    failed_ids = [json.loads(line)["id"] for line in (layout.results_dir / "failed_items.jsonl").read_text().split()]
    assert sorted(failed_ids) == sorted(r["id"] for r in rows if r["status"] == "failed")


def test_embeddings_land_unit_vectors_of_the_requested_size(llm_batch_emulator, tmp_path):
    llm_batch_emulator.set_scenario(completion_seconds=0.3)
    backend = _backend(llm_batch_emulator)
    spec = RequestSpec(model="gemini-embedding-001", kind=Kind.EMBEDDING, parameters={"dimensions": 32})
    layout, manifest = _run(backend, tmp_path, _items(4), spec=spec)
    _wait(backend, manifest)
    summary = collect_results(manifest, backend, layout, open_sink(layout.results_dir, "parquet"), None)
    import pyarrow.parquet as pq

    vectors = pq.read_table(layout.results_dir / "results.parquet").column("embedding").to_pylist()
    assert summary["succeeded"] == 4 and all(len(v) == 32 for v in vectors)
    assert all(abs(sum(x * x for x in v) - 1) < 1e-3 for v in vectors)
    backend.close()


@pytest.mark.parametrize("outcome", ["expired", "cancelled"])
def test_an_ended_early_batch_marks_unanswered_items_retryable(backend, tmp_path, llm_batch_emulator, outcome):
    llm_batch_emulator.update_scenario(batch_outcome=outcome)
    layout, manifest = _run(backend, tmp_path, _items(10))
    [status] = _wait(backend, manifest)
    assert status.outcome.value == outcome
    summary, rows = _collect(backend, layout, manifest)
    assert len(rows) == 10 and all(r["retryable"] for r in rows if r["status"] == "failed")
    if outcome == "expired":  # the Developer API keeps no results of an expired job
        assert summary["by_error_type"] == {"expired": 10}
    else:
        assert summary["succeeded"] == 5 and summary["by_error_type"] == {"cancelled": 5}


def test_a_failed_batch_gives_permanent_rows_and_is_listed(backend, tmp_path, llm_batch_emulator):
    llm_batch_emulator.update_scenario(batch_outcome="failed")
    layout, manifest = _run(backend, tmp_path, _items(3))
    [status] = _wait(backend, manifest)
    assert status.outcome.value == "failed" and status.errors
    summary, rows = _collect(backend, layout, manifest)
    assert [b["batch_id"] for b in summary["failed_batches"]] == [status.batch_id]
    assert len(rows) == 3 and all(r["error_type"] == "invalid_request" and not r["retryable"] for r in rows)


def test_a_create_whose_response_was_lost_is_found_by_its_display_name(backend, tmp_path, llm_batch_emulator):
    layout, first = _run(backend, tmp_path, _items(5))
    assert backend.find_batch(KEY, 0) == first.batch_ids[0]
    assert backend.find_batch(KEY, 1) is None and backend.find_batch(JobKey("other", "t", "r"), 0) is None
    state = JobState.load(layout.state_file)
    state.data.pop("handed_off", None)  # it died before handing its first wave on
    state.set_chunk(0, state="intent", batch_id=None)  # as if the task died during the create call
    _, second = _run(backend, tmp_path, _items(5))
    assert second.batch_ids == first.batch_ids
    ledger = llm_batch_emulator.ledger()
    assert len(ledger["batches"]) == 1 and ledger["batches"][0]["job_key"] == KEY.digest()
    assert ledger["batches"][0]["tags"]["chunk"] == "0" and display_name(KEY, 0).endswith("chunk=0")


def test_cancel_and_status_through_both_clients(llm_batch_emulator, tmp_path):
    llm_batch_emulator.set_scenario(completion_seconds=60)
    backend = _backend(llm_batch_emulator)
    _, manifest = _run(backend, tmp_path, _items(4))
    [batch_id] = manifest.batch_ids
    assert backend.get_status(batch_id).outcome is None
    backend.cancel(batch_id)
    assert backend.get_status(batch_id).outcome.value == "cancelled"
    assert backend.test_connection()[0]
    backend.close()


def test_a_work_dir_on_object_storage_uploads_through_the_file_path(llm_batch_emulator, tmp_path):
    from airflow.sdk import ObjectStoragePath

    llm_batch_emulator.set_scenario(completion_seconds=0.3)
    backend = _backend(llm_batch_emulator, inline_max_bytes=1)
    layout, manifest = _run(backend, ObjectStoragePath(f"file://{tmp_path}"), _items(3))
    _wait(backend, manifest)
    summary, _ = _collect(backend, layout, manifest, output_format="parquet")
    assert summary["succeeded"] == 3
    backend.close()
