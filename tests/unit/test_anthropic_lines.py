"""Anthropic request bodies and result lines onto the taxonomy (shapes: provider-apis.md section 3)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

import pytest
from anthropic.types.messages import MessageBatch

from airflow_llm_batch.batch import jsonl
from airflow_llm_batch.batch.backends.anthropic import AnthropicBackend, parse_result_line, status_of
from airflow_llm_batch.batch.backends.base import ClientConfig, RequestSpec
from airflow_llm_batch.batch.records import BatchOutcome, ErrorType, Kind
from airflow_llm_batch.batch.schema import ResponseSchema
from airflow_llm_batch.exceptions import ConfigurationError

SCHEMA = {
    "type": "object",
    "properties": {
        "label": {"type": "string", "enum": ["a", "b"]},
        "score": {"type": "integer", "minimum": 1, "maximum": 5},
    },
    "required": ["label", "score"],
}


@pytest.fixture
def backend() -> AnthropicBackend:
    return AnthropicBackend(ClientConfig(api_key="unused", base_url="http://127.0.0.1:9/anthropic"))


def _message(content, stop_reason="end_turn", **extra):
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": 12, "output_tokens": 5, "cache_read_input_tokens": 7},
        **extra,
    }


def _line(result, custom_id="r1"):
    return jsonl.dumps({"custom_id": custom_id, "result": result})


def _errored(error_type, message="boom"):
    return _line(
        {
            "type": "errored",
            "error": {"type": "error", "error": {"type": error_type, "message": message}, "request_id": "req_1"},
        }
    )


# Result lines --------------------------------------------------------------------------------


def test_a_succeeded_line_gives_the_concatenated_text_tokens_and_stop_reason():
    content = [{"type": "text", "text": '{"label":'}, {"type": "text", "text": '"a"}'}]
    outcome = parse_result_line(_line({"type": "succeeded", "message": _message(content)}))
    assert outcome.succeeded and outcome.custom_id == "r1"
    assert outcome.text == '{"label":"a"}'
    assert (outcome.input_tokens, outcome.output_tokens, outcome.finish_reason) == (12, 5, "end_turn")
    assert outcome.model == "claude-x"


def test_a_forced_tool_answer_becomes_the_json_of_its_input():
    content = [
        {"type": "text", "text": "Here you go"},
        {"type": "tool_use", "id": "toolu_1", "name": "ticket", "input": {"label": "b", "score": 2}},
    ]
    outcome = parse_result_line(_line({"type": "succeeded", "message": _message(content, "tool_use")}))
    assert outcome.succeeded
    assert jsonl.loads(outcome.text) == {"label": "b", "score": 2}


def test_a_refusal_is_a_permanent_content_filtered_failure_with_the_explanation():
    message = _message([], "refusal", stop_details={"type": "refusal", "category": None, "explanation": "nope"})
    outcome = parse_result_line(_line({"type": "succeeded", "message": message}))
    assert not outcome.succeeded
    assert outcome.error_type is ErrorType.CONTENT_FILTERED and not outcome.error_type.retryable
    assert outcome.error_message == "nope"
    assert outcome.finish_reason == "refusal"


@pytest.mark.parametrize(
    ("error_type", "message", "expected"),
    [
        ("rate_limit_error", "slow down", ErrorType.RATE_LIMITED),
        ("api_error", "Internal server error", ErrorType.SERVER_ERROR),
        ("overloaded_error", "Overloaded", ErrorType.SERVER_ERROR),
        ("timeout_error", "timed out", ErrorType.SERVER_ERROR),
        ("authentication_error", "invalid x-api-key", ErrorType.AUTH),
        ("permission_error", "not allowed", ErrorType.AUTH),
        ("billing_error", "credit balance too low", ErrorType.AUTH),
        ("invalid_request_error", "messages.0.content: Field required", ErrorType.INVALID_REQUEST),
        ("invalid_request_error", "prompt is too long: 215000 tokens > 200000 maximum", ErrorType.CONTEXT_LENGTH),
        (
            "invalid_request_error",
            "input length and `max_tokens` exceed context limit: 188240 + 21333 > 200000",
            ErrorType.CONTEXT_LENGTH,
        ),
        ("not_found_error", "model: claude-nope", ErrorType.INVALID_REQUEST),
        ("something_new_error", "?", ErrorType.SERVER_ERROR),
    ],
)
def test_errored_lines_map_their_error_type_onto_the_taxonomy(error_type, message, expected):
    outcome = parse_result_line(_errored(error_type, message))
    assert not outcome.succeeded and outcome.custom_id == "r1"
    assert outcome.error_type is expected
    assert outcome.error_message == message


def test_an_errored_line_with_a_bare_error_object_is_still_understood():
    line = _line({"type": "errored", "error": {"type": "rate_limit_error", "message": "slow"}})
    assert parse_result_line(line).error_type is ErrorType.RATE_LIMITED


@pytest.mark.parametrize(
    ("result_type", "expected"), [("canceled", ErrorType.CANCELLED), ("expired", ErrorType.EXPIRED)]
)
def test_requests_that_never_ran_are_retryable(result_type, expected):
    outcome = parse_result_line(_line({"type": result_type}))
    assert not outcome.succeeded and outcome.error_type is expected and expected.retryable


def test_a_torn_line_keeps_its_id_and_fails_as_a_retryable_server_error():
    full = _line({"type": "succeeded", "message": _message([{"type": "text", "text": "hello"}])}, custom_id="t-7")
    outcome = parse_result_line(full[: len(full) // 2])
    assert outcome.custom_id == "t-7"
    assert outcome.error_type is ErrorType.SERVER_ERROR and outcome.error_message == "malformed result line"


def test_garbage_does_not_raise():
    outcome = parse_result_line(b"not json at all")
    assert not outcome.succeeded and outcome.custom_id == ""


# Request bodies ------------------------------------------------------------------------------


def test_a_plain_body_has_model_default_max_tokens_system_and_the_user_message(backend):
    spec = RequestSpec(model="claude-x", kind=Kind.CHAT, system_prompt="be brief", parameters={"temperature": 0})
    body = backend.build_body(spec, "Classify: hi")
    assert body == {
        "model": "claude-x",
        "max_tokens": 1024,
        "system": "be brief",
        "messages": [{"role": "user", "content": "Classify: hi"}],
        "temperature": 0,
    }
    assert backend.build_line("r1", spec, body) == {"custom_id": "r1", "params": body}


def test_parameters_override_the_default_max_tokens(backend):
    spec = RequestSpec(model="claude-x", kind=Kind.CHAT, parameters={"max_tokens": 64})
    body = backend.build_body(spec, "hi")
    assert body["max_tokens"] == 64 and "system" not in body


def test_cache_system_prompt_sends_the_system_prompt_as_an_ephemeral_cached_block(backend):
    spec = RequestSpec(
        model="claude-x", kind=Kind.CHAT, system_prompt="long rules", options={"cache_system_prompt": True}
    )
    body = backend.build_body(spec, "hi")
    assert body["system"] == [{"type": "text", "text": "long rules", "cache_control": {"type": "ephemeral"}}]


def test_a_schema_becomes_native_structured_output_in_the_form_anthropic_accepts(backend):
    original = copy.deepcopy(SCHEMA)
    spec = RequestSpec(model="claude-x", kind=Kind.CHAT, response_schema=ResponseSchema.coerce(SCHEMA))
    body = backend.build_body(spec, "hi")
    output_format = body["output_config"]["format"]
    assert output_format["type"] == "json_schema"
    schema = output_format["schema"]
    assert schema["additionalProperties"] is False
    assert schema["required"] == ["label", "score"]
    assert schema["properties"]["label"]["enum"] == ["a", "b"]
    # Structured outputs take no numeric bounds: they move into the description, for the model to read.
    score = schema["properties"]["score"]
    assert "minimum" not in score and "{minimum: 1, maximum: 5}" in score["description"]
    assert original == SCHEMA  # the user's schema is left as it was
    assert "tools" not in body and "tool_choice" not in body


def test_an_embedding_spec_is_refused_pointing_at_openai_and_gemini(backend):
    with pytest.raises(ConfigurationError, match="embeddings work on OpenAI and Gemini"):
        backend.check_spec(RequestSpec(model="voyage", kind=Kind.EMBEDDING))
    assert not backend.supports_embeddings


def test_a_schema_structured_outputs_cannot_express_is_refused_before_any_call(backend):
    schema = ResponseSchema(name="loose", schema={"type": "object", "properties": {"anything": {}}})
    with pytest.raises(ConfigurationError, match="'loose' cannot be sent as Anthropic structured output"):
        backend.check_spec(RequestSpec(model="claude-x", kind=Kind.CHAT, response_schema=schema))


def test_the_console_link_names_the_batch(backend):
    assert backend.console_url("msgbatch_1") == "https://console.anthropic.com/workspaces/default/batches/msgbatch_1"


# Batch status --------------------------------------------------------------------------------


def _batch(status, cancel=False, **counts):
    created = datetime(2026, 1, 1, tzinfo=UTC)
    request_counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0, **counts}
    return MessageBatch.model_validate(
        {
            "id": "msgbatch_1",
            "type": "message_batch",
            "processing_status": status,
            "request_counts": request_counts,
            "created_at": created,
            "expires_at": created,
            "cancel_initiated_at": created if cancel else None,
            "results_url": "/v1/messages/batches/msgbatch_1/results" if status == "ended" else None,
        }
    )


def test_a_running_batch_has_no_outcome_and_no_progress_until_it_ends():
    status = status_of(_batch("in_progress", processing=10))
    assert status.outcome is None and not status.ended
    assert (status.total, status.done, status.failed) == (10, 0, 0)
    assert status_of(_batch("canceling", cancel=True, processing=10)).outcome is None


def test_an_ended_batch_is_completed_with_counts_from_the_result_types():
    status = status_of(_batch("ended", succeeded=7, errored=3))
    assert status.outcome is BatchOutcome.COMPLETED
    assert (status.total, status.done, status.failed) == (10, 10, 3)
    assert status.details["results_url"].endswith("/results")


def test_an_ended_batch_with_expired_requests_expired():
    assert status_of(_batch("ended", succeeded=5, expired=5)).outcome is BatchOutcome.EXPIRED


def test_an_ended_batch_that_was_cancelled_is_cancelled_even_when_every_request_finished():
    assert status_of(_batch("ended", cancel=True, succeeded=4, canceled=6)).outcome is BatchOutcome.CANCELLED
    assert status_of(_batch("ended", cancel=True, succeeded=10)).outcome is BatchOutcome.CANCELLED
