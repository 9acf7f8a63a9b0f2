"""The Responses API inside an OpenAI batch: lines with ``"url": "/v1/responses"`` in and out.

Shapes, from the ``openai`` SDK's types (openai-python 3.6x; read, never imported here):

- request ``ResponseCreateParams``: ``model``, ``input`` (a string or a list of input items, each
  ``{"role", "content"}`` with a string or ``input_text`` parts), ``instructions`` (the system
  message), ``max_output_tokens``, ``text.format`` (``{"type": "json_schema", "name", "schema",
  "strict"}``, ``json_object`` or ``text``), ``temperature``, ``top_p``, ``reasoning``...;
- result body ``Response``: ``object: "response"``, ``status`` ``completed`` or ``incomplete``
  (with ``incomplete_details.reason: "max_output_tokens"``), ``output`` holding one ``message``
  item with an ``output_text`` part, ``usage.input_tokens`` / ``output_tokens`` with their details.

Strict mode refuses a body the way the endpoint does (400 or 404 in the error file, as for chat
completions, ``strict.py``): unknown or wrongly typed parameters (the types of
``ResponseCreateParamsBase``), a model not served, a non-default ``temperature`` / ``top_p`` on
a reasoning model (reasoning guide), strict schemas breaking the Structured Outputs rules.
"""

from __future__ import annotations

import fnmatch
from typing import Any

from airflow_llm_batch.emulator import fake_llm
from airflow_llm_batch.emulator.openai import lines
from airflow_llm_batch.emulator.openai.strict import (
    _REASONING,
    RESPONSES_ONLY,
    LineRefusal,
    _check_range,
    _check_type,
    strict_schema_problem,
)

ENDPOINT = "/v1/responses"

# JSON types per top-level parameter of ``ResponseCreateParamsBase`` (openai-python 3.63.0).
RESPONSES_PARAMS: dict[str, tuple[str, ...]] = {
    "access_programs": ("object",),
    "background": ("boolean", "null"),
    "background_options": ("object",),
    "context_management": ("array", "null"),
    "conversation": ("string", "object", "null"),
    "image": ("object",),
    "include": ("array", "null"),
    "input": ("string", "array"),
    "instructions": ("string", "null"),
    "max_output_tokens": ("integer", "null"),
    "max_tool_calls": ("integer", "null"),
    "metadata": ("object", "null"),
    "model": ("string",),
    "moderation": ("object", "null"),
    "parallel_tool_calls": ("boolean", "null"),
    "previous_response_id": ("string", "null"),
    "prompt": ("object", "null"),
    "prompt_cache_key": ("string", "null"),
    "prompt_cache_options": ("object",),
    "prompt_cache_retention": ("string", "null"),
    "reasoning": ("object", "null"),
    "safety_identifier": ("string", "null"),
    "service_tier": ("string", "null"),
    "store": ("boolean", "null"),
    "stream": ("boolean", "null"),
    "stream_options": ("object", "null"),
    "temperature": ("number", "null"),
    "text": ("object",),
    "tool_choice": ("string", "object"),
    "tools": ("array",),
    "top_logprobs": ("integer", "null"),
    "top_p": ("number", "null"),
    "truncation": ("string", "null"),
    "user": ("string",),
}
TEXT_FORMATS = ("text", "json_object", "json_schema")


# Requests -----------------------------------------------------------------------------------------
def texts(body: dict[str, Any]) -> tuple[str | None, str]:
    """The system text (``instructions`` and system/developer items) and the user text of a body."""
    system = [body["instructions"]] if isinstance(body.get("instructions"), str) else []
    raw = body.get("input")
    if isinstance(raw, str):
        return ("\n".join(system) or None), raw
    user = []
    for item in raw if isinstance(raw, list) else []:
        if not isinstance(item, dict):
            continue
        content = item.get("content")
        text = content if isinstance(content, str) else _parts_text(content)
        if item.get("role") in ("system", "developer"):
            system.append(text)
        elif item.get("role") == "user":
            user.append(text)
    return ("\n".join(system) or None), "\n".join(user)


def _parts_text(content: Any) -> str:
    parts = content if isinstance(content, list) else []
    return "\n".join(str(p.get("text", "")) for p in parts if isinstance(p, dict) and p.get("type") == "input_text")


def schema_of(body: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON schema ``text.format`` asks the output to follow, if any."""
    text = body.get("text")
    fmt = text.get("format") if isinstance(text, dict) else None
    if not isinstance(fmt, dict):
        return None
    if fmt.get("type") == "json_schema":
        return fmt["schema"] if isinstance(fmt.get("schema"), dict) else {"type": "object"}
    if fmt.get("type") == "json_object":
        return {"type": "object", "properties": {"summary": {"type": "string"}}, "required": ["summary"]}
    return None


# Results ------------------------------------------------------------------------------------------
def response_body(
    batch_id: str, custom_id: str, body: dict[str, Any], invalid_output: bool, created: int
) -> tuple[dict[str, Any], lines.Usage]:
    """A ``Response`` object answering the request with the emulator's fake LLM."""
    system, user = texts(body)
    schema = schema_of(body)
    limit = body.get("max_output_tokens")
    reply = fake_llm.chat(system, user, schema, limit if isinstance(limit, int) else None)
    text = fake_llm.broken_output(schema, user) if invalid_output and schema is not None else reply.text
    output_tokens = fake_llm.count_tokens(text)
    cut = reply.finish_reason == "length"
    message = {
        "id": f"msg_{lines.short_id('msg', batch_id, custom_id)}",
        "type": "message",
        "status": "incomplete" if cut else "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
    }
    response = {
        "id": f"resp_{lines.short_id('resp', batch_id, custom_id)}",
        "object": "response",
        "created_at": created,
        "status": "incomplete" if cut else "completed",
        "completed_at": None if cut else created,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if cut else None,
        "instructions": body.get("instructions"),
        "max_output_tokens": limit,
        "model": body.get("model"),
        "output": [message],
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "service_tier": "default",
        "store": True,
        "temperature": body.get("temperature", 1.0),
        "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": body.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": {
            "input_tokens": reply.input_tokens,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": reply.input_tokens + output_tokens,
        },
        "user": None,
        "metadata": {},
    }
    return response, lines.Usage(reply.input_tokens, output_tokens)


# Strict mode --------------------------------------------------------------------------------------
def check_line(body: dict[str, Any], served_models: tuple[str, ...] | list[str]) -> LineRefusal | None:
    """The refusal of one Responses body, or None when the endpoint accepts it."""
    for name in body:
        if name not in RESPONSES_PARAMS:
            return LineRefusal(400, f"Unrecognized request argument supplied: {name}")
    if "model" not in body:
        return LineRefusal(400, "Missing required parameter: 'model'.", "model", "missing_required_parameter")
    for name, value in body.items():
        # (temperature, top_p, top_logprobs: the same ranges as chat completions, ``strict.RANGES``)
        refusal = _check_type(name, value, RESPONSES_PARAMS[name]) or _check_range(name, value)
        if refusal is not None:
            return refusal
    model = str(body["model"])
    served = any(fnmatch.fnmatchcase(model, p) for p in (*served_models, *RESPONSES_ONLY))
    if not served or "embedding" in model:
        return LineRefusal(
            404, f"The model `{model}` does not exist or you do not have access to it.", None, "model_not_found"
        )
    if _REASONING.match(model):
        for name in ("temperature", "top_p"):
            if body.get(name) is not None and body[name] != 1:
                return LineRefusal(
                    400, f"Unsupported parameter: '{name}' is not supported with this model.", name, None
                )
    return _check_text_format(body.get("text"))


def _check_text_format(text: Any) -> LineRefusal | None:
    fmt = text.get("format") if isinstance(text, dict) else None
    if fmt is None:
        return None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind not in TEXT_FORMATS:
        supported = ", ".join(f"'{f}'" for f in TEXT_FORMATS)
        return LineRefusal(400, f"Invalid value: '{kind}'. Supported values are: {supported}.", "text.format.type")
    if kind != "json_schema":
        return None
    for name in ("name", "schema"):
        if name not in fmt:
            message = f"Missing required parameter: 'text.format.{name}'."
            return LineRefusal(400, message, f"text.format.{name}", "missing_required_parameter")
    problem = strict_schema_problem(fmt["schema"], ()) if fmt.get("strict") is True else None
    if problem is None:
        return None
    return LineRefusal(400, f"Invalid schema for response_format '{fmt['name']}': {problem}", "text.format.schema")
