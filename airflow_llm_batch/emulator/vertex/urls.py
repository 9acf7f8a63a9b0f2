"""Routes of the emulated Vertex AI batchPredictionJobs API, relative to the ``/vertex`` prefix.

``genai.Client(vertexai=True, http_options=HttpOptions(base_url=f"{emulator}/vertex"))`` calls
``/v1beta1/projects/{p}/locations/{l}/batchPredictionJobs...`` (its default Vertex API version;
``reference/provider-apis.md`` section 4.3); ``/v1/`` is served too.
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from airflow_llm_batch.emulator.vertex.models import VertexService
from airflow_llm_batch.emulator.vertex.responses import VertexResponses, error_body
from airflow_llm_batch.emulator.web import ProviderSpec

API_VERSIONS = ("v1beta1", "v1")


def routes(service: VertexService) -> list[BaseRoute]:
    api = VertexResponses(service)
    served: list[BaseRoute] = []
    for version in API_VERSIONS:
        jobs = f"/{version}/projects/{{project}}/locations/{{location}}/batchPredictionJobs"
        served += [
            Route(jobs, api.create_job, methods=["POST"]),
            Route(jobs, api.list_jobs, methods=["GET"]),
            Route(jobs + "/{job_id}:cancel", api.cancel_job, methods=["POST"]),
            Route(jobs + "/{job_id}", api.get_job, methods=["GET"]),
            Route(jobs + "/{job_id}", api.delete_job, methods=["DELETE"]),
        ]
    return served


PROVIDER = ProviderSpec(
    name="vertex",
    prefix="/vertex",
    create_service=VertexService,
    routes=routes,
    error_body=error_body,
    create_route=r"/batchPredictionJobs$",
)
