"""OpenAI batch result lines: what goes into a finished batch's output and error files.

Shapes follow ``reference/provider-apis.md`` section 2.3 (OpenAPI ``BatchRequestOutput``): one
``{"id", "custom_id", "response", "error"}`` object a line, in both files. A successful request has
``response.status_code`` 200 and the endpoint's body; a request the model endpoint refused has its
4xx/5xx status and an ``{"error": {...}}`` body; a request never run (expired, cancelled) has
``"response": null`` and a top-level ``error``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from airflow_llm_batch.emulator import fake_llm

# Error kind of the package's taxonomy -> (HTTP status, OpenAI error type, code, param, message).
ITEM_ERRORS: dict[str, tuple[int, str, str, str | None, str]] = {
    "rate_limited": (
        429,
        "requests",
        "rate_limit_exceeded",
        None,
        "Rate limit reached for requests. Please try again later. (emulated)",
    ),
    "server_error": (
        500,
        "server_error",
        "server_error",
        None,
        "The server had an error while processing your request. Sorry about that! (emulated)",
    ),
    "invalid_request": (
        400,
        "invalid_request_error",
        "invalid_request_error",
        None,
        "The request body is invalid for this endpoint. (emulated)",
    ),
    "content_filtered": (
        400,
        "invalid_request_error",
        "content_filter",
        "prompt",
        "The response was filtered due to the prompt triggering the content management policy. (emulated)",
    ),
    "context_length": (
        400,
        "invalid_request_error",
        "context_length_exceeded",
        "messages",
        "This model's maximum context length was exceeded by your messages. (emulated)",
    ),
}

# Top-level error of a request that was never run, by the terminal status that stopped it.
NOT_RUN_ERRORS = {
    "expired": ("batch_expired", "This request could not be executed before the completion window expired."),
    "cancelled": ("batch_cancelled", "This request was not executed because the batch was cancelled."),
}


@dataclass
class Usage:
    """Token totals of the succeeded requests, as the batch object's ``usage`` reports them."""

    input_tokens: int = 0
    output_tokens: int = 0

    def to_api(self) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": self.output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": self.input_tokens + self.output_tokens,
        }


def dumps(line: dict[str, Any]) -> str:
    return json.dumps(line, separators=(",", ":"), ensure_ascii=False)


def short_id(*parts: str) -> str:
    """A stable hex id, so the same batch renders the same result ids on every read."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:24]


def success_line(
    batch_id: str,
    endpoint: str,
    custom_id: str,
    body: dict[str, Any],
    invalid_output: bool,
    created: int,
    answer: Callable[[str, str, dict[str, Any], bool, int], tuple[dict[str, Any], Usage]] | None = None,
) -> tuple[dict[str, Any], Usage]:
    """The output-file line of a request that succeeded, and the tokens it used; ``answer`` builds
    the body of an endpoint this module does not know (``responses_api.response_body``)."""
    if answer is not None:
        response_body, usage = answer(batch_id, custom_id, body, invalid_output, created)
    elif endpoint == "/v1/embeddings":
        response_body, usage = embedding_body(body)
    else:
        response_body, usage = chat_completion_body(batch_id, custom_id, body, invalid_output, created)
    line = {
        "id": f"batch_req_{short_id(batch_id, custom_id)}",
        "custom_id": custom_id,
        "response": {
            "status_code": 200,
            "request_id": f"req_{short_id('req', batch_id, custom_id)}",
            "body": response_body,
        },
        "error": None,
    }
    return line, usage


def http_error_line(batch_id: str, custom_id: str, kind: str) -> dict[str, Any]:
    """The error-file line of a request the model endpoint refused with an HTTP error."""
    status, error_type, code, param, message = ITEM_ERRORS[kind]
    error = {"message": message, "type": error_type, "param": param, "code": code}
    return {
        "id": f"batch_req_{short_id(batch_id, custom_id)}",
        "custom_id": custom_id,
        "response": {
            "status_code": status,
            "request_id": f"req_{short_id('req', batch_id, custom_id)}",
            "body": {"error": error},
        },
        "error": None,
    }


def refused_line(batch_id: str, custom_id: str, status: int, error: dict[str, Any]) -> dict[str, Any]:
    """The error-file line of a request whose body the endpoint refused (strict mode: 400 or 404)."""
    return {
        "id": f"batch_req_{short_id(batch_id, custom_id)}",
        "custom_id": custom_id,
        "response": {
            "status_code": status,
            "request_id": f"req_{short_id('req', batch_id, custom_id)}",
            "body": {"error": error},
        },
        "error": None,
    }


def not_run_line(batch_id: str, custom_id: str, terminal_status: str) -> dict[str, Any]:
    """The error-file line of a request that an expiry or a cancel stopped before it ran."""
    code, message = NOT_RUN_ERRORS[terminal_status]
    return {
        "id": f"batch_req_{short_id(batch_id, custom_id)}",
        "custom_id": custom_id,
        "response": None,
        "error": {"code": code, "message": message},
    }


def chat_texts(body: dict[str, Any]) -> tuple[str | None, str]:
    """The system text and the user text of a chat request (text parts only)."""
    system_parts, user_parts = [], []
    for message in body.get("messages") or []:
        if not isinstance(message, dict):
            continue
        text = _content_text(message.get("content"))
        if message.get("role") in ("system", "developer"):
            system_parts.append(text)
        elif message.get("role") == "user":
            user_parts.append(text)
    return ("\n".join(system_parts) if system_parts else None), "\n".join(user_parts)


def response_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON schema the request asks the output to follow, if any."""
    response_format = body.get("response_format")
    if not isinstance(response_format, dict):
        return None
    if response_format.get("type") == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        return schema if isinstance(schema, dict) else {"type": "object"}
    if response_format.get("type") == "json_object":
        return {"type": "object", "properties": {"summary": {"type": "string"}}, "required": ["summary"]}
    return None


def chat_completion_body(
    batch_id: str, custom_id: str, body: dict[str, Any], invalid_output: bool, created: int
) -> tuple[dict[str, Any], Usage]:
    """A ``chat.completion`` object answering the request with the emulator's fake LLM."""
    system, user = chat_texts(body)
    schema = response_schema(body)
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    reply = fake_llm.chat(system, user, schema, max_tokens if isinstance(max_tokens, int) else None)
    text = fake_llm.broken_output(schema, user) if invalid_output and schema is not None else reply.text
    output_tokens = fake_llm.count_tokens(text)
    completion: dict[str, Any] = {
        "id": f"chatcmpl-{short_id('chat', batch_id, custom_id)}",
        "object": "chat.completion",
        "created": created,
        "model": body.get("model"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None, "annotations": []},
                "logprobs": None,
                "finish_reason": reply.finish_reason,
            }
        ],
        "usage": {
            "prompt_tokens": reply.input_tokens,
            "completion_tokens": output_tokens,
            "total_tokens": reply.input_tokens + output_tokens,
        },
        "service_tier": "default",
        "system_fingerprint": "fp_emulator",
    }
    return completion, Usage(reply.input_tokens, output_tokens)


def embedding_body(body: dict[str, Any]) -> tuple[dict[str, Any], Usage]:
    """An embeddings ``list`` object: one unit vector per input, of the requested ``dimensions``."""
    texts = embedding_inputs(body)
    requested = body.get("dimensions")
    dimensions = requested if isinstance(requested, int) and requested > 0 else fake_llm.DEFAULT_DIMENSIONS
    as_base64 = body.get("encoding_format") == "base64"
    data = []
    for index, text in enumerate(texts):
        vector = fake_llm.embed(text, dimensions)
        encoded: Any = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode() if as_base64 else vector
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    tokens = sum(fake_llm.count_tokens(text) for text in texts)
    response = {
        "object": "list",
        "data": data,
        "model": body.get("model"),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return response, Usage(tokens, 0)


def embedding_inputs(body: dict[str, Any]) -> list[str]:
    """The texts of an embeddings request: a string, a list of strings, or token arrays.

    Token arrays are embedded by their JSON text; the emulator has no tokenizer to invert.
    """
    raw_input = body.get("input")
    if isinstance(raw_input, str):
        return [raw_input]
    if isinstance(raw_input, list) and raw_input and all(isinstance(t, int) for t in raw_input):
        return [json.dumps(raw_input)]
    if isinstance(raw_input, list):
        return [text if isinstance(text, str) else json.dumps(text) for text in raw_input]
    return [json.dumps(raw_input)]


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""
