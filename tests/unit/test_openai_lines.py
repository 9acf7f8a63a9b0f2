"""OpenAI result lines onto the taxonomy (shapes from shared/reference/provider-apis.md, section 2.3)."""

import pytest

from airflow_llm_batch.batch import jsonl
from airflow_llm_batch.batch.backends.openai import parse_result_line
from airflow_llm_batch.batch.records import ErrorType, Kind


def _line(custom_id="r1", status=200, body=None, error=None, response=True):
    record = {"id": "batch_req_1", "custom_id": custom_id, "error": error}
    record["response"] = {"status_code": status, "request_id": "req_1", "body": body or {}} if response else None
    return jsonl.dumps(record)


def test_a_chat_completion_line_gives_text_tokens_and_finish_reason():
    body = {
        "model": "gpt-x",
        "choices": [{"message": {"content": '{"a":1}'}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 5},
    }
    outcome = parse_result_line(_line(body=body), Kind.CHAT)
    assert outcome.succeeded and outcome.text == '{"a":1}'
    assert (outcome.input_tokens, outcome.output_tokens, outcome.finish_reason) == (12, 5, "stop")


def test_an_embedding_line_gives_the_vector():
    body = {"data": [{"embedding": [0.6, 0.8]}], "usage": {"prompt_tokens": 3}}
    outcome = parse_result_line(_line(body=body), Kind.EMBEDDING)
    assert outcome.succeeded and outcome.embedding == [0.6, 0.8] and outcome.input_tokens == 3


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (429, "rate_limit_exceeded", ErrorType.RATE_LIMITED),
        (500, "server_error", ErrorType.SERVER_ERROR),
        (503, None, ErrorType.SERVER_ERROR),
        (400, "context_length_exceeded", ErrorType.CONTEXT_LENGTH),
        (400, "content_filter", ErrorType.CONTENT_FILTERED),
        (400, "invalid_request_error", ErrorType.INVALID_REQUEST),
        (401, "invalid_api_key", ErrorType.AUTH),
    ],
)
def test_http_failures_map_onto_the_taxonomy(status, code, expected):
    body = {"error": {"message": "boom", "type": "x", "param": None, "code": code}}
    outcome = parse_result_line(_line(status=status, body=body), Kind.CHAT)
    assert not outcome.succeeded
    assert outcome.error_type is expected
    assert outcome.error_message == "boom"


def test_expired_lines_are_retryable_expired():
    error = {
        "code": "batch_expired",
        "message": "This request could not be executed before the completion window expired.",
    }
    outcome = parse_result_line(_line(response=False, error=error), Kind.CHAT)
    assert outcome.error_type is ErrorType.EXPIRED and outcome.error_type.retryable


def test_a_content_filter_finish_is_a_permanent_failure():
    body = {"choices": [{"message": {"content": ""}, "finish_reason": "content_filter"}], "usage": {}}
    outcome = parse_result_line(_line(body=body), Kind.CHAT)
    assert not outcome.succeeded and outcome.error_type is ErrorType.CONTENT_FILTERED


def test_a_malformed_line_does_not_raise():
    outcome = parse_result_line(b'{"custom_id": "r1", "respo', Kind.CHAT)
    assert not outcome.succeeded and outcome.custom_id == ""


def test_a_chat_model_asked_for_embeddings_is_refused_in_plain_english(openai_backend):
    from airflow_llm_batch.batch.backends.base import RequestSpec
    from airflow_llm_batch.batch.records import Kind
    from airflow_llm_batch.exceptions import ConfigurationError

    with pytest.raises(ConfigurationError, match=r"model 'gpt-4\.1-mini' is not an embedding model on openai"):
        openai_backend.check_model(RequestSpec(model="gpt-4.1-mini", kind=Kind.EMBEDDING))
