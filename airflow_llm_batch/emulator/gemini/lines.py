"""Gemini request and response bodies: what one request of a batch asks, and what it gets back.

Shapes follow ``reference/provider-apis.md`` sections 4.1 and 4.4: a request is a
``GenerateContentRequest`` (or an ``EmbedContentRequest`` for ``asyncBatchEmbedContent``) in
proto-JSON, which accepts camelCase and snake_case keys alike; a result is a
``GenerateContentResponse`` (``candidates``, ``usageMetadata``, ``modelVersion``), an
``EmbedContentResponse`` (``embedding.values``), or a ``google.rpc.Status``-like error
``{"code", "message", "status"}``.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from airflow_llm_batch.emulator import fake_llm

# Error kind of the package's taxonomy -> (HTTP code, canonical status, message). The messages
# follow what the Gemini API says for each; ``context_length`` names the token count on purpose.
ITEM_ERRORS: dict[str, tuple[int, str, str]] = {
    "rate_limited": (429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota). (emulated)"),
    "server_error": (500, "INTERNAL", "An internal error has occurred. Please retry. (emulated)"),
    "invalid_request": (400, "INVALID_ARGUMENT", "Request contains an invalid argument. (emulated)"),
    "context_length": (
        400,
        "INVALID_ARGUMENT",
        "The input token count exceeds the maximum number of tokens allowed (1048576). (emulated)",
    ),
    # Embeddings have no safety verdict; a filtered embedding request is refused instead.
    "content_filtered": (400, "INVALID_ARGUMENT", "The request was blocked by the content policy. (emulated)"),
}
STATUS_OF_CODE = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
JSON_MIME = "application/json"


@dataclass(frozen=True)
class Answer:
    """One result entry (``{"response": ...}`` or ``{"error": ...}``).

    :param billed: whether the ledger counts it as a succeeded item (a safety block is not one).
    :param failed: whether ``batchStats`` counts it as a failed request (an error entry).
    """

    entry: dict[str, Any]
    billed: bool
    failed: bool


def status_of(code: int) -> str:
    return STATUS_OF_CODE.get(code, "UNKNOWN")


def error_entry(kind: str) -> dict[str, Any]:
    code, status, message = ITEM_ERRORS[kind]
    return {"error": {"code": code, "message": message, "status": status}}


def field(obj: Any, camel: str, default: Any = None) -> Any:
    """A proto-JSON field by its camelCase name or its snake_case twin (both are accepted)."""
    if not isinstance(obj, dict):
        return default
    if camel in obj:
        return obj[camel]
    snake = re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), camel)
    return obj.get(snake, default)


def content_text(content: Any) -> str:
    """The text parts of one ``Content`` (``{"role", "parts": [{"text"}]}``), joined."""
    parts = field(content, "parts") or []
    return "\n".join(str(part["text"]) for part in parts if isinstance(part, dict) and "text" in part)


def chat_texts(request: dict[str, Any]) -> tuple[str | None, str]:
    """The system text and the user text of a ``GenerateContentRequest``."""
    system = field(request, "systemInstruction")
    system_text = content_text(system) if isinstance(system, dict) else (system if isinstance(system, str) else None)
    user = [
        content_text(c)
        for c in field(request, "contents") or []
        if isinstance(c, dict) and field(c, "role", "user") == "user"
    ]
    return system_text or None, "\n".join(user)


def response_schema(request: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON schema the request asks the output to follow, if any.

    ``responseJsonSchema`` is plain JSON Schema; ``responseSchema`` is Gemini's OpenAPI subset
    with upper-case type names, lowered here so the emulator's fake LLM can fill it.
    """
    config = field(request, "generationConfig") or {}
    schema = field(config, "responseJsonSchema")
    if isinstance(schema, dict):
        return schema
    schema = field(config, "responseSchema")
    if isinstance(schema, dict):
        return _lower_types(schema)
    if field(config, "responseMimeType") == JSON_MIME:
        return {"type": "object", "properties": {"summary": {"type": "string"}}, "required": ["summary"]}
    return None


def _lower_types(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: (v.lower() if k == "type" and isinstance(v, str) else _lower_types(v)) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_lower_types(v) for v in schema]
    return schema


def generate_answer(
    request: dict[str, Any], key: str, model_name: str, error_kind: str | None, invalid_output: bool
) -> Answer:
    """The result of one generate request, given its fate."""
    if error_kind == "content_filtered":
        return Answer({"response": blocked_response(request, key, model_name)}, billed=False, failed=False)
    if error_kind is not None:
        return Answer(error_entry(error_kind), billed=False, failed=True)
    return Answer({"response": content_response(request, key, model_name, invalid_output)}, billed=True, failed=False)


def content_response(request: dict[str, Any], key: str, model_name: str, invalid_output: bool) -> dict[str, Any]:
    """A ``GenerateContentResponse`` answering the request with the emulator's fake LLM."""
    system, user = chat_texts(request)
    schema = response_schema(request)
    max_tokens = field(field(request, "generationConfig") or {}, "maxOutputTokens")
    reply = fake_llm.chat(system, user, schema, max_tokens if isinstance(max_tokens, int) else None)
    text = fake_llm.broken_output(schema, user) if invalid_output and schema is not None else reply.text
    output_tokens = fake_llm.count_tokens(text)
    return {
        "candidates": [
            {
                "content": {"parts": [{"text": text}], "role": "model"},
                "finishReason": "MAX_TOKENS" if reply.finish_reason == "length" else "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": usage(reply.input_tokens, output_tokens),
        "modelVersion": model_name,
        "responseId": short_id("response", key, user),
    }


def blocked_response(request: dict[str, Any], key: str, model_name: str) -> dict[str, Any]:
    """A safety block: half of the items (by key) get a blocked prompt, the others a blocked answer.

    Gemini reports a blocked prompt as ``promptFeedback.blockReason`` with no candidates, and a
    blocked answer as a candidate with ``finishReason: SAFETY`` and no content.
    """
    system, user = chat_texts(request)
    prompt_tokens = fake_llm.count_tokens((system or "") + user)
    rating = {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True}
    base = {"modelVersion": model_name, "responseId": short_id("response", key, user)}
    if int(short_id("block", key), 16) % 2:
        return {
            "promptFeedback": {"blockReason": "SAFETY", "safetyRatings": [rating]},
            "usageMetadata": usage(prompt_tokens, 0),
            **base,
        }
    return {
        "candidates": [{"finishReason": "SAFETY", "index": 0, "safetyRatings": [rating]}],
        "usageMetadata": usage(prompt_tokens, 0),
        **base,
    }


def embed_answer(request: dict[str, Any], error_kind: str | None) -> Answer:
    """The result of one embed request: a unit vector of ``outputDimensionality`` (or the default)."""
    if error_kind is not None:
        return Answer(error_entry(error_kind), billed=False, failed=True)
    text = content_text(field(request, "content"))
    requested = field(request, "outputDimensionality")
    dimensions = requested if isinstance(requested, int) and requested > 0 else fake_llm.DEFAULT_DIMENSIONS
    return Answer({"response": {"embedding": {"values": fake_llm.embed(text, dimensions)}}}, billed=True, failed=False)


def usage(prompt_tokens: int, output_tokens: int) -> dict[str, int]:
    return {
        "promptTokenCount": prompt_tokens,
        "candidatesTokenCount": output_tokens,
        "totalTokenCount": prompt_tokens + output_tokens,
    }


def short_id(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:20]


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
