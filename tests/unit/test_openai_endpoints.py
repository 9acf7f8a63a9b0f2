"""Which endpoint an OpenAI job goes to, and a Response read into the same row fields as chat."""

from __future__ import annotations

import json

import pytest

from airflow_llm_batch.batch.backends.openai import parse_result_line
from airflow_llm_batch.batch.backends.openai_endpoints import choose_endpoint
from airflow_llm_batch.batch.records import ErrorType, Kind
from airflow_llm_batch.exceptions import ConfigurationError


@pytest.mark.parametrize(
    ("kind", "model", "requested", "expected"),
    [
        (Kind.CHAT, "gpt-4.1-mini", None, "/v1/chat/completions"),
        (Kind.CHAT, "gpt-4.1-mini", "responses", "/v1/responses"),
        (Kind.CHAT, "gpt-5-pro", None, "/v1/responses"),
        (Kind.CHAT, "gpt-5.2-pro-2025-12-11", "auto", "/v1/responses"),
        (Kind.CHAT, "o3-deep-research", None, "/v1/responses"),
        (Kind.CHAT, "gpt-5-pro", "chat", "/v1/chat/completions"),  # asked for: the pre-flight check says why not
        (Kind.CHAT, "gpt-5", None, "/v1/chat/completions"),
        (Kind.EMBEDDING, "text-embedding-3-small", None, "/v1/embeddings"),
    ],
)
def test_the_endpoint_follows_the_request_then_the_model(kind, model, requested, expected):
    assert choose_endpoint(kind, model, requested) == expected


@pytest.mark.parametrize(
    ("kind", "requested", "message"),
    [
        (Kind.CHAT, "completions", "must be one of"),
        (Kind.CHAT, "embeddings", "for kind='embedding'"),
        (Kind.EMBEDDING, "responses", "does not take embedding"),
    ],
)
def test_an_endpoint_that_cannot_serve_the_job_is_refused(kind, requested, message):
    with pytest.raises(ConfigurationError, match=message):
        choose_endpoint(kind, "m", requested)


def _line(body: dict) -> str:
    return json.dumps({"id": "r", "custom_id": "c", "response": {"status_code": 200, "body": body}, "error": None})


def _response(status: str = "completed", content: list | None = None, **extra) -> dict:
    parts = content if content is not None else [{"type": "output_text", "text": '{"a":1}', "annotations": []}]
    output = [
        {"type": "reasoning", "id": "rs", "summary": []},
        {"type": "message", "role": "assistant", "status": status, "content": parts},
    ]
    usage = {"input_tokens": 7, "output_tokens": 3, "total_tokens": 10}
    return {"object": "response", "status": status, "model": "gpt-5-pro", "output": output, "usage": usage, **extra}


def test_a_completed_response_reads_like_a_chat_completion():
    outcome = parse_result_line(_line(_response()), Kind.CHAT)
    assert (outcome.succeeded, outcome.text, outcome.finish_reason) == (True, '{"a":1}', "stop")
    assert (outcome.model, outcome.input_tokens, outcome.output_tokens) == ("gpt-5-pro", 7, 3)


def test_a_response_cut_at_max_output_tokens_is_length():
    body = _response("incomplete", incomplete_details={"reason": "max_output_tokens"})
    outcome = parse_result_line(_line(body), Kind.CHAT)
    assert outcome.succeeded and outcome.finish_reason == "length"


def test_refusals_filters_and_failures_are_item_errors():
    refusal = _response(content=[{"type": "refusal", "refusal": "I cannot help with that."}])
    filtered = _response("incomplete", incomplete_details={"reason": "content_filter"})
    failed = _response("failed", content=[], error={"code": "rate_limit_exceeded", "message": "slow down"})
    outcomes = [parse_result_line(_line(body), Kind.CHAT) for body in (refusal, filtered, failed)]
    assert [o.error_type for o in outcomes] == [
        ErrorType.CONTENT_FILTERED,
        ErrorType.CONTENT_FILTERED,
        ErrorType.RATE_LIMITED,
    ]
    assert outcomes[0].error_message == "I cannot help with that." and not any(o.succeeded for o in outcomes)
