"""Create-time checks of an Anthropic Message Batch, and Anthropic's error shape.

Anthropic refuses a bad batch *envelope* outright: the create call answers 400
``invalid_request_error`` (a duplicate or malformed ``custom_id``, too many requests, a request
whose ``params`` is not an object) or 413 ``request_too_large`` (``reference/provider-apis.md``
sections 3.2 and 3.6), and no batch is created. What each request's ``params`` hold is checked
later, when the batch runs, and answered as an ``errored`` result (``anthropic/strict.py``).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
MAX_REQUESTS = 100_000
# "256 MB": the decimal reading, the stricter of the two, so a batch the emulator takes is one the API takes.
MAX_BYTES = 256_000_000

# HTTP status -> Anthropic error type, for faults, unknown routes and the errors below.
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


def error_body(status: int, message: str) -> dict[str, Any]:
    """Anthropic's error JSON (``types/shared/error_response.py``), which the SDK parses."""
    return {
        "type": "error",
        "error": {"type": ERROR_TYPES.get(status, "api_error"), "message": message},
        "request_id": f"req_{uuid.uuid4().hex[:24]}",
    }


class AnthropicError(Exception):
    """An API error; the HTTP layer renders it with :func:`error_body`."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers

    def body(self) -> dict[str, Any]:
        return error_body(self.status, self.message)


@dataclass(frozen=True)
class BatchRequest:
    """One accepted request of a batch: its id and its Messages parameters."""

    custom_id: str
    params: dict[str, Any]


def check_create_body(body: Any, size_bytes: int, max_requests: int, max_bytes: int) -> list[BatchRequest]:
    """The requests of a create-batch body, or :class:`AnthropicError` for what the API refuses."""
    if size_bytes > max_bytes:
        raise AnthropicError(413, f"Request exceeds the maximum size of {max_bytes} bytes for a batch.")
    if not isinstance(body, dict) or not isinstance(body.get("requests"), list):
        raise AnthropicError(400, "requests: Field required (a list of {custom_id, params} objects).")
    raw_requests = body["requests"]
    if not raw_requests:
        raise AnthropicError(400, "requests: List should have at least 1 item after validation, not 0.")
    if len(raw_requests) > max_requests:
        raise AnthropicError(
            400, f"requests: a batch holds at most {max_requests} requests; this one has {len(raw_requests)}."
        )
    seen: set[str] = set()
    requests = []
    for index, raw in enumerate(raw_requests):
        request = _check_request(index, raw)
        if request.custom_id in seen:
            raise AnthropicError(
                400,
                f"requests.{index}.custom_id: {request.custom_id!r} is used by another request in this batch; "
                "custom_id must be unique within a batch.",
            )
        seen.add(request.custom_id)
        requests.append(request)
    return requests


def _check_request(index: int, raw: Any) -> BatchRequest:
    where = f"requests.{index}"
    if not isinstance(raw, dict):
        raise AnthropicError(400, f"{where}: Input should be an object with custom_id and params.")
    custom_id = raw.get("custom_id")
    if not isinstance(custom_id, str) or not CUSTOM_ID.match(custom_id):
        raise AnthropicError(
            400, f"{where}.custom_id: String should match pattern '{CUSTOM_ID.pattern}' (got {custom_id!r})."
        )
    params = raw.get("params")
    if not isinstance(params, dict):
        raise AnthropicError(400, f"{where}.params: Field required.")
    return BatchRequest(custom_id, params)
