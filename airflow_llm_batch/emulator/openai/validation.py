"""Checks on OpenAI create-batch parameters and on the lines of a batch input file.

Parameter errors are refused at once with HTTP 400, as the API does. Input-file errors are not:
the API accepts the batch, shows ``validating`` and then ``failed`` with ``errors.data`` naming
the line, so `check_input_file` returns the errors for the state machine to reveal later. The
codes (``invalid_json_line``, ``duplicate_custom_id``, ``url_mismatch``, ``model_mismatch``,
``empty_file``, ``too_many_tasks``) are the ones the API documents.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_llm_batch.emulator.openai.lines import embedding_inputs

KNOWN_ENDPOINTS = (
    "/v1/responses",
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/completions",
    "/v1/moderations",
    "/v1/images/generations",
    "/v1/images/edits",
    "/v1/videos",
)
SUPPORTED_ENDPOINTS = ("/v1/chat/completions", "/v1/embeddings", "/v1/responses")
MAX_METADATA_PAIRS = 16
MAX_METADATA_KEY = 64
MAX_METADATA_VALUE = 512
MIN_EXPIRY_SECONDS = 3600
MAX_EXPIRY_SECONDS = 2_592_000
# Only the first errors are reported, as a real validator stops reading a broken file early.
MAX_REPORTED_ERRORS = 100


class OpenAIError(Exception):
    """An API error in OpenAI's shape; the HTTP layer renders it as ``{"error": {...}}``."""

    def __init__(
        self,
        status: int,
        message: str,
        error_type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.error_type, "param": self.param, "code": self.code}}


@dataclass
class InputFile:
    """A parsed input file: its requests in file order, the single model, and any line errors."""

    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    model: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)

    def add_error(self, code: str, message: str, param: str | None = None, line: int | None = None) -> None:
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append({"code": code, "message": message, "param": param, "line": line})


def check_create_params(body: Any) -> None:
    """Refuse a create-batch body the API would refuse with 400."""
    if not isinstance(body, dict):
        raise OpenAIError(400, "The request body must be a JSON object.")
    for name in ("input_file_id", "endpoint", "completion_window"):
        if not isinstance(body.get(name), str):
            raise OpenAIError(
                400, f"Missing required parameter: '{name}'.", param=name, code="missing_required_parameter"
            )
    endpoint = body["endpoint"]
    if endpoint not in KNOWN_ENDPOINTS:
        raise OpenAIError(400, f"Invalid value for 'endpoint': {endpoint!r}.", param="endpoint", code="invalid_value")
    if endpoint not in SUPPORTED_ENDPOINTS:
        raise OpenAIError(
            400,
            f"The emulator does not serve endpoint {endpoint!r}; it serves {', '.join(SUPPORTED_ENDPOINTS)}.",
            param="endpoint",
            code="unsupported_value",
        )
    if body["completion_window"] != "24h":
        raise OpenAIError(
            400,
            "Invalid value for 'completion_window': only '24h' is supported.",
            "invalid_request_error",
            "completion_window",
            "invalid_value",
        )
    check_metadata(body.get("metadata"))
    output_expiry_seconds(body.get("output_expires_after"), "output_expires_after")


def check_metadata(metadata: Any) -> None:
    """Metadata: at most 16 string pairs, keys up to 64 and values up to 512 characters."""
    if metadata is None:
        return
    if not isinstance(metadata, dict):
        raise OpenAIError(400, "'metadata' must be an object of strings.", param="metadata", code="invalid_type")
    if len(metadata) > MAX_METADATA_PAIRS:
        raise OpenAIError(
            400,
            f"'metadata' has {len(metadata)} pairs; at most {MAX_METADATA_PAIRS} are allowed.",
            param="metadata",
            code="invalid_value",
        )
    for key, value in metadata.items():
        if not isinstance(value, str):
            raise OpenAIError(400, f"metadata[{key!r}] must be a string.", param="metadata", code="invalid_type")
        if len(key) > MAX_METADATA_KEY or len(value) > MAX_METADATA_VALUE:
            raise OpenAIError(
                400,
                f"metadata[{key[:20]!r}...]: keys are limited to {MAX_METADATA_KEY} characters and values to "
                f"{MAX_METADATA_VALUE}.",
                param="metadata",
                code="invalid_value",
            )


def output_expiry_seconds(expires_after: Any, param: str) -> int | None:
    """The seconds of an ``{"anchor": "created_at", "seconds": N}`` expiry, validated."""
    if expires_after is None:
        return None
    if not isinstance(expires_after, dict) or expires_after.get("anchor") != "created_at":
        raise OpenAIError(400, f"'{param}.anchor' must be 'created_at'.", param=param, code="invalid_value")
    seconds = expires_after.get("seconds")
    if isinstance(seconds, str) and seconds.isdigit():  # multipart form fields arrive as text
        seconds = int(seconds)
    if not isinstance(seconds, int) or not MIN_EXPIRY_SECONDS <= seconds <= MAX_EXPIRY_SECONDS:
        raise OpenAIError(
            400,
            f"'{param}.seconds' must be between {MIN_EXPIRY_SECONDS} and {MAX_EXPIRY_SECONDS}.",
            param=param,
            code="invalid_value",
        )
    return seconds


def check_input_file(
    content: bytes, endpoint: str, max_requests: int, max_bytes: int, url_aliases: Mapping[str, str] | None = None
) -> InputFile:
    """Parse the JSONL input file of a batch and collect what makes the API fail the batch.

    :param url_aliases: other spellings of the endpoint paths a line's ``url`` may use (Azure's).
    """
    parsed = InputFile()
    if len(content) > max_bytes:
        parsed.add_error("file_too_large", f"The input file has {len(content)} bytes; the limit is {max_bytes}.")
        return parsed
    seen: set[str] = set()
    models: set[str] = set()
    task_count = 0
    for number, raw in enumerate(content.splitlines(), start=1):
        if not raw.strip():
            continue
        request = _check_line(parsed, raw, number, endpoint, seen, url_aliases or {})
        if request is None:
            continue
        body = request[1]
        model = body.get("model")
        if isinstance(model, str) and models and model not in models:
            parsed.add_error(
                "model_mismatch",
                f"Each input file can only include requests to a single model; line {number} uses {model!r}.",
                "body.model",
                number,
            )
        elif isinstance(model, str):
            models.add(model)
            parsed.model = model
        task_count += len(embedding_inputs(body)) if endpoint == "/v1/embeddings" else 1
        parsed.requests.append(request)
    if not parsed.requests and not parsed.errors:
        parsed.add_error("empty_file", "The input file is empty.")
    if task_count > max_requests:
        parsed.add_error(
            "too_many_tasks", f"The input file has {task_count} requests; a batch allows at most {max_requests}."
        )
    return parsed


def _check_line(
    parsed: InputFile, raw: bytes, number: int, endpoint: str, seen: set[str], url_aliases: Mapping[str, str]
) -> tuple[str, dict[str, Any]] | None:
    """One input line as (custom_id, body), or None after recording why it is invalid."""
    try:
        line = json.loads(raw)
    except ValueError:
        line = None
    if not isinstance(line, dict):
        parsed.add_error("invalid_json_line", "This line is not parseable as valid JSON.", None, number)
        return None
    custom_id, body = line.get("custom_id"), line.get("body")
    if not isinstance(custom_id, str) or not custom_id:
        parsed.add_error("missing_required_parameter", "Missing required parameter: 'custom_id'.", "custom_id", number)
        return None
    if custom_id in seen:
        message = f"The custom_id {custom_id!r} is a duplicate of another request; custom_id must be unique."
        parsed.add_error("duplicate_custom_id", message, "custom_id", number)
        return None
    seen.add(custom_id)
    if line.get("method") != "POST":
        parsed.add_error("invalid_method", "Only the POST method is supported.", "method", number)
        return None
    url = str(line.get("url"))
    if url_aliases.get(url, url) != endpoint:
        message = f"The url {line.get('url')!r} does not match the batch endpoint {endpoint!r}."
        parsed.add_error("url_mismatch", message, "url", number)
        return None
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        parsed.add_error(
            "missing_required_parameter", "Missing required parameter: 'body.model'.", "body.model", number
        )
        return None
    return custom_id, body
