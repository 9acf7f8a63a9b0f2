"""Routes of the emulated Anthropic API, relative to the ``/anthropic`` prefix.

The SDK's ``base_url`` is ``{emulator}/anthropic``, without ``/v1``: the SDK appends
``/v1/messages/batches`` itself (``reference/provider-apis.md`` section 1.1).
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from airflow_llm_batch.emulator.anthropic.models import AnthropicService
from airflow_llm_batch.emulator.anthropic.responses import AnthropicResponses
from airflow_llm_batch.emulator.anthropic.validation import error_body
from airflow_llm_batch.emulator.web import ProviderSpec


def routes(service: AnthropicService) -> list[BaseRoute]:
    api = AnthropicResponses(service)
    return [
        Route("/v1/messages/batches", api.create_batch, methods=["POST"]),
        Route("/v1/messages/batches", api.list_batches, methods=["GET"]),
        Route("/v1/messages/batches/{batch_id}", api.retrieve_batch, methods=["GET"]),
        Route("/v1/messages/batches/{batch_id}", api.delete_batch, methods=["DELETE"]),
        Route("/v1/messages/batches/{batch_id}/cancel", api.cancel_batch, methods=["POST"]),
        Route("/v1/messages/batches/{batch_id}/results", api.batch_results, methods=["GET"]),
    ]


PROVIDER = ProviderSpec(
    name="anthropic",
    prefix="/anthropic",
    create_service=AnthropicService,
    routes=routes,
    error_body=error_body,
    create_route=r"/v1/messages/batches$",
)
