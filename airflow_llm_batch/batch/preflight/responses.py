"""The model rules of an OpenAI Responses body (``/v1/responses``), beside the SDK type's check.

The installed ``openai`` package's ``ResponseCreateParamsNonStreaming`` judges the keys and their
types (``sdk_types.py``: chat completions' ``max_tokens`` is an unknown key there, the Responses
name being ``max_output_tokens``); what it cannot say, from OpenAI's documentation:

- reasoning models (o-series, gpt-5 except gpt-5-chat) take only the default ``temperature``
  and ``top_p`` (reasoning guide, "Reasoning models ... do not support temperature, top_p");
- strict ``text.format`` JSON schemas follow the same Structured Outputs rules as chat's
  ``response_format`` (structured outputs guide, "Supported schemas").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_llm_batch.batch.preflight.models import ModelFacts, strict_schema_problems


def responses_rules(body: Mapping[str, Any], facts: ModelFacts | None, skip: frozenset[str]) -> list[tuple[str, str]]:
    """Problems of a Responses body the SDK's types allow, as (field, what to change)."""
    problems: list[tuple[str, str]] = []
    if facts is not None and facts.reasoning and "reasoning_temperature" not in skip:
        for name in ("temperature", "top_p"):
            value = body.get(name)
            if value is not None and value != 1:
                problems.append((name, f"is {value}; reasoning models take only the default (1): remove it"))
    if "strict_schema" not in skip:
        problems += _strict_text_format(body)
    return problems


def _strict_text_format(body: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``text.format`` holds the chat ``json_schema`` fields flat: judged by the chat rule, renamed."""
    text = body.get("text")
    fmt = text.get("format") if isinstance(text, Mapping) else None
    if not isinstance(fmt, Mapping) or fmt.get("type") != "json_schema":
        return []
    as_chat = {"response_format": {"type": "json_schema", "json_schema": fmt}}
    return [
        (name.replace("response_format.json_schema", "text.format"), message)
        for name, message in strict_schema_problems(as_chat)
    ]
