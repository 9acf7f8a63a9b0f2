"""The core flow through the Anthropic backend and the real anthropic client, against the emulator.

prepare -> submit (state file) -> poll (async client) -> collect results, without Airflow.
"""

from __future__ import annotations

from typing import Any

import pytest

from airflow_llm_batch.batch import jsonl
from airflow_llm_batch.batch.backends import create_backend
from airflow_llm_batch.batch.backends.anthropic import AnthropicBackend
from airflow_llm_batch.batch.backends.base import ClientConfig, RequestSpec
from airflow_llm_batch.batch.job import JobLayout
from airflow_llm_batch.batch.manifest import Manifest
from airflow_llm_batch.batch.records import BatchOutcome, BatchStatus, Kind
from airflow_llm_batch.batch.schema import OutputValidator, ResponseSchema
from airflow_llm_batch.emulator import Emulator
from airflow_llm_batch.exceptions import ConfigurationError
from tests.integration.harness import collect_rows, submit_items, wait_for

SCHEMA = {
    "type": "object",
    "properties": {
        "label": {"type": "string", "enum": ["spam", "ham"]},
        "confidence": {"type": "integer", "minimum": 1, "maximum": 5},
    },
    "required": ["label", "confidence"],
}
# The taxonomy kind the emulator draws for an item -> the error type its row must carry.
EXPECTED_ERROR = {
    "rate_limited": "rate_limited",
    "server_error": "server_error",
    "invalid_request": "invalid_request",
    "context_length": "context_length",
    "content_filtered": "content_filtered",
}


@pytest.fixture
def emu(llm_batch_emulator: Emulator) -> Emulator:
    llm_batch_emulator.set_scenario(completion_seconds=0.3)
    return llm_batch_emulator


@pytest.fixture
def backend(emu: Emulator):
    config = ClientConfig(api_key="k", base_url=emu.anthropic_base_url, extra={"max_retries": 0})
    backend = create_backend("anthropic", config)
    assert isinstance(backend, AnthropicBackend)
    yield backend
    backend.close()


def _spec(**fields: Any) -> RequestSpec:
    defaults: dict[str, Any] = {
        "model": "claude-x",
        "kind": Kind.CHAT,
        "system_prompt": "Answer for a mail filter.",
        "response_schema": ResponseSchema.coerce(SCHEMA),
        "options": {"cache_system_prompt": True},
    }
    return RequestSpec(**{**defaults, **fields})


def _items(n: int) -> list[dict[str, str]]:
    return [{"id": f"msg-{i}", "text": f"message {i}: win a prize now"} for i in range(n)]


def _submit(backend, tmp_path, items, spec=None) -> tuple[JobLayout, Manifest]:
    return submit_items(backend, tmp_path, items, spec or _spec())


def _wait(backend, manifest: Manifest, timeout: float = 10.0) -> list[BatchStatus]:
    return wait_for(backend, manifest, timeout)


def _collect(backend, layout: JobLayout, manifest: Manifest) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    return collect_rows(backend, layout, manifest, OutputValidator(SCHEMA))


def _run(backend, tmp_path, items, spec=None):
    layout, manifest = _submit(backend, tmp_path, items, spec)
    statuses = _wait(backend, manifest)
    summary, rows = _collect(backend, layout, manifest)
    return statuses, summary, rows


def test_every_item_comes_back_once_under_the_users_own_id(backend, tmp_path, emu) -> None:
    odd_ids = ["ticket/7 é", "x" * 80]
    items = _items(5) + [{"id": odd_id, "text": "free money"} for odd_id in odd_ids]
    layout, manifest = _submit(backend, tmp_path, items)
    sent = [line["custom_id"] for line in jsonl.read_jsonl(layout.chunk_file(0))]
    assert [c for c in sent if c.startswith("h-")] and all(len(c) <= 64 for c in sent)

    [status] = _wait(backend, manifest)
    assert status.outcome is BatchOutcome.COMPLETED and (status.total, status.done, status.failed) == (7, 7, 0)
    summary, rows = _collect(backend, layout, manifest)
    assert sorted(r["id"] for r in rows) == sorted(i["id"] for i in items)
    assert summary["succeeded"] == 7 and summary["input_tokens"] > 0 and summary["output_tokens"] > 0
    for row in rows:
        assert row["provider"] == "anthropic" and row["batch_id"] == manifest.batch_ids[0]
        assert row["json"]["label"] in ("spam", "ham") and 1 <= row["json"]["confidence"] <= 5
        assert row["finish_reason"] == "end_turn" and row["model"] == "claude-x"
    [entry] = emu.ledger()["batches"]
    assert entry["job_key"] is None  # Anthropic batches cannot carry tags


def test_a_running_batch_reports_its_total_but_no_progress(backend, tmp_path, emu) -> None:
    emu.set_scenario(completion_seconds=60)
    _, manifest = _submit(backend, tmp_path, _items(4))
    status = backend.get_status(manifest.batch_ids[0])
    assert (status.state, status.outcome, status.total, status.done) == ("in_progress", None, 4, 0)


def test_item_errors_become_rows_with_the_matching_error_types(backend, tmp_path, emu) -> None:
    emu.update_scenario(
        item_errors={
            "rate_limited": 0.15,
            "server_error": 0.15,
            "invalid_request": 0.1,
            "context_length": 0.1,
            "content_filtered": 0.1,
        }
    )
    _, summary, rows = _run(backend, tmp_path, _items(80))
    assert len(rows) == 80 and len({r["id"] for r in rows}) == 80
    for row in rows:
        kind = emu.scenario.item_error(row["id"])  # these ids fit the pattern: custom_id == id
        if kind is None:
            assert row["status"] == "succeeded", row
        else:
            assert (row["status"], row["error_type"]) == ("failed", EXPECTED_ERROR[kind]), row
            assert row["retryable"] == (kind in ("rate_limited", "server_error"))
    assert set(summary["by_error_type"]) == set(EXPECTED_ERROR.values())


def test_invalid_structured_output_is_a_retryable_row_that_keeps_the_raw_text(backend, tmp_path, emu) -> None:
    emu.update_scenario(invalid_output_rate=1.0)
    _, summary, rows = _run(backend, tmp_path, _items(6))
    assert summary["by_error_type"] == {"invalid_output": 6}
    for row in rows:
        assert row["retryable"] and row["json"] is None
        assert row["text"] and row["error_message"].startswith("output ")


def test_torn_result_lines_fail_their_own_item_only(backend, tmp_path, emu) -> None:
    emu.update_scenario(malformed_line_rate=0.5)
    _, summary, rows = _run(backend, tmp_path, _items(20))
    torn = [r for r in rows if r["error_message"] == "malformed result line"]
    assert len(rows) == 20 and torn and summary["succeeded"] == 20 - len(torn)
    assert all(r["error_type"] == "server_error" and r["retryable"] for r in torn)


def test_an_expired_batch_routes_unfinished_items_to_retry(backend, tmp_path, emu) -> None:
    emu.update_scenario(batch_outcome="expired")
    [status], summary, rows = _run(backend, tmp_path, _items(10))
    assert status.outcome is BatchOutcome.EXPIRED
    assert summary["succeeded"] == 5 and summary["by_error_type"] == {"expired": 5}
    assert all(r["retryable"] for r in rows if r["status"] == "failed")


def test_a_cancelled_batch_reports_cancelled_items(backend, tmp_path, emu) -> None:
    emu.set_scenario(completion_seconds=10)
    layout, manifest = _submit(backend, tmp_path, _items(10))
    emu.advance(3)
    backend.cancel(manifest.batch_ids[0])
    emu.advance(2)
    [status] = _wait(backend, manifest)
    assert status.outcome is BatchOutcome.CANCELLED
    summary, _ = _collect(backend, layout, manifest)
    assert summary["succeeded"] == 3 and summary["by_error_type"] == {"cancelled": 7}


def test_chunks_split_at_the_request_limit_and_a_retry_re_attaches(backend, tmp_path, emu) -> None:
    backend.limits = backend.limits.with_overrides({"max_requests": 3})
    layout, manifest = _submit(backend, tmp_path, _items(7))
    assert [b.count for b in manifest.batches] == [3, 3, 1]
    _, again = _submit(backend, tmp_path, _items(7))  # a task retry: the state file re-attaches
    assert again.batch_ids == manifest.batch_ids
    assert len(emu.ledger()["batches"]) == 3
    _wait(backend, manifest)
    _, rows = _collect(backend, layout, manifest)
    assert sorted(r["id"] for r in rows) == sorted(f"msg-{i}" for i in range(7))


def test_an_embedding_job_is_refused_before_any_call(backend, tmp_path, emu) -> None:
    spec = _spec(kind=Kind.EMBEDDING, response_schema=None, system_prompt=None)
    with pytest.raises(ConfigurationError, match="OpenAI and Gemini"):
        _submit(backend, tmp_path, _items(2), spec)
    assert emu.requests("anthropic") == []


def test_the_connection_test_makes_an_authenticated_call(backend, emu) -> None:
    assert backend.test_connection() == (True, "Connected to the Anthropic Message Batches API")
    [call] = emu.requests("anthropic")
    assert (call["method"], call["path"], call["status"]) == ("GET", "/anthropic/v1/messages/batches", 200)
