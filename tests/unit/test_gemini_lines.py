"""Gemini requests and results onto the package's records (shapes from shared/reference/provider-apis.md §4)."""

from __future__ import annotations

import pytest
from google.genai import types

from airflow_llm_batch.batch import jsonl
from airflow_llm_batch.batch.backends.base import ClientConfig, RequestSpec
from airflow_llm_batch.batch.backends.gemini import (
    GeminiBackend,
    display_name,
    inlined_request,
    parse_result,
    parse_result_line,
    status_of,
)
from airflow_llm_batch.batch.records import BatchOutcome, ErrorType, JobKey, Kind
from airflow_llm_batch.batch.schema import ResponseSchema
from airflow_llm_batch.exceptions import ConfigurationError

SCHEMA = {
    "type": "object",
    "properties": {"label": {"type": "string", "enum": ["a", "b"]}, "score": {"type": "integer"}},
    "required": ["label", "score"],
}


@pytest.fixture
def gemini():
    return GeminiBackend(ClientConfig(api_key="unused", base_url="http://127.0.0.1:9/gemini"))


def _response(text="hello", finish="STOP", **extra):
    return {
        "candidates": [{"content": {"parts": [{"text": text}], "role": "model"}, "finishReason": finish, "index": 0}],
        "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 5, "totalTokenCount": 17},
        "modelVersion": "gemini-x-001",
        **extra,
    }


# Requests -----------------------------------------------------------------------------------------


def test_a_chat_body_without_schema_maps_common_and_gemini_parameter_names(gemini):
    spec = RequestSpec(
        model="gemini-x",
        kind=Kind.CHAT,
        system_prompt="be brief",
        parameters={"max_tokens": 64, "top_p": 0.5, "temperature": 0},
    )
    body = gemini.build_body(spec, "Classify: hi")
    assert body == {
        "contents": [{"role": "user", "parts": [{"text": "Classify: hi"}]}],
        "systemInstruction": {"parts": [{"text": "be brief"}]},
        "generationConfig": {"maxOutputTokens": 64, "topP": 0.5, "temperature": 0},
    }
    assert "model" not in body  # the model travels in the URL only


def test_a_chat_body_with_schema_asks_for_json_with_the_full_json_schema(gemini):
    spec = RequestSpec(model="gemini-x", kind=Kind.CHAT, response_schema=ResponseSchema.coerce(SCHEMA))
    config = gemini.build_body(spec, "x")["generationConfig"]
    assert config == {"responseMimeType": "application/json", "responseJsonSchema": SCHEMA}


def test_request_level_parameters_sit_beside_generation_config(gemini):
    settings = [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]
    spec = RequestSpec(model="gemini-x", kind=Kind.CHAT, parameters={"safety_settings": settings, "temperature": 1})
    body = gemini.build_body(spec, "x")
    assert body["safetySettings"] == settings and body["generationConfig"] == {"temperature": 1}


def test_an_embedding_body_carries_content_and_dimensions(gemini):
    spec = RequestSpec(model="gemini-embedding-001", kind=Kind.EMBEDDING, parameters={"dimensions": 8})
    assert gemini.build_body(spec, "text") == {"content": {"parts": [{"text": "text"}]}, "outputDimensionality": 8}


def test_the_file_line_keys_the_request_and_the_inline_form_keeps_the_key_in_metadata(gemini):
    spec = RequestSpec(
        model="gemini-x", kind=Kind.CHAT, system_prompt="sys", response_schema=ResponseSchema.coerce(SCHEMA)
    )
    line = gemini.build_line("id-1", spec, gemini.build_body(spec, "x"))
    assert set(line) == {"key", "request"} and line["key"] == "id-1"
    inline = types.InlinedRequest.model_validate(inlined_request(line))  # what the SDK builds from it
    assert inline.metadata == {"key": "id-1"}
    assert inline.config is not None and inline.config.response_json_schema == SCHEMA
    assert inline.config.response_mime_type == "application/json"
    assert inline.config.system_instruction.parts[0].text == "sys"


def test_parameters_outside_generation_config_are_refused_before_any_call(gemini):
    with pytest.raises(ConfigurationError, match="generationConfig"):
        gemini.check_spec(RequestSpec(model="gemini-x", kind=Kind.CHAT, parameters={"frobnicate": 1}))
    with pytest.raises(ConfigurationError, match="embeddings"):
        gemini.check_spec(RequestSpec(model="e", kind=Kind.EMBEDDING, parameters={"encoding_format": "float"}))
    gemini.check_spec(RequestSpec(model="gemini-x", kind=Kind.CHAT, parameters={"max_tokens": 5, "topK": 3}))


def test_the_display_name_carries_the_job_key_digest_and_chunk():
    key = JobKey("d" * 300, "t", "run")
    name = display_name(key, 3)
    assert name.endswith(f":job_key={key.digest()}:chunk=3") and len(name) < 150


# Results ------------------------------------------------------------------------------------------


def test_a_response_gives_text_tokens_model_and_finish_reason():
    outcome = parse_result({"key": "r1", "response": _response('{"a":1}')}, Kind.CHAT)
    assert outcome.succeeded and outcome.custom_id == "r1" and outcome.text == '{"a":1}'
    assert (outcome.input_tokens, outcome.output_tokens, outcome.finish_reason) == (12, 5, "STOP")
    assert outcome.model == "gemini-x-001"


def test_inline_results_take_the_key_from_metadata_and_join_text_parts_without_thoughts():
    response = _response()
    response["candidates"][0]["content"]["parts"] = [{"text": "plan", "thought": True}, {"text": "Hel"}, {"text": "lo"}]
    response["usageMetadata"]["thoughtsTokenCount"] = 7
    outcome = parse_result({"response": response, "metadata": {"key": "k9"}}, Kind.CHAT)
    assert outcome.custom_id == "k9" and outcome.text == "Hello" and outcome.output_tokens == 12


@pytest.mark.parametrize(
    ("code", "status", "message", "expected"),
    [
        (429, "RESOURCE_EXHAUSTED", "Resource has been exhausted", ErrorType.RATE_LIMITED),
        (500, "INTERNAL", "An internal error has occurred", ErrorType.SERVER_ERROR),
        (503, "UNAVAILABLE", "The model is overloaded", ErrorType.SERVER_ERROR),
        (504, "DEADLINE_EXCEEDED", "Deadline exceeded", ErrorType.SERVER_ERROR),
        (401, "UNAUTHENTICATED", "no credentials", ErrorType.AUTH),
        (403, "PERMISSION_DENIED", "denied", ErrorType.AUTH),
        (400, "INVALID_ARGUMENT", "The input token count exceeds the maximum", ErrorType.CONTEXT_LENGTH),
        (400, "INVALID_ARGUMENT", "Request contains an invalid argument.", ErrorType.INVALID_REQUEST),
        (8, "", "quota", ErrorType.RATE_LIMITED),  # google.rpc.Status with a gRPC code
        (13, "", "internal", ErrorType.SERVER_ERROR),
        (3, "", "bad field", ErrorType.INVALID_REQUEST),
    ],
)
def test_error_entries_map_onto_the_taxonomy(code, status, message, expected):
    outcome = parse_result({"key": "r1", "error": {"code": code, "message": message, "status": status}}, Kind.CHAT)
    assert not outcome.succeeded and outcome.error_type is expected and outcome.error_message == message


@pytest.mark.parametrize("reason", ["SAFETY", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII"])
def test_a_blocked_answer_is_content_filtered_and_permanent(reason):
    response = _response()
    response["candidates"] = [{"finishReason": reason, "index": 0}]
    outcome = parse_result({"key": "r1", "response": response}, Kind.CHAT)
    assert outcome.error_type is ErrorType.CONTENT_FILTERED and not outcome.error_type.retryable
    assert outcome.finish_reason == reason and outcome.text is None


def test_a_blocked_prompt_is_content_filtered():
    response = {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 3}}
    outcome = parse_result({"key": "r1", "response": response}, Kind.CHAT)
    assert outcome.error_type is ErrorType.CONTENT_FILTERED and "SAFETY" in outcome.error_message
    assert outcome.input_tokens == 3


def test_an_embedding_result_gives_the_vector():
    outcome = parse_result({"key": "e1", "response": {"embedding": {"values": [0.6, 0.8]}}}, Kind.EMBEDDING)
    assert outcome.succeeded and outcome.embedding == [0.6, 0.8]
    empty = parse_result({"key": "e1", "response": {"embedding": {}}}, Kind.EMBEDDING)
    assert empty.error_type is ErrorType.SERVER_ERROR


def test_file_lines_parse_and_a_torn_line_becomes_a_server_error_for_no_known_item():
    line = jsonl.dumps({"key": "r1", "response": _response()})
    assert parse_result_line(line, Kind.CHAT).text == "hello"
    torn = parse_result_line(line[: len(line) // 2], Kind.CHAT)
    assert torn.custom_id == "" and torn.error_type is ErrorType.SERVER_ERROR


# Status -------------------------------------------------------------------------------------------


def _job(state, **fields):
    return types.BatchJob(name="batches/abc", state=state, **fields)


@pytest.mark.parametrize(
    ("state", "outcome"),
    [
        ("JOB_STATE_PENDING", None),
        ("JOB_STATE_RUNNING", None),
        ("JOB_STATE_PAUSED", None),
        ("JOB_STATE_CANCELLING", None),
        ("JOB_STATE_SUCCEEDED", BatchOutcome.COMPLETED),
        ("JOB_STATE_PARTIALLY_SUCCEEDED", BatchOutcome.COMPLETED),
        ("JOB_STATE_FAILED", BatchOutcome.FAILED),
        ("JOB_STATE_CANCELLED", BatchOutcome.CANCELLED),
        ("JOB_STATE_EXPIRED", BatchOutcome.EXPIRED),
    ],
)
def test_job_states_map_onto_outcomes(state, outcome):
    status = status_of(_job(state))
    assert status.outcome is outcome and status.state == state and status.batch_id == "batches/abc"


def test_an_ended_inline_batch_counts_its_results_and_a_failed_one_explains():
    dest = types.BatchJobDestination(
        inlined_responses=[
            types.InlinedResponse(metadata={"key": "a"}, response=types.GenerateContentResponse()),
            types.InlinedResponse(metadata={"key": "b"}, error=types.JobError(code=500, message="x")),
        ]
    )
    status = status_of(_job("JOB_STATE_SUCCEEDED", dest=dest))
    assert (status.total, status.done, status.failed) == (2, 2, 1)
    assert status_of(_job("JOB_STATE_RUNNING")).total == 0  # the SDK hides batchStats
    failed = status_of(_job("JOB_STATE_FAILED", error=types.JobError(code=3, message="bad input")))
    assert failed.errors == ("3: bad input",)
    assert status_of(_job("JOB_STATE_FAILED")).errors  # even without a reason, say something
