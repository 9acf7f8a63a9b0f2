"""Anthropic batch result lines: one ``{"custom_id", "result"}`` object per request.

Shapes follow ``reference/provider-apis.md`` section 3.4 (``MessageBatchIndividualResponse``): a
``succeeded`` result carries a full Message, an ``errored`` one a full ``ErrorResponse``
(``{"type": "error", "error": {type, message}, "request_id"}``, not a bare error object), and
``canceled`` / ``expired`` carry nothing else. The SDK's JSONL decoder breaks on a blank line, so
the models join these with single newlines and never emit an empty one.
"""

from __future__ import annotations

import json
import re
from typing import Any

from airflow_llm_batch.emulator import fake_llm
from airflow_llm_batch.emulator.openai.lines import short_id

# Error kind of the package's taxonomy -> (Anthropic error type, message). ``server_error`` picks
# between api_error and overloaded_error per item (both mean "try again"); ``content_filtered`` is
# not an error at Anthropic but a succeeded message with stop_reason "refusal".
ITEM_ERRORS: dict[str, tuple[str, str]] = {
    "rate_limited": (
        "rate_limit_error",
        "This request would exceed the rate limit for your organization. (emulated)",
    ),
    "server_error": ("api_error", "Internal server error. (emulated)"),
    "invalid_request": (
        "invalid_request_error",
        "messages.0.content: the request is invalid for this model. (emulated)",
    ),
    "context_length": ("invalid_request_error", "prompt is too long: 215000 tokens > 200000 maximum (emulated)"),
}
OVERLOADED = ("overloaded_error", "Overloaded. (emulated)")
REFUSAL_EXPLANATION = "The model declined to answer this request. (emulated)"

# JSON-schema keywords that ``anthropic.transform_schema`` cannot send and moves into the
# description as ``{minimum: 1, maximum: 5}``; a real model reads them there, so the emulator does.
_HINT_KEYWORDS = (
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
)
_TRAILING_HINTS = re.compile(r"\{([^{}]*)\}\s*$")


def dumps(line: dict[str, Any]) -> str:
    return json.dumps(line, separators=(",", ":"), ensure_ascii=False)


def not_run_line(custom_id: str, result_type: str) -> dict[str, Any]:
    """A request that a cancel (``canceled``) or the 24 h window (``expired``) stopped before it ran."""
    return {"custom_id": custom_id, "result": {"type": result_type}}


def errored_line(batch_id: str, custom_id: str, kind: str) -> dict[str, Any]:
    """A request the Messages endpoint refused; the error is a full ``ErrorResponse``."""
    error_type, message = ITEM_ERRORS[kind]
    if kind == "server_error" and int(short_id("overloaded", custom_id), 16) % 2:
        error_type, message = OVERLOADED
    return {
        "custom_id": custom_id,
        "result": {
            "type": "errored",
            "error": {
                "type": "error",
                "error": {"type": error_type, "message": message},
                "request_id": f"req_{short_id('req', batch_id, custom_id)}",
            },
        },
    }


def invalid_request_line(batch_id: str, custom_id: str, message: str) -> dict[str, Any]:
    """A request whose params the Messages endpoint refused (strict mode), as an ``errored`` result."""
    return {
        "custom_id": custom_id,
        "result": {
            "type": "errored",
            "error": {
                "type": "error",
                "error": {"type": "invalid_request_error", "message": message},
                "request_id": f"req_{short_id('req', batch_id, custom_id)}",
            },
        },
    }


def succeeded_line(
    batch_id: str, custom_id: str, params: dict[str, Any], invalid_output: bool, refused: bool
) -> dict[str, Any]:
    """A request the model answered (a refusal is an answer too: stop_reason ``refusal``)."""
    message = answer(batch_id, custom_id, params, invalid_output, refused)
    return {"custom_id": custom_id, "result": {"type": "succeeded", "message": message}}


def answer(
    batch_id: str, custom_id: str, params: dict[str, Any], invalid_output: bool, refused: bool
) -> dict[str, Any]:
    """The Message the emulator's fake LLM gives: native structured output, forced tool use, or text."""
    system, user = chat_texts(params)
    max_tokens = params.get("max_tokens")
    tool = forced_tool(params)
    schema = tool[1] if tool else output_schema(params)
    reply = fake_llm.chat(system, user, schema, max_tokens if isinstance(max_tokens, int) else None)
    text = fake_llm.broken_output(schema, user) if invalid_output and schema is not None else reply.text
    stop_reason = "max_tokens" if reply.finish_reason == "length" else "end_turn"
    content: list[dict[str, Any]] = [{"type": "text", "text": text}]
    stop_details = None
    if refused:
        content, stop_reason = [], "refusal"
        stop_details = {"type": "refusal", "category": None, "explanation": REFUSAL_EXPLANATION}
    elif tool is not None:
        content = [_tool_use_block(batch_id, custom_id, tool[0], text)]
        stop_reason = "tool_use" if stop_reason == "end_turn" else stop_reason
    output_tokens = 0 if refused else fake_llm.count_tokens(text)
    return {
        "id": f"msg_{short_id('msg', batch_id, custom_id)}",
        "type": "message",
        "role": "assistant",
        "model": params.get("model"),
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "stop_details": stop_details,
        "usage": {
            "input_tokens": reply.input_tokens,
            "output_tokens": output_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "service_tier": "batch",
        },
    }


def _tool_use_block(batch_id: str, custom_id: str, name: str, text: str) -> dict[str, Any]:
    try:
        tool_input = json.loads(text)
    except ValueError:
        tool_input = {}  # a tool input is always an object; a broken answer is an empty one
    if not isinstance(tool_input, dict):
        tool_input = {}
    return {
        "type": "tool_use",
        "id": f"toolu_{short_id('tool', batch_id, custom_id)}",
        "name": name,
        "input": tool_input,
    }


def chat_texts(params: dict[str, Any]) -> tuple[str | None, str]:
    """The system text and the user text of a Messages request (text blocks only)."""
    system = params.get("system")
    system_text = _content_text(system) if system is not None else None
    user_parts = [
        _content_text(message.get("content"))
        for message in params.get("messages") or []
        if isinstance(message, dict) and message.get("role") == "user"
    ]
    return system_text, "\n".join(user_parts)


def output_schema(params: dict[str, Any]) -> dict[str, Any] | None:
    """The schema of native structured output (``output_config.format``), hints restored."""
    output_format = (params.get("output_config") or {}).get("format")
    if isinstance(output_format, dict) and isinstance(output_format.get("schema"), dict):
        return honoured_schema(output_format["schema"])
    return None


def forced_tool(params: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """``(name, input_schema)`` when ``tool_choice`` forces one tool: structured output by tool use."""
    choice = params.get("tool_choice")
    if not isinstance(choice, dict) or choice.get("type") != "tool":
        return None
    for tool in params.get("tools") or []:
        if isinstance(tool, dict) and tool.get("name") == choice.get("name"):
            schema = tool.get("input_schema")
            return str(tool["name"]), honoured_schema(schema if isinstance(schema, dict) else {"type": "object"})
    return None


def honoured_schema(schema: Any) -> Any:
    """A copy of ``schema`` with the constraints ``transform_schema`` moved into descriptions put back."""
    if isinstance(schema, list):
        return [honoured_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    copy = {key: honoured_schema(value) for key, value in schema.items()}
    description = copy.get("description")
    match = _TRAILING_HINTS.search(description) if isinstance(description, str) else None
    if match:
        for pair in match.group(1).split(","):
            key, _, raw = (part.strip() for part in pair.partition(":"))
            if key in _HINT_KEYWORDS and key not in copy:
                try:
                    copy[key] = json.loads(raw)
                except ValueError:
                    continue
    return copy


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(part.get("text", "")) for part in content if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""
