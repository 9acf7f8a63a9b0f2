"""With the pre-flight check switched off, the same bodies reach the (strict) emulator, which refuses
them the way each real service does: OpenAI per line in the error file, Anthropic as ``errored``
results, Gemini with 400 at create. The emulator's rules are its own (``emulator/*/strict.py``)."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_llm_batch.batch.backends import create_backend
from airflow_llm_batch.batch.backends.base import ClientConfig, RequestSpec
from airflow_llm_batch.batch.preflight import Preflight, PreflightSettings
from airflow_llm_batch.batch.records import Kind
from airflow_llm_batch.exceptions import InvalidInputError
from tests.integration.conftest import base_url
from tests.integration.harness import collect_rows, submit_items, wait_for

ROWS = [{"id": f"msg-{i}", "text": f"message {i}"} for i in range(3)]


def _backend(emulator: Any, provider: str, **extra: Any) -> Any:
    config = ClientConfig(api_key="k", base_url=base_url(emulator, provider), extra={"max_retries": 0, **extra})
    return create_backend(provider, config)


def _checked_then_sent(emulator: Any, tmp_path, provider: str, spec: RequestSpec) -> Any:
    """The check refuses the job; switched off, the job reaches the emulator. Returns the backend."""
    backend = _backend(emulator, provider)
    with pytest.raises(InvalidInputError):
        submit_items(backend, tmp_path / "checked", ROWS, spec)
    assert emulator.requests(provider) == []
    return backend


def test_openai_answers_each_line_400_in_the_error_file(llm_batch_emulator, tmp_path):
    llm_batch_emulator.set_scenario(completion_seconds=0.2)
    spec = RequestSpec("gpt-4.1-mini", Kind.CHAT, parameters={"max_tokenz": 50})
    backend = _checked_then_sent(llm_batch_emulator, tmp_path, "openai", spec)
    off = Preflight(backend, spec, PreflightSettings(enabled=False))
    layout, manifest = submit_items(backend, tmp_path / "off", ROWS, spec, preflight=off)
    wait_for(backend, manifest)
    _, rows = collect_rows(backend, layout, manifest)
    assert len(rows) == 3 and all(row["status"] == "failed" for row in rows)
    assert {row["error_type"] for row in rows} == {"invalid_request"}
    assert all("max_tokenz" in row["error_message"] for row in rows)


def test_anthropic_answers_errored_results(llm_batch_emulator, tmp_path):
    llm_batch_emulator.set_scenario(completion_seconds=0.2)
    spec = RequestSpec("claude-haiku-4-5", Kind.CHAT, parameters={"max_tokens": "200"})
    backend = _checked_then_sent(llm_batch_emulator, tmp_path, "anthropic", spec)
    off = Preflight(backend, spec, PreflightSettings(enabled=False))
    layout, manifest = submit_items(backend, tmp_path / "off", ROWS, spec, preflight=off)
    wait_for(backend, manifest)
    _, rows = collect_rows(backend, layout, manifest)
    assert len(rows) == 3 and {row["error_type"] for row in rows} == {"invalid_request"}
    assert all("max_tokens" in row["error_message"] for row in rows)


def test_gemini_answers_400_at_create_for_a_generation_field_at_the_top_of_a_file_line(llm_batch_emulator, tmp_path):
    # A file line (inline_max_bytes=0), as in inspect_ai#3257: sent inline, the SDK would move the
    # field into the config itself.
    backend = _backend(llm_batch_emulator, "gemini", inline_max_bytes=0)
    body = {"contents": [{"role": "user", "parts": [{"text": "x"}]}], "thinking_config": {"thinking_budget": 0}}
    rows = [{"id": "g-1", "body": body}]
    spec = RequestSpec("gemini-2.5-flash", Kind.CHAT)
    with pytest.raises(InvalidInputError, match="field 'thinking_config' belongs under generationConfig"):
        submit_items(backend, tmp_path / "checked", rows, spec, template=None, body_field="body")
    assert llm_batch_emulator.requests("gemini") == []
    off = Preflight(backend, spec, PreflightSettings(enabled=False))
    with pytest.raises(Exception) as err:
        submit_items(backend, tmp_path / "off", rows, spec, template=None, body_field="body", preflight=off)
    assert "400" in str(err.value) and "thinking_config" in str(err.value)
    assert llm_batch_emulator.requests("gemini") != []
