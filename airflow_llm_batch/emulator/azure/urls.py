"""Azure OpenAI's Files and Batch API, under the ``/azure`` prefix (the resource endpoint).

The emulated resource answers the two ways Azure exposes it (learn.microsoft.com, Azure OpenAI
"Getting started with batch deployments" and the REST reference):

- the versioned path ``{endpoint}/openai/files``, ``/openai/batches``..., every call with an
  ``api-version`` query parameter (what ``openai.AzureOpenAI(azure_endpoint=..., api_version=...)``
  sends); without it Azure answers 400 ``MissingApiVersionParameter``;
- the v1 path ``{endpoint}/openai/v1/files``... without ``api-version`` (``OpenAI(base_url=
  f"{endpoint}/openai/v1/")``).

Credentials: an ``api-key`` header (keys) or ``Authorization: Bearer`` (Microsoft Entra ID tokens,
and keys on the v1 path). Request lines name the endpoint Azure's way (``/chat/completions``,
``/embeddings``; OpenAI's ``/v1/...`` spellings are accepted too) and ``model`` is the deployment
name. Azure does not expire batches: "we do not expire the jobs that take longer" (same page), so
a scenario's ``batch_outcome="expired"`` becomes a batch that runs on for a week instead.
The rest (files, batch objects, result lines, strict checks) is the emulated OpenAI's.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.routing import BaseRoute

from airflow_llm_batch.emulator.openai.models import OpenAIService
from airflow_llm_batch.emulator.openai.responses import OpenAIResponses, error_body
from airflow_llm_batch.emulator.openai.urls import batch_api_routes
from airflow_llm_batch.emulator.openai.validation import OpenAIError
from airflow_llm_batch.emulator.scenario import Scenario
from airflow_llm_batch.emulator.web import ProviderSpec, bearer_token

AZURE_PATHS = {"/chat/completions": "/v1/chat/completions", "/embeddings": "/v1/embeddings"}
WEEK = 7 * 86_400


class AzureOpenAIService(OpenAIService):
    provider = "azure_openai"
    url_aliases = AZURE_PATHS

    def create_batch(self, body: Any, account: str = "", organization: str | None = None) -> dict[str, Any]:
        if isinstance(body, dict) and body.get("endpoint") in AZURE_PATHS:
            body = {**body, "endpoint": AZURE_PATHS[body["endpoint"]]}
        return super().create_batch(body, account, organization)

    def outcome(self, scenario: Scenario) -> str:
        return "completed" if scenario.batch_outcome == "expired" else scenario.batch_outcome

    def completion_seconds(self, scenario: Scenario) -> float:
        return WEEK if scenario.batch_outcome == "expired" else scenario.completion_seconds


class AzureResponses(OpenAIResponses):
    def credential(self, request: Request) -> str | None:
        on_v1 = "/openai/v1/" in request.url.path
        if not on_v1 and "api-version" not in request.query_params:
            raise OpenAIError(
                400,
                "The api-version query parameter (?api-version=) is required for all requests.",
                code="MissingApiVersionParameter",
            )
        return request.headers.get("api-key") or bearer_token(request)


def routes(service: OpenAIService) -> list[BaseRoute]:
    api = AzureResponses(service)
    return [*batch_api_routes(api, "/openai"), *batch_api_routes(api, "/openai/v1")]


PROVIDER = ProviderSpec(
    name="azure_openai",
    prefix="/azure",
    create_service=AzureOpenAIService,
    routes=routes,
    error_body=error_body,
    create_route=r"/batches$",
)
