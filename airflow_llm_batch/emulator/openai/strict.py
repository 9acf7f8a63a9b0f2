"""Strict mode for OpenAI: refuse a request line the way the real endpoint refuses it, in the error file.

OpenAI checks each request body when the line runs, not at upload (``reference/real-service-edges.md``):
a bad body gets ``response.status_code`` 400 in the error file, a model the endpoint does not serve
404. The rules, each from a published source (the full table with tests is ``docs/emulator.md``):

- Known parameters and their JSON types: OpenAI's OpenAPI spec (github.com/openai/openai-openapi,
  ``openapi.json`` @ f85dbe2, 2026-08-21), schemas ``CreateChatCompletionRequest`` and
  ``CreateEmbeddingRequest``. The message texts are the API's ("Unrecognized request argument
  supplied", "Missing required parameter", "Invalid type for ...").
- Reasoning models (o-series, gpt-5*) refuse ``max_tokens`` and a non-default ``temperature``: the
  API reference for those models and the reasoning guide.
- Strict ``json_schema`` response formats and strict function tools: every object needs
  ``additionalProperties: false`` and every property in ``required`` (Structured Outputs guide,
  "Supported schemas").
- A model the endpoint does not serve: 404 (openai-python#3071; the chat endpoint's "not a chat model").

The module is a table and a walk: it never imports the package's own checks or any SDK.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Any

# JSON types per top-level parameter, from the OpenAPI schemas named above ("null" where nullable).
CHAT_PARAMS: dict[str, tuple[str, ...]] = {
    "messages": ("array",),
    "model": ("string",),
    "metadata": ("object", "null"),
    "top_logprobs": ("integer", "null"),
    "temperature": ("number", "null"),
    "top_p": ("number", "null"),
    "user": ("string",),
    "safety_identifier": ("string", "null"),
    "prompt_cache_key": ("string", "null"),
    "prompt_cache_retention": ("string", "null"),
    "prompt_cache_options": ("object",),
    "service_tier": ("string", "null"),
    "modalities": ("array", "null"),
    "verbosity": ("string", "null"),
    "reasoning_effort": ("string", "null"),
    "max_completion_tokens": ("integer", "null"),
    "frequency_penalty": ("number", "null"),
    "presence_penalty": ("number", "null"),
    "web_search_options": ("object",),
    "response_format": ("object",),
    "audio": ("object", "null"),
    "store": ("boolean", "null"),
    "moderation": ("object", "null"),
    "stream": ("boolean", "null"),
    "stop": ("string", "array", "null"),
    "logit_bias": ("object", "null"),
    "logprobs": ("boolean", "null"),
    "max_tokens": ("integer", "null"),
    "n": ("integer", "null"),
    "prediction": ("object",),
    "seed": ("integer", "null"),
    "stream_options": ("object", "null"),
    "tools": ("array",),
    "tool_choice": ("string", "object"),
    "parallel_tool_calls": ("boolean",),
    "function_call": ("string", "object"),
    "functions": ("array",),
}
CHAT_REQUIRED = ("model", "messages")
EMBEDDING_PARAMS: dict[str, tuple[str, ...]] = {
    "input": ("string", "array"),
    "model": ("string",),
    "encoding_format": ("string",),
    "dimensions": ("integer",),
    "user": ("string",),
}
EMBEDDING_REQUIRED = ("model", "input")
# Ranges the spec states (minimum / maximum).
RANGES: dict[str, tuple[float, float]] = {
    "temperature": (0, 2),
    "top_p": (0, 1),
    "frequency_penalty": (-2, 2),
    "presence_penalty": (-2, 2),
    "n": (1, 128),
    "top_logprobs": (0, 20),
}
MESSAGE_ROLES = ("system", "assistant", "user", "function", "tool", "developer")
RESPONSE_FORMATS = ("text", "json_object", "json_schema")
ENCODING_FORMATS = ("float", "base64")

# Models the emulated account serves, as fnmatch patterns (scenario ``openai_served_models``
# replaces the list). OpenAI's batch-capable chat and embeddings models as of 2026-12, plus
# ``gpt-test``, the placeholder this repository's own integration tests send.
DEFAULT_SERVED_MODELS: tuple[str, ...] = (
    "gpt-4o*",
    "gpt-4.1*",
    "gpt-4-turbo*",
    "gpt-4",
    "gpt-4-0613",
    "gpt-3.5-turbo*",
    "gpt-5",
    "gpt-5-20*",
    "gpt-5-mini*",
    "gpt-5-nano*",
    "gpt-5-chat*",
    "gpt-5.[0-9]*",
    "o1*",
    "o3*",
    "o4-mini*",
    "ft:gpt-*",
    "text-embedding-3-small",
    "text-embedding-3-large",
    "text-embedding-ada-002",
    "gpt-test",
)
# Served on /v1/responses only (reported: BerriAI/litellm#15258, langchain-ai/langchain#34306).
RESPONSES_ONLY = ("gpt-5-pro*", "gpt-5.*-pro*", "o1-pro*", "o3-pro*", "o3-deep-research*", "o4-mini-deep-research*")
# Reasoning models: o-series and GPT-5 (not the gpt-5-chat models, which are not reasoning models).
_REASONING = re.compile(r"^(o\d|gpt-5)(?!.*-chat)")
_JSON_TYPES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a decimal",
    "boolean": "a boolean",
    "object": "an object",
    "array": "an array",
    "null": "null",
}


@dataclass(frozen=True)
class LineRefusal:
    """How the endpoint answers one request line: its status and OpenAI's error object."""

    status: int
    message: str
    param: str | None = None
    code: str | None = None
    error_type: str = "invalid_request_error"

    def error(self) -> dict[str, Any]:
        return {"message": self.message, "type": self.error_type, "param": self.param, "code": self.code}


def check_line(endpoint: str, body: dict[str, Any], served_models: tuple[str, ...] | list[str]) -> LineRefusal | None:
    """The refusal of one request body sent to ``endpoint``, or None when the endpoint accepts it."""
    embeddings = endpoint == "/v1/embeddings"
    params, required = (EMBEDDING_PARAMS, EMBEDDING_REQUIRED) if embeddings else (CHAT_PARAMS, CHAT_REQUIRED)
    for name in body:
        if name not in params:
            return LineRefusal(400, f"Unrecognized request argument supplied: {name}")
    for name in required:
        if name not in body:
            return LineRefusal(400, f"Missing required parameter: '{name}'.", name, "missing_required_parameter")
    for name, value in body.items():
        refusal = _check_type(name, value, params[name]) or _check_range(name, value)
        if refusal is not None:
            return refusal
    refusal = _check_model(str(body["model"]), embeddings, served_models)
    if refusal is not None:
        return refusal
    if embeddings:
        return _check_embeddings(body)
    return _check_messages(body["messages"]) or _check_reasoning(body) or _check_structured(body)


def _check_type(name: str, value: Any, allowed: tuple[str, ...]) -> LineRefusal | None:
    if json_type(value) in allowed or (json_type(value) == "integer" and "number" in allowed):
        return None
    expected = " or ".join(_JSON_TYPES[t] for t in allowed if t != "null")
    return LineRefusal(
        400,
        f"Invalid type for '{name}': expected {expected}, but got {_JSON_TYPES[json_type(value)]} instead.",
        name,
        "invalid_type",
    )


def _check_range(name: str, value: Any) -> LineRefusal | None:
    if name not in RANGES or json_type(value) not in ("integer", "number"):
        return None
    low, high = RANGES[name]
    if value > high:
        message = f"Invalid '{name}': value above maximum. Expected a value <= {high:g}, but got {value} instead."
        return LineRefusal(400, message, name, "above_max_value")
    if value < low:
        message = f"Invalid '{name}': value below minimum. Expected a value >= {low:g}, but got {value} instead."
        return LineRefusal(400, message, name, "below_min_value")
    return None


def _check_model(model: str, embeddings: bool, served_models: tuple[str, ...] | list[str]) -> LineRefusal | None:
    served = any(fnmatch.fnmatchcase(model, pattern) for pattern in served_models)
    if not served or any(fnmatch.fnmatchcase(model, pattern) for pattern in RESPONSES_ONLY):
        return LineRefusal(
            404, f"The model `{model}` does not exist or you do not have access to it.", None, "model_not_found"
        )
    is_embedding_model = "embedding" in model
    if not embeddings and is_embedding_model:
        # The chat endpoint's own answer to a model that is not a chat model.
        message = (
            "This is not a chat model and thus not supported in the v1/chat/completions endpoint. "
            "Did you mean to use v1/completions?"
        )
        return LineRefusal(404, message, "model")
    if embeddings and not is_embedding_model:
        return LineRefusal(404, f"The model `{model}` does not support embeddings.", "model", "model_not_found")
    return None


def _check_embeddings(body: dict[str, Any]) -> LineRefusal | None:
    if body.get("encoding_format", "float") not in ENCODING_FORMATS:
        message = f"Invalid value: '{body['encoding_format']}'. Supported values are: 'float' and 'base64'."
        return LineRefusal(400, message, "encoding_format", "invalid_value")
    dimensions = body.get("dimensions")
    if dimensions is not None and dimensions < 1:
        return LineRefusal(400, "Invalid 'dimensions': expected a value >= 1.", "dimensions", "below_min_value")
    if dimensions is not None and not str(body["model"]).startswith("text-embedding-3"):
        # Only text-embedding-3 and later take `dimensions` (API reference, embeddings).
        return LineRefusal(400, "This model does not support specifying dimensions.", "dimensions")
    return None


def _check_messages(messages: list[Any]) -> LineRefusal | None:
    if not messages:
        message = "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array."
        return LineRefusal(400, message, "messages", "empty_array")
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            return LineRefusal(400, f"Invalid type for '{where}': expected an object.", where, "invalid_type")
        role = message.get("role")
        if role is None:
            return LineRefusal(
                400, f"Missing required parameter: '{where}.role'.", f"{where}.role", "missing_required_parameter"
            )
        if role not in MESSAGE_ROLES:
            supported = ", ".join(f"'{r}'" for r in MESSAGE_ROLES)
            return LineRefusal(
                400, f"Invalid value: '{role}'. Supported values are: {supported}.", f"{where}.role", "invalid_value"
            )
        if "content" not in message and role in ("system", "user", "developer", "tool"):
            return LineRefusal(
                400, f"Missing required parameter: '{where}.content'.", f"{where}.content", "missing_required_parameter"
            )
    return None


def _check_reasoning(body: dict[str, Any]) -> LineRefusal | None:
    if not _REASONING.match(str(body["model"])):
        return None
    if body.get("max_tokens") is not None:
        message = (
            "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead."
        )
        return LineRefusal(400, message, "max_tokens", "unsupported_parameter")
    temperature = body.get("temperature")
    if temperature is not None and temperature != 1:
        message = (
            f"Unsupported value: 'temperature' does not support {temperature} with this model. "
            "Only the default (1) value is supported."
        )
        return LineRefusal(400, message, "temperature", "unsupported_value")
    return None


def _check_structured(body: dict[str, Any]) -> LineRefusal | None:
    response_format = body.get("response_format")
    if response_format is not None:
        kind = response_format.get("type")
        if kind not in RESPONSE_FORMATS:
            supported = ", ".join(f"'{f}'" for f in RESPONSE_FORMATS)
            message = f"Invalid value: '{kind}'. Supported values are: {supported}."
            return LineRefusal(400, message, "response_format.type", "invalid_value")
        if kind == "json_schema":
            refusal = _check_json_schema_format(response_format.get("json_schema"))
            if refusal is not None:
                return refusal
    for index, tool in enumerate(body.get("tools") or []):
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and function.get("strict") is True:
            problem = strict_schema_problem(function.get("parameters") or {}, ())
            if problem is not None:
                name = function.get("name")
                message = f"Invalid schema for function '{name}': {problem}"
                return LineRefusal(400, message, f"tools[{index}].function.parameters", "invalid_function_parameters")
    return None


def _check_json_schema_format(json_schema: Any) -> LineRefusal | None:
    if not isinstance(json_schema, dict):
        message = "Missing required parameter: 'response_format.json_schema'."
        return LineRefusal(400, message, "response_format.json_schema", "missing_required_parameter")
    if not isinstance(json_schema.get("name"), str):
        message = "Missing required parameter: 'response_format.json_schema.name'."
        return LineRefusal(400, message, "response_format.json_schema.name", "missing_required_parameter")
    if json_schema.get("strict") is not True:
        return None
    problem = strict_schema_problem(json_schema.get("schema") or {}, ())
    if problem is None:
        return None
    return LineRefusal(400, f"Invalid schema for response_format '{json_schema['name']}': {problem}", "response_format")


def strict_schema_problem(schema: Any, context: tuple[str, ...]) -> str | None:
    """The first breach of the Structured Outputs rules for strict schemas, in the API's wording."""
    if not isinstance(schema, dict):
        return None
    where = f"In context={context!r}, "
    if schema.get("type") == "object" or "properties" in schema:
        if schema.get("additionalProperties") is not False:
            return where + "'additionalProperties' is required to be supplied and to be false."
        properties = schema.get("properties") or {}
        required = schema.get("required")
        missing = [name for name in properties if not isinstance(required, list) or name not in required]
        if missing:
            return (
                where + "'required' is required to be supplied and to be an array including every key in "
                f"properties. Missing '{missing[0]}'."
            )
        for name, child in properties.items():
            problem = strict_schema_problem(child, (*context, "properties", name))
            if problem is not None:
                return problem
    for key in ("items", "anyOf", "$defs", "definitions"):
        children = schema.get(key)
        if isinstance(children, dict) and key == "items":
            children = [children]
        elif isinstance(children, dict):
            children = list(children.values())
        for index, child in enumerate(children or []):
            problem = strict_schema_problem(child, (*context, key, str(index)))
            if problem is not None:
                return problem
    return None


def json_type(value: Any) -> str:
    """The JSON Schema type name of a parsed JSON value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"
