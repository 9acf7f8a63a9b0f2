"""``/v1/responses`` batches on the emulated OpenAI: lines in, ``Response`` objects out (real SDK client).

The output bodies must be what the SDK's own ``Response`` type reads; strict mode refuses a bad
body with a 400 or 404 line in the error file, as on chat completions.
"""

from __future__ import annotations

from typing import Any

import pytest
from emulator_test_helpers import read_jsonl
from openai import OpenAI
from openai.types.responses import Response

from airflow_llm_batch.emulator import Emulator

RESPONSES = "/v1/responses"
SCHEMA = {
    "type": "object",
    "properties": {"label": {"type": "string", "enum": ["spam", "ham"]}},
    "required": ["label"],
    "additionalProperties": False,
}


def responses_line(custom_id: str, model: str = "gpt-4.1-mini", **body: Any) -> dict[str, Any]:
    return {"custom_id": custom_id, "method": "POST", "url": RESPONSES, "body": {"model": model, "input": "hi", **body}}


def test_a_responses_batch_answers_with_response_objects(emu: Emulator, client: OpenAI, submit) -> None:
    emu.set_scenario(completion_seconds=1)
    structured = {"text": {"format": {"type": "json_schema", "name": "label", "schema": SCHEMA, "strict": True}}}
    message_items = {"input": [{"role": "user", "content": [{"type": "input_text", "text": "buy now"}]}]}
    batch = submit(
        [
            responses_line("plain", instructions="Be brief."),
            responses_line("structured", **structured),
            responses_line("items", **message_items),
        ],
        endpoint=RESPONSES,
    )
    assert batch.endpoint == RESPONSES
    emu.advance(2)
    done = client.batches.retrieve(batch.id)
    assert done.status == "completed" and done.request_counts.completed == 3 and done.error_file_id is None
    out = {
        line["custom_id"]: Response.model_validate(line["response"]["body"])
        for line in read_jsonl(client, done.output_file_id)
    }
    assert all(r.status == "completed" and r.output_text and r.usage.input_tokens > 0 for r in out.values())
    assert out["structured"].output_text in ('{"label":"spam"}', '{"label":"ham"}')
    assert out["plain"].instructions == "Be brief." and out["plain"].model == "gpt-4.1-mini"
    assert done.usage.output_tokens == sum(r.usage.output_tokens for r in out.values())


RESPONSES_REFUSALS = [
    ({"max_tokens": 10}, "gpt-4.1-mini", 400, "Unrecognized request argument supplied: max_tokens"),
    ({"messages": []}, "gpt-4.1-mini", 400, "Unrecognized request argument supplied: messages"),
    ({"max_output_tokens": "many"}, "gpt-4.1-mini", 400, "Invalid type for 'max_output_tokens'"),
    ({"temperature": 0.2}, "o3", 400, "Unsupported parameter: 'temperature'"),
    (
        {
            "text": {
                "format": {
                    "type": "json_schema",
                    "name": "x",
                    "schema": {"type": "object", "properties": {"a": {}}},
                    "strict": True,
                }
            }
        },
        "gpt-4.1-mini",
        400,
        "'additionalProperties' is required",
    ),
    ({"text": {"format": {"type": "json_schema", "schema": SCHEMA}}}, "gpt-4.1-mini", 400, "'text.format.name'"),
    ({}, "text-embedding-3-small", 404, "does not exist"),
    ({}, "gpt-9-ultra", 404, "does not exist"),
]


def test_a_model_served_only_on_responses_is_answered_there(emu: Emulator, client: OpenAI, submit) -> None:
    emu.set_scenario(completion_seconds=0)
    done = client.batches.retrieve(submit([responses_line("pro", model="gpt-5-pro")], endpoint=RESPONSES).id)
    [line] = read_jsonl(client, done.output_file_id)
    assert Response.model_validate(line["response"]["body"]).model == "gpt-5-pro"


@pytest.mark.parametrize(("extra", "model", "status", "message"), RESPONSES_REFUSALS)
def test_strict_mode_refuses_a_bad_responses_body_in_the_error_file(
    emu: Emulator, client: OpenAI, submit, extra: dict, model: str, status: int, message: str
) -> None:
    emu.set_scenario(completion_seconds=0)
    done = client.batches.retrieve(submit([responses_line("bad", model=model, **extra)], endpoint=RESPONSES).id)
    [refused] = read_jsonl(client, done.error_file_id)
    assert refused["response"]["status_code"] == status and message in refused["response"]["body"]["error"]["message"]
    assert done.output_file_id is None and emu.ledger()["billed"] == []
