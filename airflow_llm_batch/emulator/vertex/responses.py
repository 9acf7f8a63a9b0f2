"""HTTP handlers of the emulated Vertex AI batchPredictionJobs API.

``google.genai`` in Vertex mode sends ``Authorization: Bearer <token>`` (from
``google.oauth2.credentials.Credentials(token=...)``); a request without one is answered 401
``UNAUTHENTICATED``. The token itself is not checked. Errors use Google's shape
``{"error": {"code", "message", "status"}}``, which ``google.genai.errors`` parses.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from airflow_llm_batch.emulator.gemini.files import GeminiError
from airflow_llm_batch.emulator.gemini.responses import error_body, page_size
from airflow_llm_batch.emulator.vertex.models import VertexService
from airflow_llm_batch.emulator.web import BadJsonBody, bearer_token, read_json

Handler = Callable[["VertexResponses", Request], Awaitable[Response]]

__all__ = ["VertexResponses", "error_body"]


def vertex_endpoint(handler: Handler) -> Handler:
    """Require a bearer token, render errors in Google's shape."""

    @functools.wraps(handler)
    async def wrapper(self: VertexResponses, request: Request) -> Response:
        try:
            if bearer_token(request) is None:
                raise GeminiError(401, "Request is missing required authentication credential (emulated).")
            return await handler(self, request)
        except GeminiError as error:
            return JSONResponse(error.body(), status_code=error.code, headers=error.headers)
        except BadJsonBody as error:
            return JSONResponse(GeminiError(400, str(error)).body(), status_code=400)

    return wrapper


class VertexResponses:
    """The handlers, bound to one service."""

    def __init__(self, service: VertexService) -> None:
        self.service = service
        self.lock = service.state.lock

    @vertex_endpoint
    async def create_job(self, request: Request) -> Response:
        body = await read_json(request)
        params = request.path_params
        with self.lock:
            return JSONResponse(self.service.create_job(params["project"], params["location"], body))

    @vertex_endpoint
    async def get_job(self, request: Request) -> Response:
        with self.lock:
            return JSONResponse(self.service.get_job(request.path_params["job_id"]))

    @vertex_endpoint
    async def list_jobs(self, request: Request) -> Response:
        size = page_size(request)
        query = request.query_params
        with self.lock:
            return JSONResponse(self.service.list_jobs(size, query.get("pageToken"), query.get("filter")))

    @vertex_endpoint
    async def cancel_job(self, request: Request) -> Response:
        await read_json(request)  # the SDK posts an empty body with Content-Type: application/json
        with self.lock:
            return JSONResponse(self.service.cancel_job(request.path_params["job_id"]))

    @vertex_endpoint
    async def delete_job(self, request: Request) -> Response:
        with self.lock:
            return JSONResponse(self.service.delete_job(request.path_params["job_id"]))
