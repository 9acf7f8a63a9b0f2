"""One AWS endpoint under ``/aws`` for the Bedrock control plane and S3, told apart by the signature.

boto3 signs every request with SigV4, whose credential scope names the service
(``Credential=<key id>/<date>/<region>/<service>/aws4_request``): ``bedrock`` requests go to the
model-invocation-job routes (botocore's ``bedrock`` service-2.json: ``POST /model-invocation-job``,
``GET /model-invocation-job/{jobIdentifier}``, ``POST /model-invocation-job/{jobIdentifier}/stop``,
``GET /model-invocation-jobs``, ``POST /listTagsForResource``), ``s3`` requests to the object store.
So one ``endpoint_url`` serves both clients, as the Amazon provider's connection extra means it.
The signature itself is not verified; a request without one is refused (403), and so is a key id
other than the scenario's ``api_key`` when that is set.

Errors are REST-JSON (``x-amzn-ErrorType`` header and ``{"message"}``), which botocore reads into
``ClientError`` with the code, e.g. ``ServiceQuotaExceededException``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from airflow_llm_batch.emulator.bedrock import s3
from airflow_llm_batch.emulator.bedrock.models import BedrockError, BedrockService
from airflow_llm_batch.emulator.web import ALL_METHODS, ProviderSpec

_SCOPE = re.compile(r"Credential=([^/,\s]+)/[^/]+/[^/]+/([^/]+)/aws4_request")
JOB = "/model-invocation-job"


def error_body(status: int, message: str) -> dict[str, Any]:
    code = {429: "ThrottlingException", 404: "ResourceNotFoundException"}.get(status, "InternalServerException")
    return {"__type": code, "message": message}


def _error(error: BedrockError) -> Response:
    return JSONResponse({"message": error.message}, status_code=error.status, headers={"x-amzn-ErrorType": error.code})


def routes(service: BedrockService) -> list[BaseRoute]:
    async def dispatch(request: Request) -> Response:
        found = _SCOPE.search(request.headers.get("authorization", ""))
        path = "/" + request.path_params["path"]
        if found is None:
            return _error(BedrockError(403, "AccessDeniedException", "Missing Authentication Token (emulated)."))
        key_id, signing_service = found.groups()
        expected = service.state.scenario.api_key
        if expected is not None and key_id != expected:
            return _error(BedrockError(403, "UnrecognizedClientException", "The security token is invalid."))
        if signing_service == "s3":
            return await s3.handle(service.s3, service.state.lock, request, path)
        try:
            return await _bedrock(service, request, path, key_id)
        except BedrockError as error:
            return _error(error)

    return [Route("/{path:path}", dispatch, methods=ALL_METHODS)]


async def _bedrock(service: BedrockService, request: Request, path: str, key_id: str) -> Response:
    method, lock = request.method, service.state.lock
    body: dict[str, Any] = {}
    if method == "POST":
        raw = await request.body()
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError:
            raise BedrockError(400, "ValidationException", "The request body is not valid JSON.") from None
    with lock:
        if method == "POST" and path == JOB:
            return JSONResponse(service.create_job(body, key_id))
        if method == "GET" and path == JOB + "s":
            return _list(service, request)
        if method == "POST" and path == "/listTagsForResource":
            return JSONResponse({"tags": service.tags_of(str(body.get("resourceARN") or ""))})
        if path.startswith(JOB + "/"):
            # botocore percent-encodes the ARN's '/', which the path arrives decoded with: the
            # job id is the last segment either way.
            rest = path[len(JOB) + 1 :]
            if method == "POST" and rest.endswith("/stop"):
                service.stop_job(rest.removesuffix("/stop"))
                return JSONResponse({})
            if method == "GET":
                return JSONResponse(service.get_job(rest))
    raise BedrockError(404, "UnknownOperationException", f"{method} {path} is not emulated.")


def _list(service: BedrockService, request: Request) -> Response:
    query = request.query_params
    size = max(1, min(int(query.get("maxResults") or 1000), 1000))
    jobs = service.list_jobs(
        query.get("nameContains"), query.get("statusEquals"), query.get("sortOrder", "Descending") == "Descending"
    )
    start = int(query.get("nextToken") or 0)
    page: dict[str, Any] = {"invocationJobSummaries": jobs[start : start + size]}
    if start + size < len(jobs):
        page["nextToken"] = str(start + size)
    return JSONResponse(page)


PROVIDER = ProviderSpec(
    name="bedrock",
    prefix="/aws",
    create_service=BedrockService,
    routes=routes,
    error_body=error_body,
    create_route=r"/aws/model-invocation-job$",
)
