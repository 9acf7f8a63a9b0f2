"""The pre-flight check: the SDKs' request types, the model table's rules, the context window.

The valid bodies below are the request examples of the providers' own API references and
guides (each cited), so a rule that would refuse what the service accepts fails here.
"""

from __future__ import annotations

import logging

import pytest

from airflow_llm_batch.batch.backends.anthropic import AnthropicBackend
from airflow_llm_batch.batch.backends.base import ClientConfig, RequestSpec
from airflow_llm_batch.batch.backends.gemini import GeminiBackend
from airflow_llm_batch.batch.backends.openai import OpenAIBackend
from airflow_llm_batch.batch.preflight import Preflight, PreflightSettings
from airflow_llm_batch.batch.preflight.models import RULES, ModelTable
from airflow_llm_batch.batch.preflight.sdk_types import body_type, sdk_version
from airflow_llm_batch.batch.prepare import prepare_chunks
from airflow_llm_batch.batch.records import Kind
from airflow_llm_batch.batch.schema import ResponseSchema
from airflow_llm_batch.batch.templates import PromptTemplate
from airflow_llm_batch.exceptions import ConfigurationError, InvalidInputError

OPENAI = OpenAIBackend(ClientConfig(api_key="k"))
ANTHROPIC = AnthropicBackend(ClientConfig(api_key="k"))
GEMINI = GeminiBackend(ClientConfig(api_key="k"))

# OpenAI API reference, "Create chat completion" examples (default, image input, functions).
OPENAI_CHAT_EXAMPLES = [
    {
        "model": "gpt-4.1",
        "messages": [
            {"role": "developer", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Hello!"},
        ],
    },
    {
        "model": "gpt-4.1",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What's in this image?"},
                    {"type": "image_url", "image_url": {"url": "https://example.com/boardwalk.jpg"}},
                ],
            }
        ],
        "max_tokens": 300,
    },
    {
        "model": "gpt-4.1",
        "messages": [{"role": "user", "content": "What's the weather like in Boston today?"}],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_current_weather",
                    "description": "Get the current weather in a given location",
                    "parameters": {
                        "type": "object",
                        "properties": {
                            "location": {"type": "string"},
                            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                        },
                        "required": ["location"],
                    },
                },
            }
        ],
        "tool_choice": "auto",
    },
    # Structured outputs guide, "Chain of thought" example (strict: true, as the guide requires it).
    {
        "model": "gpt-4o-2024-08-06",
        "messages": [
            {"role": "system", "content": "You are a helpful math tutor. Guide the user through the solution."},
            {"role": "user", "content": "how can I solve 8x + 7 = -23"},
        ],
        "response_format": {
            "type": "json_schema",
            "json_schema": {
                "name": "math_reasoning",
                "schema": {
                    "type": "object",
                    "properties": {
                        "steps": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {"explanation": {"type": "string"}, "output": {"type": "string"}},
                                "required": ["explanation", "output"],
                                "additionalProperties": False,
                            },
                        },
                        "final_answer": {"type": "string"},
                    },
                    "required": ["steps", "final_answer"],
                    "additionalProperties": False,
                },
                "strict": True,
            },
        },
    },
    # Reasoning guide: o-series with max_completion_tokens and reasoning_effort.
    {
        "model": "o4-mini",
        "reasoning_effort": "medium",
        "max_completion_tokens": 25000,
        "messages": [{"role": "user", "content": "Write a bash script that transposes a matrix."}],
    },
]
# OpenAI API reference, "Create embeddings" example.
OPENAI_EMBEDDING_EXAMPLE = {
    "input": "The food was delicious and the waiter...",
    "model": "text-embedding-3-small",
    "encoding_format": "float",
}
# Anthropic "Message Batches" guide and Messages API reference examples.
ANTHROPIC_EXAMPLES = [
    {"model": "claude-opus-4-1", "max_tokens": 1024, "messages": [{"role": "user", "content": "Hello, world"}]},
    {
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "system": [
            {"type": "text", "text": "You are an AI assistant tasked with analyzing literary works."},
            {
                "type": "text",
                "text": "<the entire contents of Pride and Prejudice>",
                "cache_control": {"type": "ephemeral"},
            },
        ],
        "messages": [{"role": "user", "content": "Analyze the major themes in Pride and Prejudice."}],
    },
    {
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "tools": [
            {
                "name": "get_weather",
                "description": "Get the current weather in a given location",
                "input_schema": {
                    "type": "object",
                    "properties": {"location": {"type": "string", "description": "The city and state"}},
                    "required": ["location"],
                },
            }
        ],
        "messages": [{"role": "user", "content": "What's the weather like in San Francisco?"}],
    },
]
# Gemini API "Batch Mode" guide (input file lines) and "Structured output" / "Text generation".
GEMINI_EXAMPLES = [
    {"contents": [{"parts": [{"text": "Describe the process of photosynthesis."}]}]},
    {
        "contents": [{"role": "user", "parts": [{"text": "Explain how AI works"}]}],
        "systemInstruction": {"parts": [{"text": "You are a cat. Your name is Neko."}]},
        "generationConfig": {"temperature": 0.1, "stopSequences": ["Title"], "maxOutputTokens": 800, "topP": 0.8},
        "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_ONLY_HIGH"}],
    },
    {
        "contents": [{"parts": [{"text": "List a few popular cookie recipes."}]}],
        "generationConfig": {
            "responseMimeType": "application/json",
            "responseSchema": {
                "type": "ARRAY",
                "items": {"type": "OBJECT", "properties": {"recipeName": {"type": "STRING"}}},
            },
            "thinkingConfig": {"thinkingBudget": 0},
        },
    },
]


def _spec(model: str, kind: Kind = Kind.CHAT, **parameters: object) -> RequestSpec:
    return RequestSpec(model=model, kind=kind, parameters=parameters)


def _problems(backend, body, model, settings=None, kind=Kind.CHAT):
    return Preflight(backend, RequestSpec(model=model, kind=kind), settings).body_problems(body, model)


@pytest.mark.parametrize("body", OPENAI_CHAT_EXAMPLES, ids=lambda b: b["model"])
def test_openai_chat_examples_from_the_api_reference_pass(body):
    assert _problems(OPENAI, body, body["model"]) == []


def test_openai_embedding_and_responses_examples_pass():
    assert _problems(OPENAI, OPENAI_EMBEDDING_EXAMPLE, "text-embedding-3-small", kind=Kind.EMBEDDING) == []
    responses = body_type("openai", Kind.CHAT, "/v1/responses")
    assert responses is not None
    example = {"model": "gpt-4.1", "input": "Tell me a three sentence bedtime story about a unicorn."}
    assert responses.validate(example) == []
    assert [p.path for p in responses.validate({**example, "max_tokens": 5})] == ["max_tokens"]


@pytest.mark.parametrize("body", ANTHROPIC_EXAMPLES, ids=lambda b: str(len(b)))
def test_anthropic_examples_from_the_docs_pass(body):
    assert _problems(ANTHROPIC, body, body["model"]) == []


@pytest.mark.parametrize("body", GEMINI_EXAMPLES, ids=lambda b: str(len(b)))
def test_gemini_file_line_examples_from_the_docs_pass(body):
    assert _problems(GEMINI, body, "gemini-2.5-flash") == []


def test_an_unknown_parameter_names_the_field_a_close_name_and_the_sdk_version():
    [problem] = _problems(OPENAI, {**OPENAI_CHAT_EXAMPLES[0], "max_tokenz": 5}, "gpt-4.1")
    assert "field 'max_tokenz'" in problem and "did you mean 'max_tokens'?" in problem
    assert f"openai {sdk_version('openai')}'s CompletionCreateParamsNonStreaming" in problem


def test_a_wrong_type_says_what_type_the_field_takes():
    [problem] = _problems(OPENAI, {**OPENAI_CHAT_EXAMPLES[0], "temperature": "0.5"}, "gpt-4.1")
    assert "field 'temperature' should be a number, not a string" in problem


def test_a_wrong_message_role_lists_the_roles_and_a_nested_unknown_field_is_located():
    body = {"model": "gpt-4.1", "messages": [{"role": "sytem", "content": "x"}]}
    [problem] = _problems(OPENAI, body, "gpt-4.1")
    assert "field 'messages[0].role' is 'sytem'; use" in problem and "'system'" in problem
    body = {"model": "gpt-4.1", "messages": [{"role": "user", "content": "x", "name ": "a"}]}
    assert "field 'messages[0].name '" in _problems(OPENAI, body, "gpt-4.1")[0]


def test_a_missing_required_field_is_named():
    body = {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "Hello"}]}
    [problem] = _problems(ANTHROPIC, body, "claude-sonnet-4-5")
    assert "field 'max_tokens' is required and missing" in problem
    assert f"anthropic {sdk_version('anthropic')}" in problem


def test_gemini_fields_pass_in_either_spelling_in_the_right_place():
    # Google's batch guide shows this file line; proto JSON reads snake_case and camelCase alike.
    documented = {
        "contents": [{"parts": [{"text": "Describe the process of photosynthesis."}]}],
        "generation_config": {"temperature": 0.7},
    }
    assert _problems(GEMINI, documented, "gemini-2.5-flash") == []
    nested = {"contents": documented["contents"], "generationConfig": {"thinking_config": {"thinking_budget": 0}}}
    assert _problems(GEMINI, nested, "gemini-2.5-flash") == []


def test_a_gemini_generation_field_at_the_top_of_the_request_is_refused_unless_skipped():
    # The batch service: "no such field: 'thinking_config'" (inspect_ai#3257).
    body = {"contents": [{"parts": [{"text": "x"}]}], "thinking_config": {"thinkingBudget": 0}}
    [problem] = _problems(GEMINI, body, "gemini-2.5-flash")
    assert "field 'thinking_config' belongs under generationConfig" in problem
    skipped = PreflightSettings(skip=frozenset({"gemini_field_placement"}))
    assert "is not a field this request accepts" in _problems(GEMINI, body, "gemini-2.5-flash", skipped)[0]
    twice = {"contents": body["contents"], "generationConfig": {}, "generation_config": {"temperature": 0.1}}
    assert (
        "is given twice ('generationConfig' and 'generation_config')" in _problems(GEMINI, twice, "gemini-2.5-flash")[0]
    )


def test_reasoning_models_refuse_max_tokens_and_a_custom_temperature():
    body = {"model": "gpt-5-mini", "messages": [{"role": "user", "content": "x"}], "max_tokens": 100}
    [problem] = _problems(OPENAI, body, "gpt-5-mini")
    assert "field 'max_tokens'" in problem and "rename it to max_completion_tokens" in problem
    body = {"model": "o3-2025-04-16", "messages": [{"role": "user", "content": "x"}], "temperature": 0.2}
    assert (
        "field 'temperature' is 0.2; reasoning models take only the default"
        in _problems(OPENAI, body, body["model"])[0]
    )
    skipped = PreflightSettings(skip=frozenset({"reasoning_temperature"}))
    assert _problems(OPENAI, body, body["model"], skipped) == []


def test_a_model_served_only_on_the_responses_api_is_refused_on_chat_completions():
    """Only when the job asks for chat completions: left alone, such a model goes to Responses."""
    body = {"model": "gpt-5-pro", "messages": [{"role": "user", "content": "x"}]}
    on_chat = RequestSpec(model="gpt-5-pro", kind=Kind.CHAT, options={"endpoint": "chat"})
    [problem] = Preflight(OPENAI, on_chat).body_problems(body, "gpt-5-pro")
    assert "field 'model' is served only on /v1/responses" in problem and "endpoint" in problem
    skipped = PreflightSettings(skip=frozenset({"responses_only"}))
    assert Preflight(OPENAI, on_chat, skipped).body_problems(body, "gpt-5-pro") == []
    automatic = RequestSpec(model="gpt-5-pro", kind=Kind.CHAT)
    assert Preflight(OPENAI, automatic).body_problems(OPENAI.build_body(automatic, "x"), "gpt-5-pro") == []


def test_strict_json_schema_needs_closed_objects_and_every_property_required():
    body = dict(OPENAI_CHAT_EXAMPLES[3])
    schema = {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}, "required": ["a"]}
    body["response_format"] = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": True}}
    problems = _problems(OPENAI, body, "gpt-4o")
    assert any('needs "additionalProperties": false' in p for p in problems)
    assert any("field 'response_format.json_schema.schema.required' misses ['b']" in p for p in problems)
    body["response_format"]["json_schema"]["strict"] = False  # not enforced: OpenAI does not check it
    assert _problems(OPENAI, body, "gpt-4o") == []


def test_an_output_limit_above_the_models_is_refused():
    body = {"model": "claude-3-5-haiku", "max_tokens": 20000, "messages": [{"role": "user", "content": "x"}]}
    assert "above the model's output limit of 8,192" in _problems(ANTHROPIC, body, "claude-3-5-haiku")[0]


def test_unknown_models_pass_every_model_rule_with_a_log_line(caplog):
    body = {"model": "my-finetune", "messages": [{"role": "user", "content": "x"}], "max_tokens": 10**6}
    with caplog.at_level(logging.INFO):
        assert _problems(OPENAI, body, "my-finetune") == []
    assert "'my-finetune' is not in the pre-flight model table" in caplog.text


def test_the_model_table_matches_dated_names_and_takes_overrides():
    table = ModelTable({"my-model": {"context_window": 32_000}, "gpt-4o": {"reasoning": True}})
    assert table.facts("gpt-4o-mini-2024-07-18") == table.facts("gpt-4o-mini")
    assert table.facts("models/gemini-2.5-flash").context_window == 1_048_576
    assert table.facts("my-model").context_window == 32_000
    assert table.facts("gpt-4o").reasoning and table.facts("gpt-4o").context_window == 128_000
    with pytest.raises(ConfigurationError, match="context_window, max_output"):
        ModelTable({"m": {"window": 1}})


def test_settings_refuse_unknown_rules_and_keys():
    assert PreflightSettings.coerce(False).enabled is False
    assert PreflightSettings.coerce({"skip": ["strict_schema"]}).skip == {"strict_schema"}
    with pytest.raises(ConfigurationError, match="unknown rule"):
        PreflightSettings.coerce({"skip": ["nope"]})
    with pytest.raises(ConfigurationError, match="preflight must be"):
        PreflightSettings.coerce({"rules": []})
    assert "context_window" in RULES


# Through prepare_chunks: once per template, per item where items differ ---------------------
def _prepare(tmp_path, items, backend, spec, template="{text}", **kwargs):
    return prepare_chunks(
        items,
        id_field="id",
        spec=spec,
        backend=backend,
        out_dir=tmp_path / "requests",
        template=PromptTemplate(template) if template else None,
        **kwargs,
    )


def test_a_template_that_makes_every_body_wrong_fails_once_for_every_item(tmp_path):
    items = [{"id": str(i), "text": "x"} for i in range(1000)]
    with pytest.raises(InvalidInputError) as err:
        _prepare(tmp_path, items, OPENAI, _spec("gpt-4.1-mini", temperature="warm"))
    assert err.value.total == 1
    assert str(err.value).startswith("every item: field 'temperature' should be a number, not a string")
    assert "(set in parameters=)" in str(err.value)
    assert not (tmp_path / "requests").exists()  # nothing read or written


def test_item_bodies_are_checked_one_by_one_naming_the_item(tmp_path):
    good = {"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": "x"}]}
    items = [
        {"id": "ok", "body": good},
        {"id": "bad", "body": {**good, "top_k": 3}},
        {"id": "embed", "body": {**good, "model": "text-embedding-3-small"}},
    ]
    with pytest.raises(InvalidInputError) as err:
        _prepare(tmp_path, items, OPENAI, _spec("gpt-4.1-mini"), template=None, body_field="body")
    message = str(err.value)
    assert "item 'bad': (its 'body') field 'top_k' is not a field this request accepts" in message
    assert "item 'embed': (its 'body') field 'model': model 'text-embedding-3-small' is not a chat model" in message


@pytest.mark.parametrize("backend", [OPENAI, ANTHROPIC, GEMINI], ids=lambda b: b.provider)
def test_a_5_mb_item_is_over_every_context_window(tmp_path, backend):
    model = {"openai": "gpt-4.1-mini", "anthropic": "claude-sonnet-4-5", "gemini": "gemini-2.5-flash"}
    items = [{"id": "small", "text": "hello"}, {"id": "huge", "text": "lorem ipsum " * 440_000}]
    with pytest.raises(InvalidInputError) as err:
        _prepare(tmp_path, items, backend, _spec(model[backend.provider]))
    assert err.value.total == 1
    assert str(err.value).startswith("item 'huge': its request is about 1,3")
    assert "context window of" in str(err.value) and "shorten or split the item's text" in str(err.value)


def test_requests_near_the_window_are_reported_not_refused(tmp_path, caplog):
    settings = PreflightSettings(models={"tiny": {"context_window": 1000}})
    spec = _spec("tiny")
    check = Preflight(OPENAI, spec, settings)
    items = [{"id": "near", "text": "x" * 3700}, {"id": "short", "text": "x"}]
    with caplog.at_level(logging.WARNING):
        prepared = _prepare(tmp_path, items, OPENAI, spec, preflight=check)
    assert prepared.item_count == 2 and check.sizes.near == [("near", check.sizes.largest_tokens)]
    assert "1 request(s) are near tiny's context window of 1,000 tokens" in caplog.text


def test_switched_off_the_check_lets_every_body_through(tmp_path):
    spec = _spec("gpt-4.1-mini", temperature="warm")
    prepared = _prepare(
        tmp_path,
        [{"id": "a", "text": "x"}],
        OPENAI,
        spec,
        preflight=Preflight(OPENAI, spec, PreflightSettings(enabled=False)),
    )
    assert prepared.item_count == 1


def test_the_shipped_backends_bodies_pass_for_every_kind(tmp_path):
    schema = ResponseSchema.coerce({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]})
    cases = [
        (OPENAI, RequestSpec("gpt-4.1-mini", Kind.CHAT, "sys", {"max_tokens": 5}, schema)),
        (OPENAI, RequestSpec("text-embedding-3-small", Kind.EMBEDDING, parameters={"dimensions": 8})),
        (ANTHROPIC, RequestSpec("claude-haiku-4-5", Kind.CHAT, "sys", {"max_tokens": 5}, schema)),
        (ANTHROPIC, RequestSpec("claude-sonnet-4-5", Kind.CHAT, "sys", options={"cache_system_prompt": True})),
        (GEMINI, RequestSpec("gemini-2.5-flash", Kind.CHAT, "sys", {"maxOutputTokens": 5, "temperature": 0.2}, schema)),
        (GEMINI, RequestSpec("gemini-embedding-001", Kind.EMBEDDING, parameters={"dimensions": 8})),
    ]
    for backend, spec in cases:
        Preflight(backend, spec).check_template()


def test_a_content_block_problem_is_reported_inside_the_list_not_as_a_string_expected():
    body = {"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "text"}]}]}
    judge = body_type("anthropic", Kind.CHAT).judge
    assert _problems(ANTHROPIC, body, "claude-haiku-4-5") == [
        f"field 'messages[0].content[0].text' is required and missing; add it (judged by {judge})"
    ]
    body["messages"][0]["content"] = [{"type": "txt", "text": "x"}]
    [problem] = _problems(ANTHROPIC, body, "claude-haiku-4-5")
    assert "field 'messages[0].content[0].type' is 'txt'; use 'text' or" in problem
