"""HTTP handlers of the emulated Gemini Developer API: parse the request, call the models, render JSON.

Every handler but the upload chunks checks ``x-goog-api-key`` (or the ``key`` query parameter)
first. Errors use Google's shape ``{"error": {"code", "message", "status"}}``, which
``google.genai.errors`` turns into ``ClientError`` (4xx) and ``ServerError`` (5xx). Key errors
answer as the Gemini API does: a missing key is 403 ``PERMISSION_DENIED``, a wrong key is 400
``INVALID_ARGUMENT`` with ``ErrorInfo.reason = API_KEY_INVALID`` (not 401).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from airflow_llm_batch.emulator.gemini.files import GeminiError
from airflow_llm_batch.emulator.gemini.lines import field, status_of
from airflow_llm_batch.emulator.gemini.models import GeminiService
from airflow_llm_batch.emulator.web import BadJsonBody, api_key_problem, read_json, result_download

Handler = Callable[["GeminiResponses", Request], Awaitable[Response]]

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
_MISSING_KEY = (
    "Method doesn't allow unregistered callers (callers without established identity). "
    "Please use API Key or other form of API consumer identity to call this API."
)
# The key itself is never echoed: error messages end up in logs.
_WRONG_KEY = "API key not valid. Please pass a valid API key."
_KEY_INVALID_DETAILS = [
    {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "API_KEY_INVALID",
        "domain": "googleapis.com",
        "metadata": {"service": "generativelanguage.googleapis.com"},
    }
]


def error_body(status: int, message: str) -> dict[str, Any]:
    """Google's error JSON for injected faults and unknown routes."""
    return {"error": {"code": status, "message": message, "status": status_of(status)}}


def check_key(service: GeminiService, request: Request) -> None:
    key = request.headers.get("x-goog-api-key") or request.query_params.get("key")
    problem = api_key_problem(service.state, key)
    if problem == "missing":
        raise GeminiError(403, _MISSING_KEY)
    if problem == "wrong":
        raise GeminiError(400, _WRONG_KEY, details=_KEY_INVALID_DETAILS)


def gemini_endpoint(*, authenticated: bool = True) -> Callable[[Handler], Handler]:
    """Check the API key (unless the route is an upload session), render errors in Google's shape."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def wrapper(self: GeminiResponses, request: Request) -> Response:
            try:
                if authenticated:
                    check_key(self.service, request)
                return await handler(self, request)
            except GeminiError as error:
                return JSONResponse(error.body(), status_code=error.code, headers=error.headers)
            except BadJsonBody as error:
                return JSONResponse(GeminiError(400, str(error)).body(), status_code=400)

        return wrapper

    return decorate


class GeminiResponses:
    """The handlers, bound to one service."""

    def __init__(self, service: GeminiService) -> None:
        self.service = service
        self.lock = service.state.lock

    # Batches -------------------------------------------------------------------------------

    @gemini_endpoint()
    async def batch_generate_content(self, request: Request) -> Response:
        return await self._create(request, "generate")

    @gemini_endpoint()
    async def async_batch_embed_content(self, request: Request) -> Response:
        return await self._create(request, "embed")

    async def _create(self, request: Request, kind: str) -> Response:
        raw = await request.body()
        body = await read_json(request)
        account = request.headers.get("x-goog-api-key") or request.query_params.get("key") or ""
        with self.lock:
            operation = self.service.create_batch(kind, request.path_params["model"], body, len(raw), account)
        return JSONResponse(operation)

    @gemini_endpoint()
    async def get_batch(self, request: Request) -> Response:
        with self.lock:
            operation = self.service.get_batch(request.path_params["batch_id"])
        return JSONResponse(operation)

    @gemini_endpoint()
    async def list_batches(self, request: Request) -> Response:
        size = page_size(request)
        with self.lock:
            listed = self.service.list_batches(size, request.query_params.get("pageToken"))
        return JSONResponse(listed)

    @gemini_endpoint()
    async def cancel_batch(self, request: Request) -> Response:
        await read_json(request)  # the SDK posts an empty body with Content-Type: application/json
        with self.lock:
            answer = self.service.cancel_batch(request.path_params["batch_id"])
        return JSONResponse(answer)

    @gemini_endpoint()
    async def delete_batch(self, request: Request) -> Response:
        with self.lock:
            answer = self.service.delete_batch(request.path_params["batch_id"])
        return JSONResponse(answer)

    # Files ---------------------------------------------------------------------------------

    @gemini_endpoint(authenticated=False)
    async def upload(self, request: Request) -> Response:
        """``POST /upload/{version}/files``: a *start* (with the key) or, with ``upload_id``, a chunk.

        The chunks carry no API key: the upload URL itself is the credential, as with Google's
        resumable uploads.
        """
        session_id = request.query_params.get("upload_id")
        if session_id is None:
            check_key(self.service, request)
            return await self._start_upload(request)
        command = request.headers.get("x-goog-upload-command", "")
        steps = {step.strip() for step in command.split(",")}
        if not steps & {"upload", "finalize"}:
            raise GeminiError(400, f"Unsupported X-Goog-Upload-Command {command!r}.")
        offset = _int_header(request, "x-goog-upload-offset", 0)
        data = await request.body()
        with self.lock:
            stored = self.service.files.upload_chunk(session_id, offset, data, "finalize" in steps)
        if stored is None:
            return Response(b"", headers={"x-goog-upload-status": "active"})
        return JSONResponse({"file": stored.to_api()}, headers={"x-goog-upload-status": "final"})

    async def _start_upload(self, request: Request) -> Response:
        if request.headers.get("x-goog-upload-protocol", "").lower() != "resumable":
            raise GeminiError(400, "The emulator serves only the resumable upload protocol (X-Goog-Upload-Protocol).")
        if request.headers.get("x-goog-upload-command", "").strip().lower() != "start":
            raise GeminiError(400, "A resumable upload begins with X-Goog-Upload-Command: start.")
        body = await read_json(request)
        resource = body.get("file") if isinstance(body, dict) else None
        size = _int_header(request, "x-goog-upload-header-content-length", None)
        mime_type = request.headers.get("x-goog-upload-header-content-type") or field(resource, "mimeType")
        with self.lock:
            session_id = self.service.files.start_upload(field(resource, "displayName"), mime_type, size)
        # Absolute, on this host and prefix: the SDK posts the chunks to it as given.
        upload_url = request.url.replace(query=f"upload_id={session_id}&upload_protocol=resumable")
        headers = {"x-goog-upload-url": str(upload_url), "x-goog-upload-status": "active"}
        return Response(b"", headers=headers)

    @gemini_endpoint()
    async def get_file(self, request: Request) -> Response:
        with self.lock:
            resource = self.service.files.get(request.path_params["file_id"]).to_api()
        return JSONResponse(resource)

    @gemini_endpoint()
    async def list_files(self, request: Request) -> Response:
        size = page_size(request)
        with self.lock:
            listed = self.service.files.list(size, request.query_params.get("pageToken"))
        return JSONResponse(listed)

    @gemini_endpoint()
    async def delete_file(self, request: Request) -> Response:
        with self.lock:
            self.service.files.delete(request.path_params["file_id"])
        return JSONResponse({})

    @gemini_endpoint()
    async def download_file(self, request: Request) -> Response:
        with self.lock:
            content = self.service.files.downloadable(request.path_params["file_id"])
        return await result_download(self.service.state, content, "application/octet-stream")


def page_size(request: Request) -> int:
    raw = request.query_params.get("pageSize")
    if raw is None:
        return DEFAULT_PAGE_SIZE
    if not raw.isdigit() or int(raw) < 1:
        raise GeminiError(400, "pageSize must be a positive integer.")
    return min(int(raw), MAX_PAGE_SIZE)


def _int_header(request: Request, name: str, default: int | None) -> Any:
    raw = request.headers.get(name)
    if raw is None:
        return default
    if not raw.strip().isdigit():
        raise GeminiError(400, f"Header {name} must be a non-negative integer.")
    return int(raw)
