"""The emulator's ASGI app: every provider under its own prefix, plus the control routes.

OpenAI and the Gemini Developer API both serve ``/v1/batches/{id}``, so each provider lives under
its own prefix (``reference/provider-apis.md`` section 1.1) and its SDK's ``base_url`` includes it.

To add a provider: create ``emulator/<name>/`` with ``models.py``, ``responses.py`` and ``urls.py``
(``urls.PROVIDER`` is a `ProviderSpec`, see ``emulator/openai/urls.py``) and add it to `PROVIDERS`.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Mount

from airflow_llm_batch.emulator.anthropic.urls import PROVIDER as ANTHROPIC
from airflow_llm_batch.emulator.azure.urls import PROVIDER as AZURE_OPENAI
from airflow_llm_batch.emulator.bedrock.urls import PROVIDER as BEDROCK
from airflow_llm_batch.emulator.bigquery.urls import PROVIDER as BIGQUERY
from airflow_llm_batch.emulator.control import control_routes
from airflow_llm_batch.emulator.gemini.urls import PROVIDER as GEMINI
from airflow_llm_batch.emulator.openai.urls import PROVIDER as OPENAI
from airflow_llm_batch.emulator.state import EmulatorState
from airflow_llm_batch.emulator.vertex.urls import PROVIDER as VERTEX
from airflow_llm_batch.emulator.web import ProviderGate, ProviderSpec

# One entry per emulated provider; the prefix is where its SDK's base_url points.
PROVIDERS: list[ProviderSpec] = [
    OPENAI,  # /openai     -> OpenAI(base_url=f"{url}/openai/v1")
    ANTHROPIC,  # /anthropic  -> Anthropic(base_url=f"{url}/anthropic")
    GEMINI,  # /gemini     -> HttpOptions(base_url=f"{url}/gemini")
    BIGQUERY,  # /bigquery   -> bigquery.Client(client_options={"api_endpoint": f"{url}/bigquery"})
    VERTEX,  # /vertex     -> genai.Client(vertexai=True, http_options=HttpOptions(base_url=f"{url}/vertex"))
    AZURE_OPENAI,  # /azure  -> AzureOpenAI(azure_endpoint=f"{url}/azure", api_version=...)
    BEDROCK,  # /aws   -> boto3 clients "bedrock" and "s3" with endpoint_url=f"{url}/aws"
]


def create_app(state: EmulatorState, providers: Sequence[ProviderSpec] = PROVIDERS) -> Starlette:
    """An app serving ``providers`` from ``state``; the state's backends are created on first use."""
    routes: list[BaseRoute] = list(control_routes(state))
    for spec in providers:
        service = state.attach_service(spec.name, spec.create_service)
        routes.append(Mount(spec.prefix, routes=[*spec.routes(service), spec.not_found_route()]))
    middleware = [Middleware(ProviderGate, state=state, providers=providers)]
    return Starlette(routes=routes, middleware=middleware)
