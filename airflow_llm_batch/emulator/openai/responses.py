"""HTTP handlers of the emulated OpenAI API: parse the request, call the models, render JSON.

Every handler checks ``Authorization: Bearer <key>`` first and answers errors in OpenAI's shape
``{"error": {"message", "type", "param", "code"}}``, which the SDK unwraps into its exception
classes (400 BadRequestError, 401 AuthenticationError, 404 NotFoundError, 429 RateLimitError...).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from airflow_llm_batch.emulator.openai.models import OpenAIService
from airflow_llm_batch.emulator.openai.validation import OpenAIError
from airflow_llm_batch.emulator.web import BadJsonBody, api_key_problem, bearer_token, read_json, result_download

Handler = Callable[["OpenAIResponses", Request], Awaitable[Response]]

_FAULT_ERRORS = {
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", "server_error"),
    503: ("server_error", "service_unavailable"),
    404: ("invalid_request_error", "unknown_url"),
}
_MISSING_KEY = (
    "You didn't provide an API key. Provide it in an Authorization header using Bearer auth "
    "(Authorization: Bearer YOUR_KEY)."
)
# The key itself is never echoed: error messages end up in logs.
_WRONG_KEY = "Incorrect API key provided. The emulator was started with a different api_key."


def error_body(status: int, message: str) -> dict[str, Any]:
    """OpenAI's error JSON for injected faults and unknown routes."""
    error_type, code = _FAULT_ERRORS.get(status, ("server_error", None))
    return {"error": {"message": message, "type": error_type, "param": None, "code": code}}


def openai_endpoint(handler: Handler) -> Handler:
    """Check the API key, and turn model errors into OpenAI-shaped error responses."""

    @functools.wraps(handler)
    async def wrapper(self: OpenAIResponses, request: Request) -> Response:
        try:
            problem = api_key_problem(self.service.state, self.credential(request))
            if problem == "missing":
                raise OpenAIError(401, _MISSING_KEY)
            if problem == "wrong":
                raise OpenAIError(401, _WRONG_KEY, code="invalid_api_key")
            return await handler(self, request)
        except OpenAIError as error:
            return JSONResponse(error.body(), status_code=error.status)
        except BadJsonBody as error:
            return JSONResponse(OpenAIError(400, str(error)).body(), status_code=400)

    return wrapper


class OpenAIResponses:
    """The handlers, bound to one service."""

    def __init__(self, service: OpenAIService) -> None:
        self.service = service
        self.lock = service.state.lock

    def credential(self, request: Request) -> str | None:
        """The key or token of a request (OpenAI: ``Authorization: Bearer``); raises OpenAIError."""
        return bearer_token(request)

    @openai_endpoint
    async def upload_file(self, request: Request) -> Response:
        try:
            form = await request.form()
        except MultiPartException as error:
            raise OpenAIError(400, f"The multipart body could not be parsed: {error}") from error
        upload, purpose = form.get("file"), form.get("purpose")
        if not isinstance(upload, UploadFile):
            raise OpenAIError(
                400, "Missing required parameter: 'file'.", param="file", code="missing_required_parameter"
            )
        if not isinstance(purpose, str):
            raise OpenAIError(
                400, "Missing required parameter: 'purpose'.", param="purpose", code="missing_required_parameter"
            )
        expires_after = None
        if "expires_after[anchor]" in form or "expires_after[seconds]" in form:
            expires_after = {"anchor": form.get("expires_after[anchor]"), "seconds": form.get("expires_after[seconds]")}
        content = await upload.read()
        with self.lock:
            stored = self.service.upload_file(upload.filename or "upload.jsonl", purpose, content, expires_after)
        return JSONResponse(stored)

    @openai_endpoint
    async def list_files(self, request: Request) -> Response:
        params = request.query_params
        order = params.get("order", "desc")
        if order not in ("asc", "desc"):
            raise OpenAIError(400, "'order' must be 'asc' or 'desc'.", param="order", code="invalid_value")
        limit = _limit(params.get("limit"), default=10_000, maximum=10_000)
        with self.lock:
            page = self.service.list_files(params.get("purpose"), params.get("after"), limit, order)
        return JSONResponse(page)

    @openai_endpoint
    async def retrieve_file(self, request: Request) -> Response:
        with self.lock:
            stored = self.service.get_file(request.path_params["file_id"]).to_api()
        return JSONResponse(stored)

    @openai_endpoint
    async def file_content(self, request: Request) -> Response:
        with self.lock:
            content = self.service.file_content(request.path_params["file_id"])
        # The SDK asks for application/binary and accepts any content type back.
        return await result_download(self.service.state, content, "application/octet-stream")

    @openai_endpoint
    async def delete_file(self, request: Request) -> Response:
        with self.lock:
            deleted = self.service.delete_file(request.path_params["file_id"])
        return JSONResponse(deleted)

    @openai_endpoint
    async def create_batch(self, request: Request) -> Response:
        body = await read_json(request)
        account = self.credential(request) or ""
        with self.lock:
            batch = self.service.create_batch(body, account, request.headers.get("openai-organization"))
        return JSONResponse(batch)

    @openai_endpoint
    async def retrieve_batch(self, request: Request) -> Response:
        with self.lock:
            batch = self.service.retrieve_batch(request.path_params["batch_id"])
        return JSONResponse(batch)

    @openai_endpoint
    async def list_batches(self, request: Request) -> Response:
        limit = _limit(request.query_params.get("limit"), default=20, maximum=100)
        with self.lock:
            page = self.service.list_batches(request.query_params.get("after"), limit)
        return JSONResponse(page)

    @openai_endpoint
    async def cancel_batch(self, request: Request) -> Response:
        await read_json(request)  # the SDK sends Content-Type: application/json with an empty body
        with self.lock:
            batch = self.service.cancel_batch(request.path_params["batch_id"])
        return JSONResponse(batch)


def _limit(raw: str | None, default: int, maximum: int) -> int:
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= maximum:
        raise OpenAIError(400, f"'limit' must be an integer from 1 to {maximum}.", param="limit", code="invalid_value")
    return int(raw)
