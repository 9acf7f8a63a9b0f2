"""Strict mode must not refuse what the real services accept: request shapes from the providers' docs.

Each request follows an example of the provider's own documentation (named above it), sent through
the real SDK client, and must come back answered and billed.
"""

from __future__ import annotations

import io
import json
import warnings
from typing import Any

import anthropic
from emulator_test_helpers import read_jsonl
from google import genai
from google.genai import types
from openai import OpenAI

from airflow_llm_batch.emulator import Emulator

# OpenAI Structured Outputs guide: a strict schema, every object closed and every property required.
EVENT_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "date": {"type": "string"},
        "participants": {"type": "array", "items": {"type": "string"}},
        "location": {"anyOf": [{"type": "string"}, {"type": "null"}]},
    },
    "required": ["name", "date", "participants", "location"],
    "additionalProperties": False,
}
# OpenAI function calling guide: a strict function tool.
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get current temperature for a given location.",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "City and country e.g. Bogotá, Colombia"},
                "units": {"type": ["string", "null"], "enum": ["celsius", "fahrenheit", None]},
            },
            "required": ["location", "units"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}
OPENAI_CHAT_EXAMPLES: dict[str, dict[str, Any]] = {
    "tools": {
        "model": "gpt-4.1",
        "messages": [{"role": "user", "content": "What is the weather like in Paris today?"}],
        "tools": [WEATHER_TOOL],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
    },
    "json_schema_strict": {
        "model": "gpt-4o-2024-08-06",
        "messages": [
            {"role": "system", "content": "Extract the event information."},
            {"role": "user", "content": "Alice and Bob are going to a science fair on Friday."},
        ],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "calendar_event", "schema": EVENT_SCHEMA, "strict": True},
        },
    },
    "json_object": {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Reply in JSON: what is 2+2?"}]}],
        "response_format": {"type": "json_object"},
        "temperature": 0,
        "max_tokens": 100,
        "seed": 7,
        "stop": ["\n\n"],
        "metadata": {"team": "support"},
        "store": False,
    },
    "reasoning": {  # reasoning guide: developer message, max_completion_tokens, reasoning_effort
        "model": "o4-mini",
        "messages": [
            {"role": "developer", "content": "Answer tersely."},
            {"role": "user", "content": "Write a bash script that reverses a matrix."},
        ],
        "max_completion_tokens": 2000,
        "reasoning_effort": "medium",
    },
    "gpt5_default_temperature": {
        "model": "gpt-5-mini",
        "messages": [{"role": "user", "content": "hi"}],
        "temperature": 1,
    },
}


def test_openai_answers_the_documented_chat_examples(emu: Emulator, client: OpenAI, submit) -> None:
    emu.set_scenario(completion_seconds=0)
    for name, body in OPENAI_CHAT_EXAMPLES.items():
        line = {"custom_id": name, "method": "POST", "url": "/v1/chat/completions", "body": body}
        batch = client.batches.retrieve(submit([line]).id)
        assert batch.error_file_id is None, read_jsonl(client, batch.error_file_id)
        [answer] = read_jsonl(client, batch.output_file_id)
        assert answer["response"]["status_code"] == 200
    schema_answer = emu.ledger()["billed_counts"]["openai"]
    assert set(schema_answer) == set(OPENAI_CHAT_EXAMPLES)


def test_openai_answers_embeddings_with_dimensions_as_documented(emu: Emulator, client: OpenAI, submit) -> None:
    emu.set_scenario(completion_seconds=0)
    body = {
        "model": "text-embedding-3-small",
        "input": ["The food was delicious and the waiter...", "Another text"],
        "dimensions": 256,
        "encoding_format": "float",
    }
    line = {"custom_id": "e", "method": "POST", "url": "/v1/embeddings", "body": body}
    batch = client.batches.retrieve(submit([line], endpoint="/v1/embeddings").id)
    assert batch.error_file_id is None
    [answer] = read_jsonl(client, batch.output_file_id)
    assert [len(row["embedding"]) for row in answer["response"]["body"]["data"]] == [256, 256]


# Anthropic: prompt caching guide (system blocks with cache_control), tool use guide, structured
# outputs (output_config.format), extended thinking, batch guide examples.
ANTHROPIC_EXAMPLES: dict[str, dict[str, Any]] = {
    "cached_system": {
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "system": [
            {"type": "text", "text": "You are an AI assistant tasked with analyzing literary works."},
            {"type": "text", "text": "<the entire contents of a long book>", "cache_control": {"type": "ephemeral"}},
        ],
        "messages": [{"role": "user", "content": "Analyze the major themes in the book."}],
    },
    "tools": {
        "model": "claude-haiku-4-5",
        "max_tokens": 1024,
        "tools": [
            {
                "name": "get_stock_price",
                "description": "Get the current stock price for a given ticker symbol.",
                "input_schema": {
                    "type": "object",
                    "properties": {"ticker": {"type": "string"}},
                    "required": ["ticker"],
                },
            }
        ],
        "tool_choice": {"type": "tool", "name": "get_stock_price"},
        "messages": [{"role": "user", "content": [{"type": "text", "text": "What's the S&P 500 at today?"}]}],
        "metadata": {"user_id": "u-1"},
        "stop_sequences": ["\n\nHuman:"],
    },
    "structured": {
        "model": "claude-sonnet-4-5",
        "max_tokens": 512,
        "messages": [{"role": "user", "content": "Extract the name and email: John Smith, john@example.com"}],
        "output_config": {
            "format": {
                "type": "json_schema",
                "schema": {
                    "type": "object",
                    "properties": {"name": {"type": "string"}, "email": {"type": "string"}},
                    "required": ["name", "email"],
                    "additionalProperties": False,
                },
            }
        },
    },
    "thinking": {
        "model": "claude-sonnet-4-5",
        "max_tokens": 16000,
        "thinking": {"type": "enabled", "budget_tokens": 10000},
        "messages": [
            {"role": "user", "content": "Are there an infinite number of prime numbers such that n mod 4 == 3?"},
            {"role": "assistant", "content": "Let me think."},
            {"role": "user", "content": "Go on."},
        ],
        "service_tier": "auto",
    },
}


def test_anthropic_answers_the_documented_examples(emu: Emulator) -> None:
    emu.set_scenario(completion_seconds=0)
    requests = [{"custom_id": name, "params": body} for name, body in ANTHROPIC_EXAMPLES.items()]
    with anthropic.Anthropic(api_key="k", base_url=emu.anthropic_base_url, max_retries=0) as claude:
        batch = claude.messages.batches.create(requests=requests)  # type: ignore[arg-type]
        results = {r.custom_id: r.result for r in claude.messages.batches.results(batch.id)}
    assert {name: result.type for name, result in results.items()} == dict.fromkeys(ANTHROPIC_EXAMPLES, "succeeded")


# Gemini: batch mode guide (JSONL file lines in REST camelCase), structured output guide
# (responseMimeType + responseJsonSchema), system instructions, thinking config, safety settings.
GEMINI_REQUEST = {
    "contents": [{"role": "user", "parts": [{"text": "Give me a cookie recipe."}]}],
    "systemInstruction": {"parts": [{"text": "You are a baker."}]},
    "generationConfig": {
        "responseMimeType": "application/json",
        "responseJsonSchema": {
            "type": "object",
            "properties": {
                "recipe_name": {"type": "string"},
                "ingredients": {"type": "array", "items": {"type": "string"}},
            },
            "required": ["recipe_name", "ingredients"],
        },
        "temperature": 0.2,
        "topP": 0.9,
        "maxOutputTokens": 512,
        "candidateCount": 1,
        "stopSequences": ["END"],
        "thinkingConfig": {"thinkingBudget": 0},
    },
    "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_ONLY_HIGH"}],
}


def test_gemini_answers_the_documented_file_lines(emu: Emulator) -> None:
    emu.set_scenario(completion_seconds=0)
    gemini = genai.Client(api_key="k", http_options=types.HttpOptions(base_url=emu.gemini_base_url))
    rows = [
        {"key": "recipe", "request": GEMINI_REQUEST},
        {"key": "plain", "request": {"contents": GEMINI_REQUEST["contents"]}},
    ]
    content = "".join(json.dumps(row) + "\n" for row in rows).encode()
    name = gemini.files.upload(file=io.BytesIO(content), config={"mime_type": "application/jsonl"}).name
    batch = gemini.batches.create(model="gemini-2.5-flash", src=str(name))
    done = gemini.batches.get(name=str(batch.name))
    assert done.state == types.JobState.JOB_STATE_SUCCEEDED and done.dest is not None
    answers = [json.loads(row) for row in gemini.files.download(file=str(done.dest.file_name)).decode().splitlines()]
    assert all("response" in answer for answer in answers) and len(answers) == 2


def test_gemini_answers_inline_requests_the_sdk_builds_from_its_config(emu: Emulator) -> None:
    emu.set_scenario(completion_seconds=0)
    gemini = genai.Client(api_key="k", http_options=types.HttpOptions(base_url=emu.gemini_base_url))
    config = {
        "system_instruction": "You are a baker.",
        "response_mime_type": "application/json",
        "response_json_schema": GEMINI_REQUEST["generationConfig"]["responseJsonSchema"],
        "temperature": 0.2,
        "max_output_tokens": 512,
        "thinking_config": {"thinking_budget": 0},
        "safety_settings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_ONLY_HIGH"}],
    }
    src = [{"contents": GEMINI_REQUEST["contents"], "config": config, "metadata": {"key": "k1"}}]
    batch = gemini.batches.create(model="gemini-2.5-flash", src=src)  # type: ignore[arg-type]
    done = gemini.batches.get(name=str(batch.name))
    assert done.dest is not None and done.dest.inlined_responses and done.dest.inlined_responses[0].response
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # create_embeddings is marked experimental
        embedded = gemini.batches.create_embeddings(
            model="gemini-embedding-001",
            src={
                "inlined_requests": {"contents": [{"parts": [{"text": "a"}]}], "config": {"output_dimensionality": 64}}
            },  # type: ignore[arg-type]
        )
    assert gemini.batches.get(name=str(embedded.name)).state == types.JobState.JOB_STATE_SUCCEEDED
