"""Routes of the emulated BigQuery REST API, relative to the ``/bigquery`` prefix.

``google-cloud-bigquery`` keeps a path in ``client_options={"api_endpoint": ...}``, so the client
is pointed at ``{emulator}/bigquery`` and calls ``/bigquery/v2/...`` and ``/upload/bigquery/v2/...``
below it (``google/cloud/bigquery/_http.py``; ``client.py`` ``_BASE_UPLOAD_TEMPLATE``). Only the
routes this package and its tests use are served; anything else gets a 404 in Google's shape.
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from airflow_llm_batch.emulator.bigquery.models import BigQueryService
from airflow_llm_batch.emulator.bigquery.responses import BigQueryResponses, error_body
from airflow_llm_batch.emulator.web import ProviderSpec

API = "/bigquery/v2/projects/{project}"


def routes(service: BigQueryService) -> list[BaseRoute]:
    api = BigQueryResponses(service)
    tables = API + "/datasets/{dataset}/tables"
    return [
        Route(API + "/datasets", api.create_dataset, methods=["POST"]),
        Route(API + "/datasets/{dataset}", api.get_dataset, methods=["GET"]),
        Route(tables, api.create_table, methods=["POST"]),
        Route(tables + "/{table}", api.get_table, methods=["GET"]),
        Route(tables + "/{table}", api.delete_table, methods=["DELETE"]),
        Route(tables + "/{table}/data", api.list_rows, methods=["GET"]),
        Route(API + "/jobs", api.insert_job, methods=["POST"]),
        Route(API + "/jobs/{job_id}", api.get_job, methods=["GET"]),
        Route(API + "/queries", api.query, methods=["POST"]),
        Route(API + "/queries/{job_id}", api.query_results, methods=["GET"]),
        Route("/upload" + API + "/jobs", api.upload, methods=["POST"]),
        Route("/upload" + API + "/jobs", api.upload_chunk, methods=["PUT"]),
    ]


PROVIDER = ProviderSpec(
    name="bigquery",
    prefix="/bigquery",
    create_service=BigQueryService,
    routes=routes,
    error_body=error_body,
)
