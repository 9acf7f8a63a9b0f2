"""Strict mode refuses what each real service refuses, the way it refuses it (real SDK clients).

OpenAI: a 400 or 404 line in the error file, the rest of the batch answered. Anthropic: an
``errored`` result with ``invalid_request_error``. Gemini: 400 INVALID_ARGUMENT at create. The
examples the services accept are in ``test_emulator_strict_accepts.py``.
"""

from __future__ import annotations

import io
import json
import urllib.error
import urllib.request
from typing import Any

import anthropic
import pytest
from emulator_test_helpers import chat_line, read_jsonl
from google import genai
from google.genai import errors, types
from openai import OpenAI

from airflow_llm_batch.emulator import Emulator
from airflow_llm_batch.emulator.__main__ import parse_args, scenario_from_args

NOT_STRICT = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
NOT_ALL_REQUIRED = {
    "type": "object",
    "properties": {"a": {"type": "string"}, "b": {"type": "integer"}},
    "required": ["a"],
    "additionalProperties": False,
}


def strict_format(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "Answer", "schema": schema, "strict": True}}


OPENAI_REFUSALS = [
    ({"temprature": 0.2}, "gpt-4o-mini", 400, None, "Unrecognized request argument supplied: temprature"),
    ({"temperature": "hot"}, "gpt-4o-mini", 400, "invalid_type", "Invalid type for 'temperature'"),
    ({"max_tokens": 1.5}, "gpt-4o-mini", 400, "invalid_type", "expected an integer"),
    ({"temperature": 3}, "gpt-4o-mini", 400, "above_max_value", "Expected a value <= 2"),
    ({"max_tokens": 100}, "o3", 400, "unsupported_parameter", "Use 'max_completion_tokens' instead"),
    ({"max_tokens": 100}, "gpt-5-mini", 400, "unsupported_parameter", "'max_tokens' is not supported"),
    ({"temperature": 0.2}, "gpt-5", 400, "unsupported_value", "Only the default (1) value is supported"),
    ({"response_format": strict_format(NOT_STRICT)}, "gpt-4o-mini", 400, None, "'additionalProperties' is required"),
    ({"response_format": strict_format(NOT_ALL_REQUIRED)}, "gpt-4o-mini", 400, None, "Missing 'b'"),
    ({}, "gpt-9-ultra", 404, "model_not_found", "The model `gpt-9-ultra` does not exist"),
    ({}, "gpt-5-pro", 404, "model_not_found", "does not exist"),
    ({}, "text-embedding-3-small", 404, None, "This is not a chat model"),
]


@pytest.mark.parametrize(("extra", "model", "status", "code", "message"), OPENAI_REFUSALS)
def test_openai_answers_a_bad_line_in_the_error_file_and_the_rest_of_the_batch(
    emu: Emulator, client: OpenAI, submit, extra: dict, model: str, status: int, code: str | None, message: str
) -> None:
    emu.set_scenario(completion_seconds=1)
    served = status != 404  # a file holds one model: a good line of a model not served fails too
    good = [chat_line("good", "hello", model=model)] if served else []
    batch = submit([*good, chat_line("bad", "hello", model=model, **extra)])
    emu.advance(2)
    done = client.batches.retrieve(batch.id)
    assert done.status == "completed"
    assert (done.request_counts.completed, done.request_counts.failed) == (len(good), 1)
    assert [line["custom_id"] for line in read_jsonl(client, done.output_file_id)] == [g["custom_id"] for g in good]
    [refused] = read_jsonl(client, done.error_file_id)
    assert refused["custom_id"] == "bad" and refused["response"]["status_code"] == status
    error = refused["response"]["body"]["error"]
    assert message in error["message"] and error["code"] == code and error["type"] == "invalid_request_error"
    assert [item["custom_id"] for item in emu.ledger()["billed"]] == [g["custom_id"] for g in good]


def test_openai_missing_messages_and_embedding_lines_missing_input_are_400(emu: Emulator, client, submit) -> None:
    emu.set_scenario(completion_seconds=0)
    no_messages = {"custom_id": "c", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "gpt-4o"}}
    chat = client.batches.retrieve(submit([no_messages]).id)
    [line] = read_jsonl(client, chat.error_file_id)
    assert line["response"]["body"]["error"]["param"] == "messages"
    no_input = {
        "custom_id": "e",
        "method": "POST",
        "url": "/v1/embeddings",
        "body": {"model": "text-embedding-3-small"},
    }
    embedding = client.batches.retrieve(submit([no_input], endpoint="/v1/embeddings").id)
    [line] = read_jsonl(client, embedding.error_file_id)
    assert line["response"]["body"]["error"]["message"] == "Missing required parameter: 'input'."
    assert chat.output_file_id is None and embedding.output_file_id is None


def test_the_served_model_list_is_configurable(emu: Emulator, client: OpenAI, submit) -> None:
    emu.set_scenario(completion_seconds=0, openai_served_models=["ft:gpt-4o-mini:acme:*"])
    tuned = client.batches.retrieve(submit([chat_line("ft", "hi", model="ft:gpt-4o-mini:acme:triage:abc")]).id)
    base = client.batches.retrieve(submit([chat_line("base", "hi")]).id)
    assert [line["custom_id"] for line in read_jsonl(client, tuned.output_file_id)] == ["ft"]
    assert [line["response"]["status_code"] for line in read_jsonl(client, base.error_file_id)] == [404]


def test_with_strict_off_the_same_bad_lines_are_answered(emu: Emulator, client: OpenAI, submit) -> None:
    emu.set_scenario(completion_seconds=0, strict=False)
    for extra, model, *_ in OPENAI_REFUSALS:
        batch = client.batches.retrieve(submit([chat_line("bad", "hi", model=model, **extra)]).id)
        assert batch.request_counts.completed == 1 and batch.error_file_id is None


# Anthropic ----------------------------------------------------------------------------------------


def params(**extra: Any) -> dict[str, Any]:
    return {"model": "claude-haiku-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}], **extra}


ANTHROPIC_REFUSALS = [
    ({"temprature": 0.2}, "temprature: Extra inputs are not permitted"),
    ({"max_tokens": None}, "max_tokens: Field required"),  # None: left out of the params
    ({"max_tokens": "256"}, "max_tokens: Input should be a valid integer"),
    ({"max_tokens": 0}, "max_tokens: Input should be greater than or equal to 1"),
    ({"messages": []}, "messages: List should have at least 1 item"),
    ({"messages": [{"role": "bot", "content": "hi"}]}, "messages.0.role"),
    ({"system": 7}, "system: Input should be a valid string or a valid list"),
    ({"stream": True}, "stream: streaming is not supported"),
]


@pytest.mark.parametrize(("extra", "message"), ANTHROPIC_REFUSALS)
def test_anthropic_answers_bad_params_as_an_errored_result_not_a_400_at_create(
    emu: Emulator, extra: dict, message: str
) -> None:
    emu.set_scenario(completion_seconds=1)
    body = params(**extra)
    body = {k: v for k, v in body.items() if v is not None}
    with anthropic.Anthropic(api_key="k", base_url=emu.anthropic_base_url, max_retries=0) as claude:
        batch = claude.messages.batches.create(
            requests=[{"custom_id": "good", "params": params()}, {"custom_id": "bad", "params": body}]  # type: ignore[list-item]
        )
        emu.advance(2)
        ended = claude.messages.batches.retrieve(batch.id)
        results = {result.custom_id: result.result for result in claude.messages.batches.results(batch.id)}
    assert (ended.request_counts.succeeded, ended.request_counts.errored) == (1, 1)
    assert results["good"].type == "succeeded" and results["bad"].type == "errored"
    error = results["bad"].error.error  # type: ignore[union-attr]
    assert error.type == "invalid_request_error" and message in error.message
    assert [item["custom_id"] for item in emu.ledger()["billed"]] == ["good"]


def test_anthropic_missing_max_tokens_is_errored_and_the_envelope_is_still_refused_at_create(emu: Emulator) -> None:
    emu.set_scenario(completion_seconds=0)
    no_max_tokens = {"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "hi"}]}
    with anthropic.Anthropic(api_key="k", base_url=emu.anthropic_base_url, max_retries=0) as claude:
        batch = claude.messages.batches.create(requests=[{"custom_id": "a", "params": no_max_tokens}])  # type: ignore[list-item,typeddict-item]
        [result] = list(claude.messages.batches.results(batch.id))
        with pytest.raises(anthropic.BadRequestError, match="custom_id"):
            claude.messages.batches.create(requests=[{"custom_id": "a b", "params": params()}])  # type: ignore[list-item]
    assert result.result.type == "errored" and "max_tokens: Field required" in result.result.error.error.message  # type: ignore[union-attr]


# Gemini Developer API -----------------------------------------------------------------------------


@pytest.fixture
def gemini(emu: Emulator) -> genai.Client:
    return genai.Client(api_key="test-key", http_options=types.HttpOptions(base_url=emu.gemini_base_url))


def upload_lines(gemini: genai.Client, rows: list[dict[str, Any]]) -> str:
    content = "".join(json.dumps(row) + "\n" for row in rows).encode()
    uploaded = gemini.files.upload(file=io.BytesIO(content), config={"mime_type": "application/jsonl"})
    return str(uploaded.name)


def file_line(key: str, **request: Any) -> dict[str, Any]:
    return {"key": key, "request": {"contents": [{"parts": [{"text": "hi"}], "role": "user"}], **request}}


GEMINI_FILE_REFUSALS = [
    ({"thinking_config": {"thinking_budget": 0}}, "Error on line 2: invalid JSON: no such field: 'thinking_config'"),
    ({"temperature": 0.2}, "no such field: 'temperature'"),
    ({"generationConfig": {"temperature": "hot"}}, "(TYPE_FLOAT)"),
    ({"generationConfig": {"maxOutputTokens": 1.5}}, "(TYPE_INT32)"),
    ({"systemInstruction": "be brief"}, "request.system_instruction' (TYPE_MESSAGE)"),
]


@pytest.mark.parametrize(("request_fields", "message"), GEMINI_FILE_REFUSALS)
def test_gemini_refuses_a_file_with_a_bad_line_at_create_with_400(
    emu: Emulator, gemini: genai.Client, request_fields: dict, message: str
) -> None:
    name = upload_lines(gemini, [file_line("ok"), file_line("bad", **request_fields)])
    with pytest.raises(errors.ClientError) as refused:
        gemini.batches.create(model="gemini-2.5-flash", src=name)
    assert refused.value.code == 400 and refused.value.status == "INVALID_ARGUMENT"
    assert message in str(refused.value.message)
    assert emu.ledger()["batches"] == []


def test_gemini_refuses_an_unknown_field_of_an_inline_request_in_googles_words(emu: Emulator) -> None:
    body = {
        "batch": {"inputConfig": {"requests": {"requests": [{"request": file_line("k", colour="red")["request"]}]}}}
    }
    request = urllib.request.Request(
        f"{emu.gemini_base_url}/v1/models/gemini-2.5-flash:batchGenerateContent",
        json.dumps(body).encode(),
        {"content-type": "application/json", "x-goog-api-key": "k"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request)
    error = json.loads(refused.value.read())["error"]
    assert refused.value.code == 400 and error["status"] == "INVALID_ARGUMENT"
    assert error["message"] == (
        'Invalid JSON payload received. Unknown name "colour" at '
        "'batch.input_config.requests.requests[0].request': Cannot find field."
    )


def test_gemini_snake_case_file_lines_pass_unless_camel_case_is_required(emu: Emulator, gemini) -> None:
    snake = file_line("s", generation_config={"max_output_tokens": 20}, system_instruction={"parts": [{"text": "x"}]})
    emu.set_scenario(completion_seconds=0)
    assert gemini.batches.create(model="gemini-2.5-flash", src=upload_lines(gemini, [snake])).name
    emu.update_scenario(gemini_camel_case_file_lines=True)
    with pytest.raises(errors.ClientError, match="no such field: 'generation_config'"):
        gemini.batches.create(model="gemini-2.5-flash", src=upload_lines(gemini, [snake]))


def test_gemini_with_strict_off_takes_the_bad_lines(emu: Emulator, gemini: genai.Client) -> None:
    emu.set_scenario(strict=False)
    rows = [file_line(f"bad-{i}", **fields) for i, (fields, _) in enumerate(GEMINI_FILE_REFUSALS)]
    assert gemini.batches.create(model="gemini-2.5-flash", src=upload_lines(gemini, rows)).name


def test_the_command_line_turns_strictness_off_and_sets_the_served_models() -> None:
    scenario = scenario_from_args(parse_args(["--no-strict", "--openai-served-models", "gpt-4o*, my-model"]))
    assert scenario.strict is False and scenario.openai_served_models == ["gpt-4o*", "my-model"]
    assert scenario_from_args(parse_args([])).strict is True
