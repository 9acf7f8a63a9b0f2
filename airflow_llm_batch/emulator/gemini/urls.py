"""Routes of the emulated Gemini Developer API, relative to the ``/gemini`` prefix.

``google.genai`` is pointed at ``HttpOptions(base_url=f"{emulator}/gemini")`` and calls ``/v1/``
by default, while the REST docs use ``/v1beta/``: both are served (``reference/provider-apis.md``
section 4.1). Downloads are served under ``/download/...`` too, as the REST docs show them.

Order matters: ``{file_id}`` matches any segment, ``abc:download`` included, so the download
route comes before the plain file route.
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from airflow_llm_batch.emulator.gemini.models import GeminiService
from airflow_llm_batch.emulator.gemini.responses import GeminiResponses, error_body
from airflow_llm_batch.emulator.web import ProviderSpec

API_VERSIONS = ("v1", "v1beta")


def routes(service: GeminiService) -> list[BaseRoute]:
    api = GeminiResponses(service)
    served: list[BaseRoute] = []
    for version in API_VERSIONS:
        served += [
            Route(f"/{version}/models/{{model}}:batchGenerateContent", api.batch_generate_content, methods=["POST"]),
            Route(
                f"/{version}/models/{{model}}:asyncBatchEmbedContent", api.async_batch_embed_content, methods=["POST"]
            ),
            Route(f"/{version}/batches", api.list_batches, methods=["GET"]),
            Route(f"/{version}/batches/{{batch_id}}:cancel", api.cancel_batch, methods=["POST"]),
            Route(f"/{version}/batches/{{batch_id}}:delete", api.delete_batch, methods=["POST"]),
            Route(f"/{version}/batches/{{batch_id}}", api.get_batch, methods=["GET"]),
            Route(f"/{version}/batches/{{batch_id}}", api.delete_batch, methods=["DELETE"]),
            Route(f"/upload/{version}/files", api.upload, methods=["POST"]),
            Route(f"/{version}/files", api.list_files, methods=["GET"]),
            Route(f"/{version}/files/{{file_id}}:download", api.download_file, methods=["GET"]),
            Route(f"/download/{version}/files/{{file_id}}:download", api.download_file, methods=["GET"]),
            Route(f"/{version}/files/{{file_id}}", api.get_file, methods=["GET"]),
            Route(f"/{version}/files/{{file_id}}", api.delete_file, methods=["DELETE"]),
        ]
    return served


PROVIDER = ProviderSpec(
    name="gemini",
    prefix="/gemini",
    create_service=GeminiService,
    routes=routes,
    error_body=error_body,
    create_route=r":(batchGenerateContent|asyncBatchEmbedContent)$",
)
