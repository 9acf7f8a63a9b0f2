"""Gemini batch prediction on Vertex AI, reading and writing BigQuery tables.

Wire facts (``shared/reference/provider-apis.md`` sections 4.3, 4.4, 5.1):

- ``google.genai`` with ``vertexai=True`` creates ``batchPredictionJobs`` whose source is a
  BigQuery table ``bq://p.d.t`` with a ``request`` column (each row a ``GenerateContentRequest``,
  JSON) and whose destination is a table that Vertex writes: the input columns passed through,
  plus ``response`` (JSON) and ``status`` (STRING, empty on success, the error otherwise).
- A request has the same shape as on the Developer API, so request building is the Gemini
  backend's (this class extends it); the model is in the job, never in the request.
- Each chunk file (``{"key", "request"}`` lines) is loaded as it is into its request table with a
  load job (free): ``key`` STRING passes through to the output, where results are matched on it.
  With a BigQuery source, BigQuery builds the request tables itself (``vertex_tables.py``) and
  :meth:`VertexBackend.create_job` runs over them.
- The job key travels in ``labels`` (``airflow_job_key``, ``airflow_chunk``; the SDK has no
  ``labels`` argument, so they go in ``http_options.extra_body``), and :meth:`find_batches` lists
  jobs with a ``labels.`` filter. The display name carries it too.
- States are ``JOB_STATE_*``; only SUCCEEDED, FAILED, CANCELLED and EXPIRED are terminal.
  ``completionStats`` gives the counts while the job runs.

Connection extras: ``project`` (required), ``location`` (default ``us-central1``),
``bigquery_dataset`` (where request and output tables go; default ``llm_batch``),
``bigquery_endpoint`` (the emulator's), ``max_retries``, ``timeout``. The password is an OAuth
access token, else a service-account key in the extras, else Application Default Credentials.
"""

from __future__ import annotations

import functools
import io
import json
import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_llm_batch.batch.backends.base import ChunkFile, InPlaceRequests, PreparedJob, ProviderLimits, RequestSpec
from airflow_llm_batch.batch.backends.gemini import (
    _OUTCOMES,
    GeminiBackend,
    _Readable,
    chunk_of_display_name,
    classify_error,
    display_name,
    http_options,
    parse_result,
)
from airflow_llm_batch.batch.backends.storage_cleanup import StorageCleanup
from airflow_llm_batch.batch.records import BatchOutcome, BatchStatus, ErrorType, JobKey, Kind, RawOutcome
from airflow_llm_batch.exceptions import ConfigurationError

if TYPE_CHECKING:
    from google.genai import Client

    from airflow_llm_batch.batch.google_settings import GoogleSettings
    from airflow_llm_batch.batch.storage import StoragePath

DEFAULT_LOCATION = "us-central1"
DEFAULT_DATASET = "llm_batch"
RESULT_PAGE_ROWS = 5_000
_LABEL_UNSAFE = re.compile(r"[^a-z0-9_-]")
_HTTP_CODE = re.compile(r"\b([45]\d\d)\b")
_CANONICAL = re.compile(
    r"\b(RESOURCE_EXHAUSTED|INVALID_ARGUMENT|INTERNAL|UNAVAILABLE|DEADLINE_EXCEEDED|"
    r"PERMISSION_DENIED|UNAUTHENTICATED|CANCELLED|NOT_FOUND|FAILED_PRECONDITION)\b"
)


class VertexBackend(GeminiBackend):
    """Vertex AI batch prediction through ``google.genai`` (``vertexai=True``) and BigQuery tables."""

    provider = "vertex"
    supports_embeddings = False
    default_limits = ProviderLimits(
        max_requests=200_000,  # cited for Gemini batch jobs on Vertex (reference 4.5)
        max_bytes=1024 * 1024 * 1024,
        max_request_bytes=10 * 1024 * 1024,
        custom_id_pattern=None,
        single_model_per_batch=True,
    )
    console_url_template = None

    def check_spec(self, spec: RequestSpec) -> None:
        if spec.kind is Kind.EMBEDDING:
            raise ConfigurationError(
                "vertex: google-genai's batch embeddings are Developer-API only; use the gemini provider"
            )
        if not self.settings.project:
            raise ConfigurationError("vertex: set the connection's 'project' extra (the Google Cloud project id)")
        super().check_spec(spec)

    # Request tables built in BigQuery (``vertex_tables.py``) ----------------------------------------
    def in_place_obstacles(self, job: InPlaceRequests) -> list[str]:
        from airflow_llm_batch.batch.backends.vertex_tables import obstacles

        return obstacles(job)

    def prepare_in_place(self, job: InPlaceRequests) -> PreparedJob | None:
        from airflow_llm_batch.batch.backends.vertex_tables import prepare_from_source

        return prepare_from_source(self, job)

    def retry_in_place(
        self, previous_root: StoragePath, job: InPlaceRequests, retryable: Mapping[int, set[str]]
    ) -> PreparedJob | None:
        from airflow_llm_batch.batch.backends.vertex_tables import retry_from_tables

        return retry_from_tables(self, previous_root, job, retryable)

    # Clients ------------------------------------------------------------------------------------
    @functools.cached_property
    def settings(self) -> GoogleSettings:
        from airflow_llm_batch.batch.google_settings import GoogleSettings

        return GoogleSettings.from_parts(self.config.api_key, self.config.extra)

    @property
    def location(self) -> str:
        return str(self.settings.location or DEFAULT_LOCATION)

    @property
    def dataset(self) -> str:
        return f"{self.settings.project}.{self.config.extra.get('bigquery_dataset') or DEFAULT_DATASET}"

    def prepare_async(self) -> None:
        _ = self.client.aio.batches

    @functools.cached_property
    def client(self) -> Client:
        """The one ``genai.Client`` in Vertex mode; kept because collecting it closes its HTTP client."""
        from google import genai

        return genai.Client(
            vertexai=True,
            project=self.settings.project,
            location=self.location,
            credentials=self.settings.credentials(),
            http_options=http_options(self.config),
        )

    @functools.cached_property
    def bigquery(self) -> Any:
        return self.settings.bigquery_client()

    # Talking to the provider ----------------------------------------------------------------------
    def submit_chunk(self, chunk: ChunkFile, spec: RequestSpec, job_key: JobKey) -> str:
        """Load the chunk into a fresh request table, then create the job that reads it; a chunk
        built in SQL (``chunk.table``) is read where it is."""
        if chunk.table is not None:
            from airflow_llm_batch.batch.backends.vertex_tables import results_table_of

            return self.create_job(chunk.model, chunk.table, results_table_of(chunk.table), job_key, chunk.index)
        stem = f"{self.dataset}.llm_batch_{job_key.digest()}_c{chunk.index:05d}_{uuid.uuid4().hex[:8]}"
        self._load_requests(chunk, f"{stem}_requests")
        return self.create_job(chunk.model, f"{stem}_requests", f"{stem}_results", job_key, chunk.index)

    def create_job(self, model: str, requests_table: str, results_table: str, job_key: JobKey, chunk: int) -> str:
        """A batch prediction job reading ``requests_table``, writing ``results_table``, labelled with the key."""
        config: Any = {
            "display_name": display_name(job_key, chunk),
            "dest": f"bq://{results_table}",
            "http_options": {"extra_body": {"labels": labels(job_key, chunk)}},
        }
        batch = self.client.batches.create(model=model, src=f"bq://{requests_table}", config=config)
        return str(batch.name)

    def _load_requests(self, chunk: ChunkFile, table: str) -> None:
        from google.cloud import bigquery

        job_config = bigquery.LoadJobConfig(
            schema=[bigquery.SchemaField("key", "STRING"), bigquery.SchemaField("request", "JSON")],
            source_format="NEWLINE_DELIMITED_JSON",
            write_disposition="WRITE_TRUNCATE",
        )
        with chunk.path.open("rb") as stream:
            # ObjectStoragePath streams are not always io.IOBase; the client wants a file object.
            readable = stream if isinstance(stream, io.IOBase) else _Readable(stream)
            job = self.bigquery.load_table_from_file(readable, table, size=chunk.bytes, job_config=job_config)
        job.result()

    def find_batches(self, job_key: JobKey) -> dict[int, str]:
        """Vertex filters by label on the server; the display name then gives each job's chunk."""
        query = f'labels.airflow_job_key="{job_key.digest()}"'
        found: dict[int, str] = {}
        for batch in self.client.batches.list(config={"filter": query, "page_size": 100}):
            chunk = chunk_of_display_name(batch.display_name, job_key)
            if chunk is not None:
                found.setdefault(chunk, str(batch.name))
        return found

    def delete_stored(self, statuses: Sequence[BatchStatus], job_key: JobKey, *, batches: bool) -> StorageCleanup:
        """Nothing at the provider: Vertex reads and writes the user's own Cloud Storage and BigQuery
        (the request tables and results are the job's data, kept as the user's retention says)."""
        return StorageCleanup()

    def get_status(self, batch_id: str) -> BatchStatus:
        return vertex_status_of(self.client.batches.get(name=batch_id))

    async def aget_status(self, batch_id: str) -> BatchStatus:
        return vertex_status_of(await self.client.aio.batches.get(name=batch_id))

    def iter_outcomes(self, status: BatchStatus, kind: Kind) -> Iterator[RawOutcome]:
        """Read the output table page by page: ``key``, ``response`` and ``status`` of each row."""
        uri = status.details.get("bigquery_uri")
        if not uri:
            return
        table = self.bigquery.get_table(str(uri).removeprefix("bq://"))
        fields = [f for f in table.schema if f.name in ("key", "response", "status")]
        for row in self.bigquery.list_rows(table, selected_fields=fields, page_size=RESULT_PAGE_ROWS):
            yield outcome_of_row(row.get("key"), row.get("response"), row.get("status"), kind)

    def test_connection(self) -> tuple[bool, str]:
        self.client.batches.list(config={"page_size": 1})
        return True, "Connected to Vertex AI batch prediction"

    def console_url(self, batch_id: str) -> str | None:
        job = batch_id.rsplit("/", 1)[-1]
        return (
            f"https://console.cloud.google.com/vertex-ai/batch-predictions/locations/{self.location}/"
            f"batch-predictions/{job}?project={self.settings.project}"
        )

    def close(self) -> None:
        super().close()
        if "bigquery" in self.__dict__:
            self.bigquery.close()


def labels(job_key: JobKey, chunk_index: int) -> dict[str, str]:
    """Vertex labels (lower-case letters, digits, ``_`` and ``-``; at most 63 characters each)."""
    return {
        "airflow_job_key": job_key.digest(),
        "airflow_chunk": str(chunk_index),
        "airflow_dag": _LABEL_UNSAFE.sub("-", job_key.dag_id.lower())[:63],
        "airflow_task": _LABEL_UNSAFE.sub("-", job_key.task_id.lower())[:63],
    }


def vertex_status_of(batch: Any) -> BatchStatus:
    """A Vertex ``BatchJob`` as a :class:`BatchStatus`, with counts from ``completionStats``."""
    state = str(getattr(batch.state, "value", batch.state) or "JOB_STATE_UNSPECIFIED")
    outcome = _OUTCOMES.get(state)
    stats = batch.completion_stats
    succeeded = int(stats.successful_count or 0) if stats else 0
    failed = int(stats.failed_count or 0) if stats else 0
    incomplete = int(stats.incomplete_count or 0) if stats else 0
    errors: tuple[str, ...] = ()
    if outcome is BatchOutcome.FAILED:
        error = batch.error
        reason = f"{error.code}: {error.message}" if error is not None and error.message else None
        errors = (reason or "Vertex AI reported the job as failed without a reason (see the console)",)
    dest = batch.dest
    return BatchStatus(
        batch_id=str(batch.name),
        state=state,
        outcome=outcome,
        total=succeeded + failed + incomplete,
        done=succeeded + failed,
        failed=failed,
        errors=errors,
        details={"bigquery_uri": dest.bigquery_uri if dest is not None else None},
    )


def outcome_of_row(key: Any, response: Any, status: Any, kind: Kind) -> RawOutcome:
    """One output row: a ``response`` when ``status`` is empty, else the error that ``status`` names."""
    custom_id = str(key or "")
    if isinstance(response, str):
        try:
            response = json.loads(response)
        except ValueError:
            response = None
    if not status and isinstance(response, dict):
        return parse_result({"key": custom_id, "response": response}, kind)
    if not status:
        return RawOutcome(
            custom_id, False, error_type=ErrorType.SERVER_ERROR, error_message="no response and no status"
        )
    error = status_error(str(status))
    return parse_result({"key": custom_id, "error": error}, kind)


def status_error(status: str) -> dict[str, Any]:
    """The error a ``status`` cell describes, as ``{"code", "status", "message"}``.

    Vertex documents only that ``status`` holds "error details"; rows seen in practice read like
    ``Bad Request: {"error": {"code": 400, "message": ..., "status": "INVALID_ARGUMENT"}}``. The
    embedded JSON is used when there is one, else an HTTP code or canonical status in the text.
    """
    start, end = status.find("{"), status.rfind("}")
    if 0 <= start < end:
        try:
            found = json.loads(status[start : end + 1])
        except ValueError:
            found = None
        inner = found.get("error", found) if isinstance(found, dict) else None
        if isinstance(inner, dict) and (inner.get("code") or inner.get("status")):
            return {
                "code": int(inner.get("code") or 0),
                "status": str(inner.get("status") or ""),
                "message": str(inner.get("message") or status)[:1000],
            }
    code = _HTTP_CODE.search(status)
    canonical = _CANONICAL.search(status)
    return {
        "code": int(code.group(1)) if code else 0,
        "status": canonical.group(1) if canonical else "",
        "message": status[:1000],
    }


__all__ = ["VertexBackend", "classify_error", "labels", "outcome_of_row", "status_error", "vertex_status_of"]
