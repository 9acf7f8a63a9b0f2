"""Routes of the emulated OpenAI API, relative to the ``/openai`` prefix.

The SDK's ``base_url`` is ``{emulator}/openai/v1``: it includes ``/v1`` and appends ``/files``,
``/batches``... (``reference/provider-apis.md`` section 1.1).
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from airflow_llm_batch.emulator.openai.models import OpenAIService
from airflow_llm_batch.emulator.openai.responses import OpenAIResponses, error_body
from airflow_llm_batch.emulator.web import ProviderSpec


def routes(service: OpenAIService) -> list[BaseRoute]:
    return batch_api_routes(OpenAIResponses(service), "/v1")


def batch_api_routes(api: OpenAIResponses, base: str) -> list[BaseRoute]:
    """The Files and Batch API under ``base`` (OpenAI's ``/v1``; Azure serves the same under two bases)."""
    return [
        Route(f"{base}/files", api.upload_file, methods=["POST"]),
        Route(f"{base}/files", api.list_files, methods=["GET"]),
        Route(f"{base}/files/{{file_id}}", api.retrieve_file, methods=["GET"]),
        Route(f"{base}/files/{{file_id}}", api.delete_file, methods=["DELETE"]),
        Route(f"{base}/files/{{file_id}}/content", api.file_content, methods=["GET"]),
        Route(f"{base}/batches", api.create_batch, methods=["POST"]),
        Route(f"{base}/batches", api.list_batches, methods=["GET"]),
        Route(f"{base}/batches/{{batch_id}}", api.retrieve_batch, methods=["GET"]),
        Route(f"{base}/batches/{{batch_id}}/cancel", api.cancel_batch, methods=["POST"]),
    ]


PROVIDER = ProviderSpec(
    name="openai",
    prefix="/openai",
    create_service=OpenAIService,
    routes=routes,
    error_body=error_body,
    create_route=r"/v1/batches$",
)
