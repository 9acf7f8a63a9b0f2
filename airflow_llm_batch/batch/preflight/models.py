"""What the SDKs' types cannot say about a model: a small dated table, and the rules that use it.

Each row holds the model's context window and output limit in tokens, and whether it is a
reasoning model, from the providers' model pages as known in ``MODELS_AS_OF`` (written without
internet access, so not re-checked when committed):

- OpenAI: https://platform.openai.com/docs/models (each model's "Context window" and "Max output
  tokens"); reasoning models: https://platform.openai.com/docs/guides/reasoning.
- Anthropic: https://docs.anthropic.com/en/docs/about-claude/models/overview ("Context window",
  "Max output").
- Google: https://ai.google.dev/gemini-api/docs/models ("Input token limit", "Output token limit").

A model the table does not know passes every rule here (a log line says so): the table is a
safety net for the common models, never a list of what may be used. Rows are overridden or
added with ``preflight={"models": {"my-model": {"context_window": 32000}}}``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from airflow_llm_batch.exceptions import ConfigurationError

MODELS_AS_OF = "2025-11"


@dataclass(frozen=True)
class ModelFacts:
    """What one model (family) accepts.

    :param context_window: input plus output tokens one request may hold (for embedding models:
        the input tokens of one input).
    :param max_output: the most output tokens a request may ask for; ``None``: not checked.
    :param reasoning: an OpenAI reasoning model (``max_completion_tokens``, default temperature).
    :param responses_only: served on ``/v1/responses`` only (not on chat completions).
    :param truncates: input over the window is cut by the service rather than refused.
    """

    context_window: int
    max_output: int | None = None
    reasoning: bool = False
    responses_only: bool = False
    truncates: bool = False


# (regex matched against the model name without a ``models/`` prefix or a date suffix, facts).
SHIPPED_MODELS: tuple[tuple[str, ModelFacts], ...] = (
    # OpenAI
    (r"gpt-5(\.\d+)?-pro", ModelFacts(400_000, 272_000, reasoning=True, responses_only=True)),
    (r"gpt-5(\.\d+)?(-mini|-nano)?", ModelFacts(400_000, 128_000, reasoning=True)),
    (r"gpt-5(\.\d+)?-chat(-latest)?", ModelFacts(128_000, 16_384)),
    (r"gpt-4\.1(-mini|-nano)?", ModelFacts(1_047_576, 32_768)),
    (r"gpt-4o(-mini)?", ModelFacts(128_000, 16_384)),
    (r"o1|o3|o3-pro|o4-mini|o3-mini", ModelFacts(200_000, 100_000, reasoning=True)),
    (r"text-embedding-3-(small|large)|text-embedding-ada-002", ModelFacts(8_192)),
    # Anthropic
    (r"claude-(opus|sonnet|haiku)-4-5", ModelFacts(200_000, 64_000)),
    (r"claude-sonnet-4|claude-3-7-sonnet", ModelFacts(200_000, 64_000)),
    (r"claude-opus-4(-1)?", ModelFacts(200_000, 32_000)),
    (r"claude-3-5-haiku", ModelFacts(200_000, 8_192)),
    (r"claude-3-haiku", ModelFacts(200_000, 4_096)),
    # Google
    (r"gemini-2\.5-(pro|flash|flash-lite)", ModelFacts(1_048_576, 65_536)),
    (r"gemini-2\.0-flash(-lite)?", ModelFacts(1_048_576, 8_192)),
    # Gemini embeddings cut longer input by default (autoTruncate), so the window is only reported.
    (r"gemini-embedding-001|text-embedding-004", ModelFacts(2_048, truncates=True)),
)
_DATE_SUFFIX = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8}|latest|preview(-[\w-]+)?)$")


class ModelTable:
    """The shipped rows, then the user's: ``facts(model)`` or ``None`` for a model not in it."""

    def __init__(self, overrides: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self._exact: dict[str, ModelFacts] = {}
        self._patterns = [(re.compile(pattern), facts) for pattern, facts in SHIPPED_MODELS]
        for model, fields in (overrides or {}).items():
            base = self.facts(model) or ModelFacts(context_window=0)
            try:
                self._exact[model] = replace(base, **dict(fields))
            except TypeError as err:
                raise ConfigurationError(
                    f"preflight models[{model!r}]: {err}; the fields are context_window, max_output, "
                    "reasoning, responses_only, truncates"
                ) from None

    def facts(self, model: str) -> ModelFacts | None:
        if model in self._exact:
            return self._exact[model]
        name = model.removeprefix("models/").rsplit("/", 1)[-1]
        for candidate in (name, _DATE_SUFFIX.sub("", name)):
            for pattern, facts in self._patterns:
                if pattern.fullmatch(candidate):
                    return facts
        return None


# The rules, by the name that switches one off (``preflight={"skip": ["reasoning_temperature"]}``).
RULES = {
    "sdk_types": "the body fits the installed SDK's request type",
    "reasoning_max_tokens": "OpenAI reasoning models take max_completion_tokens, not max_tokens",
    "reasoning_temperature": "OpenAI reasoning models take only the default temperature (1)",
    "responses_only": "models served only on /v1/responses are refused on chat completions",
    "strict_schema": "OpenAI strict json_schema: additionalProperties false and every property required",
    "gemini_field_placement": "Gemini generation fields under generationConfig, each field in one spelling",
    "max_output": "the output limit asked for is within the model's",
    "context_window": "each request's estimated input fits the model's context window",
    "model_kind": "chat models for chat, embedding models for embeddings",
}


def openai_rules(body: Mapping[str, Any], facts: ModelFacts, skip: frozenset[str]) -> list[tuple[str, str]]:
    """Problems of an OpenAI chat body the SDK's types allow, as (field, what to change)."""
    problems: list[tuple[str, str]] = []
    if facts.reasoning and "reasoning_max_tokens" not in skip and "max_tokens" in body:
        # "max_tokens ... is not compatible with o-series models" (OpenAI API reference, chat create).
        problems.append(("max_tokens", "is refused by reasoning models; rename it to max_completion_tokens"))
    temperature = body.get("temperature")
    if facts.reasoning and "reasoning_temperature" not in skip and temperature is not None and temperature != 1:
        # Reasoning models support only the default temperature (OpenAI reasoning guide).
        problems.append(("temperature", f"is {temperature}; reasoning models take only the default (1): remove it"))
    if facts.responses_only and "responses_only" not in skip:
        # Served only on /v1/responses (reported: BerriAI/litellm#15258, langchain-ai/langchain#34306).
        problems.append(
            (
                "model",
                "is served only on /v1/responses, not chat completions; set endpoint='responses' (or leave it unset)",
            )
        )
    return problems


def output_limit_problem(body: Mapping[str, Any], facts: ModelFacts) -> tuple[str, str] | None:
    """An output limit above the model's (every provider answers that with 400)."""
    if facts.max_output is None:
        return None
    for name in ("max_completion_tokens", "max_tokens", "max_output_tokens"):
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > facts.max_output:
            return name, f"is {value:,}, above the model's output limit of {facts.max_output:,} tokens; lower it"
    generation = body.get("generationConfig")
    value = generation.get("maxOutputTokens") if isinstance(generation, Mapping) else None
    if isinstance(value, int) and not isinstance(value, bool) and value > facts.max_output:
        return "generationConfig.maxOutputTokens", f"is {value:,}, above the model's limit of {facts.max_output:,}"
    return None


def strict_schema_problems(body: Mapping[str, Any]) -> list[tuple[str, str]]:
    """OpenAI structured outputs with ``strict: true``: every object schema must set
    ``additionalProperties: false`` and list every property in ``required`` (OpenAI structured
    outputs guide, "Supported schemas"); the service answers 400 otherwise."""
    response_format = body.get("response_format")
    if not isinstance(response_format, Mapping) or response_format.get("type") != "json_schema":
        return []
    json_schema = response_format.get("json_schema")
    if not isinstance(json_schema, Mapping) or json_schema.get("strict") is not True:
        return []
    problems: list[tuple[str, str]] = []
    _walk_schema(json_schema.get("schema"), "response_format.json_schema.schema", problems)
    return problems[:3]


def _walk_schema(schema: Any, path: str, problems: list[tuple[str, str]]) -> None:
    if isinstance(schema, list):
        for index, part in enumerate(schema):
            _walk_schema(part, f"{path}[{index}]", problems)
        return
    if not isinstance(schema, Mapping):
        return
    properties = schema.get("properties")
    if schema.get("type") == "object" or isinstance(properties, Mapping):
        if schema.get("additionalProperties") is not False:
            problems.append((path, 'needs "additionalProperties": false under strict: true; add it'))
        missing = sorted(set(properties or {}) - set(schema.get("required") or ()))
        if missing:
            problems.append(
                (
                    f"{path}.required",
                    f"misses {missing}; strict: true needs every property listed (make optional "
                    'ones nullable: "type": ["string", "null"])',
                )
            )
    for key in ("properties", "$defs", "definitions"):
        for name, part in (schema.get(key) or {}).items():
            _walk_schema(part, f"{path}.{key}.{name}", problems)
    for key in ("items", "anyOf", "allOf", "oneOf"):
        if key in schema:
            _walk_schema(schema[key], f"{path}.{key}", problems)
