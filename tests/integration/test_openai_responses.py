"""OpenAI batches on ``/v1/responses``: the real openai client against the emulator.

The rows must read as on chat completions (text, json, tokens, finish reason); the lines must be
what the SDK's own ``Response`` type reads; the endpoint is picked for models served only there.
"""

from __future__ import annotations

import json

import pytest
from openai.types.responses import Response

from airflow_llm_batch.batch.backends.base import ClientConfig, RequestSpec
from airflow_llm_batch.batch.backends.openai import OpenAIBackend
from airflow_llm_batch.batch.preflight import Preflight, PreflightSettings
from airflow_llm_batch.batch.records import Kind
from airflow_llm_batch.batch.schema import ResponseSchema
from airflow_llm_batch.exceptions import ConfigurationError, InvalidInputError
from tests.integration.harness import KEY, collect_rows, submit_items, wait_for

SCHEMA = {
    "type": "object",
    "properties": {"label": {"type": "string", "enum": ["spam", "ham"]}, "why": {"type": "string"}},
    "required": ["label", "why"],
}


def _spec(model: str = "gpt-4.1-mini", endpoint: str | None = "responses", **kwargs) -> RequestSpec:
    options = {"endpoint": endpoint} if endpoint else {}
    return RequestSpec(model=model, kind=Kind.CHAT, options=options, **kwargs)


@pytest.fixture
def backend(llm_batch_emulator):
    llm_batch_emulator.set_scenario(completion_seconds=0.3)
    backend = OpenAIBackend(
        ClientConfig(api_key="k", base_url=llm_batch_emulator.openai_base_url, extra={"max_retries": 0})
    )
    yield backend
    backend.close()


def _items(n: int) -> list[dict[str, str]]:
    return [{"id": f"m{i}", "text": f"message number {i}"} for i in range(n)]


def _batch_endpoints(backend: OpenAIBackend, manifest) -> set[str]:
    return {backend.client.batches.retrieve(b.batch_id).endpoint for b in manifest.batches}


def test_structured_output_on_responses_gives_the_chat_rows(backend, tmp_path):
    spec = _spec(system_prompt="Label the message.", response_schema=ResponseSchema.coerce(SCHEMA))
    layout, manifest = submit_items(backend, tmp_path, _items(12), spec, KEY)
    assert _batch_endpoints(backend, manifest) == {"/v1/responses"}
    wait_for(backend, manifest)
    summary, rows = collect_rows(backend, layout, manifest, ResponseSchema.coerce(SCHEMA).validator())
    assert sorted(r["id"] for r in rows) == sorted(f"m{i}" for i in range(12))
    assert summary["succeeded"] == 12
    assert all(r["json"]["label"] in ("spam", "ham") and json.loads(r["text"]) == r["json"] for r in rows)
    assert all(r["finish_reason"] == "stop" and r["input_tokens"] > 0 and r["output_tokens"] > 0 for r in rows)
    assert all(r["model"] == "gpt-4.1-mini" for r in rows)


def test_output_lines_are_responses_the_sdk_reads(backend, tmp_path):
    spec = _spec(parameters={"max_output_tokens": 2})
    layout, manifest = submit_items(backend, tmp_path, _items(3), spec, KEY)
    statuses = wait_for(backend, manifest)
    content = backend.client.files.content(statuses[0].details["output_file_id"]).text
    for line in content.splitlines():
        record = json.loads(line)
        response = Response.model_validate(record["response"]["body"])  # the SDK's own type
        assert response.status == "incomplete" and response.incomplete_details.reason == "max_output_tokens"
        assert response.output_text and response.usage.output_tokens <= 2
    _, rows = collect_rows(backend, layout, manifest, None)
    assert {r["finish_reason"] for r in rows} == {"length"} and all(r["text"] for r in rows)


def test_a_model_served_only_on_responses_goes_there_by_itself(backend, tmp_path):
    spec = _spec(model="gpt-5-pro", endpoint=None)
    assert backend.request_endpoint(spec) == "/v1/responses"
    layout, manifest = submit_items(backend, tmp_path, _items(2), spec, KEY)
    assert _batch_endpoints(backend, manifest) == {"/v1/responses"}
    wait_for(backend, manifest)
    summary, rows = collect_rows(backend, layout, manifest, None)
    assert summary["succeeded"] == 2 and all(r["text"] for r in rows)


def test_the_same_model_on_chat_completions_is_refused_by_the_service(backend, tmp_path, llm_batch_emulator):
    """Why the automatic choice matters: on chat completions the model's lines come back 404."""
    llm_batch_emulator.update_scenario(strict=True)
    spec = _spec(model="gpt-5-pro", endpoint="chat")
    layout, manifest = submit_items(
        backend, tmp_path, _items(2), spec, KEY, preflight=Preflight(backend, spec, PreflightSettings(enabled=False))
    )
    wait_for(backend, manifest)
    summary, rows = collect_rows(backend, layout, manifest, None)
    assert summary["failed"] == 2 and all("does not exist" in r["error_message"] for r in rows)


def test_item_errors_on_responses_keep_the_taxonomy(backend, tmp_path, llm_batch_emulator):
    llm_batch_emulator.update_scenario(item_errors={"rate_limited": 0.2, "context_length": 0.2})
    layout, manifest = submit_items(backend, tmp_path, _items(40), _spec(), KEY)
    wait_for(backend, manifest)
    summary, rows = collect_rows(backend, layout, manifest, None)
    assert len(rows) == 40 and {"rate_limited", "context_length"} <= set(summary["by_error_type"])
    assert all(r["retryable"] for r in rows if r["error_type"] == "rate_limited")


def test_embeddings_cannot_go_to_responses(backend):
    with pytest.raises(ConfigurationError, match="does not take embedding"):
        backend.check_spec(
            RequestSpec(model="text-embedding-3-small", kind=Kind.EMBEDDING, options={"endpoint": "responses"})
        )


def test_preflight_judges_the_responses_body(backend):
    spec = _spec(model="o3", parameters={"temperature": 0.2, "max_tokens": 10, "logit_bias": {}})
    with pytest.raises(InvalidInputError) as caught:
        Preflight(backend, spec).check_template()
    message = str(caught.value)
    assert "ResponseCreateParams" in message and "logit_bias" in message and "temperature" in message
    assert "max_tokens" not in message  # sent as max_output_tokens, the Responses name
    assert backend.build_body(_spec(parameters={"max_tokens": 10}), "x")["max_output_tokens"] == 10
    Preflight(backend, _spec(model="o3", parameters={"max_completion_tokens": 100})).check_template()


@pytest.mark.parametrize("provider", ["anthropic", "gemini"])
def test_an_endpoint_on_a_provider_with_one_per_kind_is_refused(llm_batch_emulator, tmp_path, provider):
    from airflow_llm_batch.batch.backends import create_backend
    from tests.integration.conftest import MODELS, base_url

    backend = create_backend(provider, ClientConfig(api_key="k", base_url=base_url(llm_batch_emulator, provider)))
    spec = RequestSpec(model=MODELS[provider], kind=Kind.CHAT, options={"endpoint": "responses"})
    with pytest.raises(ConfigurationError, match="has one endpoint per kind"):
        submit_items(backend, tmp_path, _items(2), spec, KEY)
    assert llm_batch_emulator.requests() == []
