"""Bedrock's wire rules without a server: request bodies, output records, statuses, error codes."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from airflow_llm_batch.batch.backends.base import ClientConfig, RequestSpec
from airflow_llm_batch.batch.backends.bedrock import BedrockBackend, chunk_of_name, job_name, status_of
from airflow_llm_batch.batch.backends.bedrock_records import claude_body, cohere_embed_body, parse_record
from airflow_llm_batch.batch.records import BatchOutcome, ErrorType, JobKey, Kind
from airflow_llm_batch.batch.schema import ResponseSchema

KEY = JobKey("dag", "task", "run")
SCHEMA = ResponseSchema.coerce({"title": "ticket triage", "type": "object", "properties": {"a": {"type": "string"}}})


def test_a_claude_body_is_the_messages_body_without_a_model_and_structured_output_is_a_forced_tool():
    body = claude_body("hello", "be brief", {"max_tokens": 10, "model": "ignored"}, SCHEMA)
    assert body["anthropic_version"] == "bedrock-2023-05-31" and "model" not in body
    assert body["system"] == "be brief" and body["max_tokens"] == 10
    assert body["tool_choice"] == {"type": "tool", "name": "ticket_triage"}
    assert body["tools"][0]["input_schema"] == SCHEMA.schema


def _error(code: int, message: str) -> dict:
    return {"recordId": "a", "error": {"errorCode": code, "errorMessage": message}}


@pytest.mark.parametrize(
    ("record", "kind", "expected"),
    [
        (_error(429, "slow down"), Kind.CHAT, ErrorType.RATE_LIMITED),
        (_error(400, "Input is too long for requested model."), Kind.CHAT, ErrorType.CONTEXT_LENGTH),
        (_error(400, "Malformed input"), Kind.CHAT, ErrorType.INVALID_REQUEST),
        (_error(424, "model error"), Kind.CHAT, ErrorType.SERVER_ERROR),
        (_error(403, "denied"), Kind.CHAT, ErrorType.AUTH),
        ({"recordId": "a", "modelInput": {}}, Kind.CHAT, ErrorType.SERVER_ERROR),  # neither output nor error
        ({"recordId": "a", "modelOutput": {"inputTextTokenCount": 3}}, Kind.EMBEDDING, ErrorType.SERVER_ERROR),
    ],
)
def test_failed_records_land_in_the_taxonomy(record, kind, expected):
    outcome = parse_record(json.dumps(record), kind)
    assert outcome.custom_id == "a" and not outcome.succeeded and outcome.error_type is expected


def test_a_cohere_body_sends_one_text_as_a_search_document_unless_told():
    assert cohere_embed_body("hi", {}) == {"texts": ["hi"], "input_type": "search_document"}
    assert cohere_embed_body("hi", {"input_type": "clustering", "truncate": "END"})["truncate"] == "END"


def test_answers_are_read_like_anthropics_and_titans():
    message = {
        "model": "claude",
        "content": [{"type": "tool_use", "name": "t", "input": {"a": "x"}}],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 7, "output_tokens": 3},
    }
    chat = parse_record(json.dumps({"recordId": "c", "modelOutput": message}), Kind.CHAT)
    assert chat.succeeded and json.loads(chat.text) == {"a": "x"} and chat.output_tokens == 3
    embedding = parse_record(
        json.dumps({"recordId": "e", "modelOutput": {"embedding": [0.6, 0.8], "inputTextTokenCount": 4}}),
        Kind.EMBEDDING,
    )
    assert embedding.embedding == [0.6, 0.8] and embedding.input_tokens == 4
    cohere = parse_record(json.dumps({"recordId": "k", "modelOutput": {"embeddings": [[1.0, 0.0]]}}), Kind.EMBEDDING)
    assert cohere.succeeded and cohere.embedding == [1.0, 0.0]
    typed = {"recordId": "k", "modelOutput": {"embeddings": {"float": [[0.0, 1.0]]}}}
    assert parse_record(json.dumps(typed), Kind.EMBEDDING).embedding == [0.0, 1.0]
    torn = parse_record(b'{"recordId":"t-1","modelOutput":{"con', Kind.CHAT)
    assert torn.custom_id == "t-1" and torn.error_type is ErrorType.SERVER_ERROR


@pytest.mark.parametrize(
    ("state", "outcome"),
    [
        ("Submitted", None), ("Validating", None), ("Scheduled", None), ("InProgress", None), ("Stopping", None),
        ("Completed", BatchOutcome.COMPLETED), ("PartiallyCompleted", BatchOutcome.COMPLETED),
        ("Failed", BatchOutcome.FAILED), ("Stopped", BatchOutcome.CANCELLED), ("Expired", BatchOutcome.EXPIRED),
    ],
)  # fmt: skip
def test_every_job_status_maps_to_an_outcome(state, outcome):
    job = {"jobArn": "arn:x/abc", "status": state, "message": "bad input", "totalRecordCount": 5}
    status = status_of(job)
    assert status.outcome is outcome and status.total == 5
    assert status.errors == (("Failed: bad input",) if state == "Failed" else ())


def test_the_job_name_carries_the_key_and_the_chunk():
    name = job_name(KEY, 7)
    assert len(name) <= 63 and chunk_of_name(name, KEY) == 7
    assert chunk_of_name(name, JobKey("dag", "task", "other-run")) is None


def _client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op")


def test_aws_errors_are_classified_for_waves_retries_and_refused_polls():
    backend = BedrockBackend(ClientConfig(extra={}))
    quota = _client_error("ServiceQuotaExceededException", 400)
    assert backend.is_capacity_error(quota) and not backend.is_transient(quota)
    assert backend.is_transient(_client_error("ThrottlingException", 429))
    assert backend.is_transient(_client_error("InternalServerException", 500))
    assert not backend.is_transient(_client_error("ValidationException", 400))
    assert backend.status_refusal(_client_error("AccessDeniedException", 403)).kind == "auth"
    assert backend.status_refusal(_client_error("ResourceNotFoundException", 404)).kind == "not_found"


def test_the_credentials_never_show_in_a_repr():
    config = ClientConfig(api_key="the-secret", login="AKIAKEYID", extra={})
    assert "the-secret" not in repr(config) and "AKIAKEYID" not in repr(config)
    with pytest.raises(Exception, match="bedrock_role_arn"):
        BedrockBackend(config).check_spec(RequestSpec(model="anthropic.claude-3-haiku-20240307-v1:0", kind=Kind.CHAT))
