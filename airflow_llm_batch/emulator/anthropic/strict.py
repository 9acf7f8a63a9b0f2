"""Strict mode for Anthropic: the ``params`` a Messages request may carry, checked when the batch runs.

Anthropic validates each request's ``params`` asynchronously: "validation of the params object for
each message request is performed asynchronously, and validation errors are returned when
processing of the entire batch has ended" (docs.anthropic.com, Message Batches, batch limitations).
A bad request therefore comes back as an ``errored`` result with ``invalid_request_error``, and only
the envelope (``custom_id``, ``params`` being an object, counts, size) is refused at create.

The parameters and their types are those of ``MessageCreateParamsNonStreaming`` in the ``anthropic``
SDK 2.17.0 (``types/message_create_params.py``, generated from Anthropic's OpenAPI spec): read and
written down here by hand, never imported. The messages follow the API's validation wording
("max_tokens: Field required", "temperature: Extra inputs are not permitted").
"""

from __future__ import annotations

from typing import Any

from airflow_llm_batch.emulator.openai.strict import json_type

# Parameter -> accepted JSON types ("null" where the SDK types it Optional).
PARAMS: dict[str, tuple[str, ...]] = {
    "max_tokens": ("integer",),
    "messages": ("array",),
    "model": ("string",),
    "cache_control": ("object", "null"),
    "container": ("object", "string", "null"),
    "diagnostics": ("object", "null"),
    "inference_geo": ("string", "null"),
    "metadata": ("object",),
    "output_config": ("object",),
    "service_tier": ("string",),
    "speed": ("string", "null"),
    "stop_sequences": ("array",),
    "system": ("string", "array"),
    "thinking": ("object",),
    "tool_choice": ("object",),
    "tools": ("array",),
    "user_profile_id": ("string",),
    "workspace_id": ("string",),
    "stream": ("boolean",),
}
REQUIRED = ("model", "max_tokens", "messages")
ROLES = ("user", "assistant", "system")
SERVICE_TIERS = ("auto", "standard_only")
_TYPE_WORDS = {
    "integer": "a valid integer",
    "string": "a valid string",
    "array": "a valid list",
    "object": "a valid dictionary",
    "boolean": "a valid boolean",
}


def params_problem(params: dict[str, Any]) -> str | None:
    """Why the Messages endpoint refuses these params (``invalid_request_error``), or None."""
    for name in params:
        if name not in PARAMS:
            return f"{name}: Extra inputs are not permitted"
    for name in REQUIRED:
        if name not in params:
            return f"{name}: Field required"
    for name, value in params.items():
        kind = json_type(value)
        if kind not in PARAMS[name]:
            expected = " or ".join(_TYPE_WORDS[t] for t in PARAMS[name] if t != "null")
            return f"{name}: Input should be {expected}"
    if params["max_tokens"] < 1:
        # max_tokens 0 (cache pre-warming) is refused in batches (batch guide).
        return f"max_tokens: Input should be greater than or equal to 1 (got {params['max_tokens']})"
    if params.get("stream"):
        return "stream: streaming is not supported in Message Batches"
    if "service_tier" in params and params["service_tier"] not in SERVICE_TIERS:
        return f"service_tier: Input should be 'auto' or 'standard_only' (got {params['service_tier']!r})"
    return _messages_problem(params["messages"]) or _system_problem(params.get("system")) or _format_problem(params)


def _messages_problem(messages: list[Any]) -> str | None:
    if not messages:
        return "messages: List should have at least 1 item after validation, not 0"
    for index, message in enumerate(messages):
        where = f"messages.{index}"
        if not isinstance(message, dict):
            return f"{where}: Input should be a valid dictionary"
        if message.get("role") not in ROLES:
            return f"{where}.role: Input should be 'user', 'assistant' or 'system'"
        content = message.get("content")
        if not isinstance(content, str | list):
            problem = "Field required" if content is None else "Input should be a valid string or list"
            return f"{where}.content: {problem}"
        if isinstance(content, list):
            for block_index, block in enumerate(content):
                if not isinstance(block, dict) or not isinstance(block.get("type"), str):
                    return f"{where}.content.{block_index}.type: Field required"
    return None


def _system_problem(system: Any) -> str | None:
    if not isinstance(system, list):
        return None
    for index, block in enumerate(system):
        if not isinstance(block, dict) or block.get("type") != "text" or not isinstance(block.get("text"), str):
            return f"system.{index}: Input should be a text block {{'type': 'text', 'text': ...}}"
        cache_control = block.get("cache_control")
        if cache_control is not None and (
            not isinstance(cache_control, dict) or cache_control.get("type") != "ephemeral"
        ):
            return f"system.{index}.cache_control.type: Input should be 'ephemeral'"
    return None


def _format_problem(params: dict[str, Any]) -> str | None:
    output_format = params.get("output_config", {}).get("format")
    if output_format is None:
        return None
    if (
        not isinstance(output_format, dict)
        or output_format.get("type") != "json_schema"
        or not isinstance(output_format.get("schema"), dict)
    ):
        return "output_config.format: expected {'type': 'json_schema', 'schema': {...}}"
    return None
