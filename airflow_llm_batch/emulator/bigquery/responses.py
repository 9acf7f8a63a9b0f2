"""HTTP handlers of the emulated BigQuery REST API: parse the request, call the models, render JSON.

Authentication is not checked: ``google-cloud-bigquery`` with ``AnonymousCredentials`` sends no
``Authorization`` header at all (``reference/provider-apis.md`` section 5.1). Errors use the shape
``google.cloud.exceptions`` parses: ``{"error": {"code", "message", "errors": [{"reason"}], "status"}}``;
``notFound`` becomes ``NotFound``, ``invalidQuery`` / ``invalid`` become ``BadRequest``.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from airflow_llm_batch.emulator.bigquery.engine import BigQueryError
from airflow_llm_batch.emulator.bigquery.models import BigQueryService
from airflow_llm_batch.emulator.web import BadJsonBody, read_json

Handler = Callable[["BigQueryResponses", Request], Awaitable[Response]]
STATUS_WORDS = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 409: "ALREADY_EXISTS", 429: "RESOURCE_EXHAUSTED"}


def error_body(status: int, message: str, reason: str | None = None) -> dict[str, Any]:
    """Google's error JSON, with the ``errors[].reason`` the BigQuery client maps to exceptions."""
    reason = (
        reason
        or {404: "notFound", 409: "duplicate", 429: "rateLimitExceeded"}.get(status)
        or ("backendError" if status >= 500 else "invalid")
    )
    return {
        "error": {
            "code": status,
            "message": message,
            "errors": [{"message": message, "domain": "global", "reason": reason}],
            "status": STATUS_WORDS.get(status, "INTERNAL" if status >= 500 else "FAILED_PRECONDITION"),
        }
    }


def bigquery_endpoint(handler: Handler) -> Handler:
    @functools.wraps(handler)
    async def wrapper(self: BigQueryResponses, request: Request) -> Response:
        try:
            return await handler(self, request)
        except BigQueryError as error:
            return JSONResponse(error_body(error.code, error.message, error.reason), status_code=error.code)
        except BadJsonBody as error:
            return JSONResponse(error_body(400, str(error)), status_code=400)

    return wrapper


class BigQueryResponses:
    """The handlers, bound to one service."""

    def __init__(self, service: BigQueryService) -> None:
        self.service = service
        self.lock = service.state.lock

    # Datasets and tables -------------------------------------------------------------------
    @bigquery_endpoint
    async def create_dataset(self, request: Request) -> Response:
        body = await read_json(request)
        with self.lock:
            return JSONResponse(self.service.create_dataset(request.path_params["project"], body))

    @bigquery_endpoint
    async def get_dataset(self, request: Request) -> Response:
        params = request.path_params
        with self.lock:
            return JSONResponse(self.service.dataset_resource(params["project"], params["dataset"]))

    @bigquery_endpoint
    async def create_table(self, request: Request) -> Response:
        body = await read_json(request)
        params = request.path_params
        with self.lock:
            return JSONResponse(self.service.create_table(params["project"], params["dataset"], body))

    @bigquery_endpoint
    async def get_table(self, request: Request) -> Response:
        params = request.path_params
        with self.lock:
            return JSONResponse(self.service.table_resource(params["project"], params["dataset"], params["table"]))

    @bigquery_endpoint
    async def delete_table(self, request: Request) -> Response:
        with self.lock:
            self.service.delete_table(request.path_params["dataset"], request.path_params["table"])
        return Response(status_code=204)

    @bigquery_endpoint
    async def list_rows(self, request: Request) -> Response:
        params = request.path_params
        with self.lock:
            page = self.service.table_rows(params["dataset"], params["table"], request.query_params)
        return JSONResponse(page)

    # Jobs ----------------------------------------------------------------------------------
    @bigquery_endpoint
    async def insert_job(self, request: Request) -> Response:
        body = await read_json(request)
        with self.lock:
            return JSONResponse(self.service.insert_job(request.path_params["project"], body))

    @bigquery_endpoint
    async def get_job(self, request: Request) -> Response:
        params = request.path_params
        with self.lock:
            return JSONResponse(self.service.get_job(params["project"], params["job_id"]).to_api())

    @bigquery_endpoint
    async def query_results(self, request: Request) -> Response:
        params = request.path_params
        with self.lock:
            return JSONResponse(self.service.query_results(params["project"], params["job_id"], request.query_params))

    @bigquery_endpoint
    async def query(self, request: Request) -> Response:
        """``jobs.query``: run the query as a job and answer with its first page."""
        body = await read_json(request)
        project = request.path_params["project"]
        job_id = f"job_{uuid.uuid4().hex}"
        config = {key: body[key] for key in ("query", "useLegacySql", "queryParameters") if key in body}
        page = {"maxResults": str(body["maxResults"])} if body.get("maxResults") else {}
        with self.lock:
            self.service.insert_job(project, {"jobReference": {"jobId": job_id}, "configuration": {"query": config}})
            answer = self.service.query_results(project, job_id, {**page, "formatOptions.useInt64Timestamp": "true"})
        return JSONResponse(answer)

    # Uploads (load jobs) -------------------------------------------------------------------
    @bigquery_endpoint
    async def upload(self, request: Request) -> Response:
        """``POST /upload/bigquery/v2/projects/{p}/jobs``: multipart (job + data) or a resumable start."""
        project = request.path_params["project"]
        upload_type = request.query_params.get("uploadType")
        if upload_type == "multipart":
            job_body, data = parse_multipart(request.headers.get("content-type", ""), await request.body())
            with self.lock:
                path = self.service.spool_path()
                path.write_bytes(data)
                try:
                    return JSONResponse(self.service.insert_job(project, job_body, path))
                finally:
                    path.unlink(missing_ok=True)
        if upload_type == "resumable":
            job_body = await read_json(request)
            with self.lock:
                session_id = self.service.start_upload(project, job_body)
            location = request.url.replace(query=f"uploadType=resumable&upload_id={session_id}")
            return Response(b"", headers={"location": str(location)})
        raise BigQueryError(400, "invalid", f"uploadType {upload_type!r} is not emulated; use multipart or resumable.")

    @bigquery_endpoint
    async def upload_chunk(self, request: Request) -> Response:
        """``PUT <session URL>`` with ``Content-Range: bytes a-b/total`` (or ``*/total`` when empty)."""
        session_id = request.query_params.get("upload_id") or ""
        start, total = content_range(request.headers.get("content-range", ""))
        data = await request.body()
        with self.lock:
            answer = self.service.upload_chunk(session_id, start, data, total)
        if isinstance(answer, int):
            headers = {"range": f"bytes=0-{answer - 1}"} if answer else {}
            return Response(b"", status_code=308, headers=headers)
        return JSONResponse(answer)


def content_range(header: str) -> tuple[int, int | None]:
    """``bytes 0-99/200`` -> (0, 200); ``bytes 0-99/*`` -> (0, None); ``bytes */200`` -> (200, 200)."""
    unit, _, spec = header.strip().partition(" ")
    span, _, total_text = spec.partition("/")
    if unit != "bytes" or not total_text:
        raise BigQueryError(400, "invalid", f"Content-Range {header!r} is not understood.")
    total = None if total_text == "*" else int(total_text)
    if span == "*":
        return (total or 0), total
    return int(span.partition("-")[0]), total


def parse_multipart(content_type: str, body: bytes) -> tuple[dict[str, Any], bytes]:
    """A ``multipart/related`` upload: the JSON job resource, then the data."""
    import json

    boundary = next(
        (p.split("=", 1)[1].strip('"') for p in content_type.split(";") if p.strip().startswith("boundary=")), None
    )
    if not boundary:
        raise BigQueryError(400, "invalid", "A multipart upload needs a boundary in Content-Type.")
    delimiter = b"--" + boundary.encode()
    parts = [part for part in body.split(delimiter)[1:] if not part.startswith(b"--")]
    if len(parts) != 2:
        raise BigQueryError(400, "invalid", f"A multipart upload has 2 parts (job, data); got {len(parts)}.")
    payloads = []
    for part in parts:
        _, _, payload = part.partition(b"\r\n\r\n")
        payloads.append(payload[:-2] if payload.endswith(b"\r\n") else payload)
    try:
        job_body = json.loads(payloads[0])
    except ValueError as error:
        raise BigQueryError(400, "invalid", f"The job part of the upload is not JSON: {error}") from None
    return job_body, payloads[1]
