"""HTTP handlers of the emulated Anthropic API: parse the request, call the models, render JSON.

Every handler checks the API key first. The SDK sends ``Authorization: Bearer <key>`` while the
API is documented with ``x-api-key``; both are accepted, with any ``anthropic-version``
(``reference/provider-apis.md`` section 3.1). Errors use Anthropic's shape
``{"type": "error", "error": {"type", "message"}, "request_id"}``, which the SDK turns into its
exception classes (400 BadRequestError, 401 AuthenticationError, 404 NotFoundError, 429
RateLimitError...).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from airflow_llm_batch.emulator.anthropic.models import AnthropicService
from airflow_llm_batch.emulator.anthropic.validation import AnthropicError
from airflow_llm_batch.emulator.web import BadJsonBody, api_key_problem, bearer_token, read_json, result_download

Handler = Callable[["AnthropicResponses", Request], Awaitable[Response]]

MAX_LIST_LIMIT = 1000
_MISSING_KEY = "x-api-key header is required"
# The key itself is never echoed: error messages end up in logs.
_WRONG_KEY = "invalid x-api-key (the emulator was started with a different api_key)"


def anthropic_endpoint(handler: Handler) -> Handler:
    """Check the API key, and turn model errors into Anthropic-shaped error responses."""

    @functools.wraps(handler)
    async def wrapper(self: AnthropicResponses, request: Request) -> Response:
        try:
            key = request.headers.get("x-api-key") or bearer_token(request)
            problem = api_key_problem(self.service.state, key)
            if problem is not None:
                raise AnthropicError(401, _MISSING_KEY if problem == "missing" else _WRONG_KEY)
            return await handler(self, request)
        except AnthropicError as error:
            return JSONResponse(error.body(), status_code=error.status, headers=error.headers)
        except BadJsonBody as error:
            return JSONResponse(AnthropicError(400, str(error)).body(), status_code=400)

    return wrapper


def results_base(request: Request) -> str:
    """The emulator as this client reached it, prefix included (the mount's ``root_path``)."""
    return f"{request.url.scheme}://{request.url.netloc}{request.scope.get('root_path', '')}"


class AnthropicResponses:
    """The handlers, bound to one service."""

    def __init__(self, service: AnthropicService) -> None:
        self.service = service
        self.lock = service.state.lock

    @anthropic_endpoint
    async def create_batch(self, request: Request) -> Response:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError as error:
            raise BadJsonBody(f"the request body is not valid JSON: {error}") from error
        account = request.headers.get("x-api-key") or bearer_token(request) or ""
        with self.lock:
            batch = self.service.create_batch(body, len(raw), results_base(request), account)
        return JSONResponse(batch)

    @anthropic_endpoint
    async def retrieve_batch(self, request: Request) -> Response:
        with self.lock:
            batch = self.service.retrieve_batch(request.path_params["batch_id"], results_base(request))
        return JSONResponse(batch)

    @anthropic_endpoint
    async def list_batches(self, request: Request) -> Response:
        params = request.query_params
        limit = _limit(params.get("limit"))
        with self.lock:
            page = self.service.list_batches(
                params.get("after_id"), params.get("before_id"), limit, results_base(request)
            )
        return JSONResponse(page)

    @anthropic_endpoint
    async def cancel_batch(self, request: Request) -> Response:
        await read_json(request)  # the SDK sends Content-Type: application/json with an empty body
        with self.lock:
            batch = self.service.cancel_batch(request.path_params["batch_id"], results_base(request))
        return JSONResponse(batch)

    @anthropic_endpoint
    async def delete_batch(self, request: Request) -> Response:
        with self.lock:
            deleted = self.service.delete_batch(request.path_params["batch_id"])
        return JSONResponse(deleted)

    @anthropic_endpoint
    async def batch_results(self, request: Request) -> Response:
        with self.lock:
            content = self.service.results(request.path_params["batch_id"])
        # The SDK asks for application/binary and accepts any content type back.
        return await result_download(self.service.state, content, "application/x-jsonl")


def _limit(raw: str | None) -> int:
    if raw is None:
        return 20
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIST_LIMIT:
        raise AnthropicError(400, f"limit: Input should be an integer from 1 to {MAX_LIST_LIMIT}.")
    return int(raw)
