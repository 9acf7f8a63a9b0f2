"""Requests the real services would refuse fail before any request reaches the emulator.

Each case goes through the real submit path (prepare, then create) with the real SDK clients
pointed at the emulator, and asserts the emulator's request log holds nothing for the provider.
"""

from __future__ import annotations

from typing import Any

import pytest

from airflow_llm_batch.batch.backends import create_backend
from airflow_llm_batch.batch.backends.base import ClientConfig, RequestSpec
from airflow_llm_batch.batch.records import Kind
from airflow_llm_batch.exceptions import InvalidInputError
from tests.integration.conftest import MODELS, base_url
from tests.integration.harness import submit_items

CHAT = {"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": "Is this spam?"}]}


def _refused(emulator: Any, tmp_path, provider: str, rows, spec: RequestSpec, **kwargs: Any) -> str:
    config = ClientConfig(api_key="k", base_url=base_url(emulator, provider), extra={"max_retries": 0})
    backend = create_backend(provider, config)
    try:
        with pytest.raises(InvalidInputError) as err:
            submit_items(backend, tmp_path, rows, spec, **kwargs)
    finally:
        backend.close()
    assert emulator.requests(provider) == [], "a request reached the provider"
    return str(err.value)


def _rows(count: int = 3) -> list[dict[str, Any]]:
    return [{"id": f"msg-{i}", "text": f"message {i}"} for i in range(count)]


def test_unknown_parameter(llm_batch_emulator, tmp_path):
    spec = RequestSpec("gpt-4.1-mini", Kind.CHAT, parameters={"max_tokenz": 50})
    message = _refused(llm_batch_emulator, tmp_path, "openai", _rows(), spec)
    assert message.startswith("every item: field 'max_tokenz' is not a field this request accepts")
    assert "did you mean 'max_tokens'?" in message and "judged by openai " in message


def test_wrong_type(llm_batch_emulator, tmp_path):
    spec = RequestSpec("claude-haiku-4-5", Kind.CHAT, parameters={"max_tokens": "200"})
    message = _refused(llm_batch_emulator, tmp_path, "anthropic", _rows(), spec)
    assert "every item: field 'max_tokens' should be an integer, not a string (set in parameters=)" in message


def test_reasoning_model_with_max_tokens(llm_batch_emulator, tmp_path):
    spec = RequestSpec("gpt-5-mini", Kind.CHAT, parameters={"max_tokens": 200})
    message = _refused(llm_batch_emulator, tmp_path, "openai", _rows(), spec)
    assert (
        "every item: field 'max_tokens' is refused by reasoning models; rename it to max_completion_tokens" in message
    )


def test_strict_schema_without_additional_properties_false(llm_batch_emulator, tmp_path):
    schema = {"type": "object", "properties": {"label": {"type": "string"}}, "required": ["label"]}
    body = {
        **CHAT,
        "response_format": {"type": "json_schema", "json_schema": {"name": "l", "schema": schema, "strict": True}},
    }
    rows = [{"id": "ok", "body": CHAT}, {"id": "T-7", "body": body}]
    spec = RequestSpec("gpt-4.1-mini", Kind.CHAT)
    message = _refused(llm_batch_emulator, tmp_path, "openai", rows, spec, template=None, body_field="body")
    assert (
        "item 'T-7': (its 'body') field 'response_format.json_schema.schema' needs \"additionalProperties\": false"
        in message
    )


def test_embeddings_model_for_chat(llm_batch_emulator, tmp_path):
    rows = [{"id": "ok", "body": CHAT}, {"id": "E-1", "body": {**CHAT, "model": "text-embedding-3-small"}}]
    spec = RequestSpec("gpt-4.1-mini", Kind.CHAT)
    message = _refused(llm_batch_emulator, tmp_path, "openai", rows, spec, template=None, body_field="body")
    assert "item 'E-1': (its 'body') field 'model': model 'text-embedding-3-small' is not a chat model" in message


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
def test_a_5_mb_item(llm_batch_emulator, tmp_path, provider):
    rows = [*_rows(2), {"id": "huge", "text": "word " * 1_050_000}]
    message = _refused(llm_batch_emulator, tmp_path, provider, rows, RequestSpec(MODELS[provider], Kind.CHAT))
    assert message.startswith("item 'huge': its request is about 1,31")
    assert f"above {MODELS[provider]}'s context window" in message


def test_a_nested_placeholder_the_item_lacks(llm_batch_emulator, tmp_path):
    rows = [{"id": "P-1", "meta": {"product": "lamp"}}, {"id": "P-2", "meta": {"name": "x"}}]
    spec = RequestSpec("gpt-4.1-mini", Kind.CHAT)
    message = _refused(llm_batch_emulator, tmp_path, "openai", rows, spec, template="Product: {meta.product}")
    assert message == "item 'P-2': field 'meta.product' is missing; the prompt template uses {meta.product}"
