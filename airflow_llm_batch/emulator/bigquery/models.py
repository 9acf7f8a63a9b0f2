"""BigQuery jobs, upload sessions and table resources behind the emulated REST API (no HTTP here).

Jobs run to completion when they are inserted, so every job read back is ``DONE``; a failure is
kept on the job as ``status.errorResult``, where ``google-cloud-bigquery`` looks for it
(``reference/provider-apis.md`` section 5.1). Uploaded bytes are spooled to files in a temporary
folder, never held whole in memory, so a large load stays cheap for the emulator too.
"""

from __future__ import annotations

import datetime
import shutil
import tempfile
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow_llm_batch.emulator.bigquery.engine import (
    RESULTS_SCHEMA,
    BigQueryError,
    Engine,
    bigquery_field,
    legacy_type,
)
from airflow_llm_batch.emulator.state import EmulatorState

DEFAULT_LOCATION = "US"
DEFAULT_PAGE_ROWS = 10_000


@dataclass
class Job:
    """One job as the API shows it; ``result_table`` names the rows of a query's last SELECT."""

    project: str
    job_id: str
    location: str
    configuration: dict[str, Any]
    created_ms: int
    error: BigQueryError | None = None
    result_table: str | None = None
    statistics: dict[str, Any] = field(default_factory=dict)

    @property
    def job_type(self) -> str:
        return "LOAD" if "load" in self.configuration else "QUERY"

    def to_api(self) -> dict[str, Any]:
        status: dict[str, Any] = {"state": "DONE"}
        if self.error is not None:
            status["errorResult"] = self.error.error_proto()
            status["errors"] = [self.error.error_proto()]
        stamp = str(self.created_ms)
        return {
            "kind": "bigquery#job",
            "id": f"{self.project}:{self.location}.{self.job_id}",
            "jobReference": self.reference(),
            "configuration": {**self.configuration, "jobType": self.job_type},
            "status": status,
            "statistics": {"creationTime": stamp, "startTime": stamp, "endTime": stamp, **self.statistics},
        }

    def reference(self) -> dict[str, str]:
        return {"projectId": self.project, "jobId": self.job_id, "location": self.location}


@dataclass
class UploadSession:
    """A resumable upload: the job it will run and the bytes received so far (in a file)."""

    project: str
    job_body: dict[str, Any]
    path: Path
    received: int = 0


class BigQueryService:
    """The emulated BigQuery account. Callers hold ``state.lock``."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state
        self.engine = Engine()
        self.jobs: dict[tuple[str, str], Job] = {}
        self.uploads: dict[str, UploadSession] = {}
        # Rows sent to clients, by source ("tabledata <dataset>.<table>" or "query <job id>"): lets
        # tests show that a path never read a table's rows back (not an API of BigQuery's).
        self.rows_served: Counter[str] = Counter()
        self._spool = Path(tempfile.mkdtemp(prefix="llm-batch-bq-"))

    def reset(self) -> None:
        self.engine.reset()
        self.jobs.clear()
        self.uploads.clear()
        self.rows_served.clear()
        shutil.rmtree(self._spool, ignore_errors=True)
        self._spool.mkdir(parents=True, exist_ok=True)

    def settle(self) -> None:
        """Jobs finish when inserted; nothing to catch up with."""

    # Datasets and tables -------------------------------------------------------------------
    def create_dataset(self, project: str, body: Mapping[str, Any]) -> dict[str, Any]:
        dataset = str((body.get("datasetReference") or {}).get("datasetId") or "")
        if not dataset:
            raise BigQueryError(400, "invalid", "datasetReference.datasetId is required.")
        self.engine.create_dataset(dataset)
        return self.dataset_resource(project, dataset)

    def dataset_resource(self, project: str, dataset: str) -> dict[str, Any]:
        if not self.engine.dataset_exists(dataset):
            raise BigQueryError(404, "notFound", f"Not found: Dataset {project}:{dataset}")
        return {
            "kind": "bigquery#dataset",
            "id": f"{project}:{dataset}",
            "datasetReference": {"projectId": project, "datasetId": dataset},
            "location": DEFAULT_LOCATION,
        }

    def create_table(self, project: str, dataset: str, body: Mapping[str, Any]) -> dict[str, Any]:
        table = str((body.get("tableReference") or {}).get("tableId") or "")
        if not table:
            raise BigQueryError(400, "invalid", "tableReference.tableId is required.")
        self.engine.create_table(dataset, table, (body.get("schema") or {}).get("fields") or [])
        return self.table_resource(project, dataset, table)

    def table_resource(self, project: str, dataset: str, table: str) -> dict[str, Any]:
        self.engine.require_table(dataset, table, project)
        now = str(int(self.state.now() * 1000))
        return {
            "kind": "bigquery#table",
            "id": f"{project}:{dataset}.{table}",
            "tableReference": {"projectId": project, "datasetId": dataset, "tableId": table},
            "schema": {"fields": self.engine.schema(dataset, table)},
            "numRows": str(self.engine.count(dataset, table)),
            "type": "TABLE",
            "location": DEFAULT_LOCATION,
            "creationTime": now,
            "lastModifiedTime": now,
        }

    def delete_table(self, dataset: str, table: str) -> None:
        self.engine.drop_table(dataset, table)

    def table_rows(self, dataset: str, table: str, params: Mapping[str, str]) -> dict[str, Any]:
        """``tabledata.list``: a page of rows; the page token is the offset of the next page."""
        offset = int(params.get("pageToken") or params.get("startIndex") or 0)
        limit = _page_rows(params)
        selected = [name for name in (params.get("selectedFields") or "").split(",") if name]
        rows, _ = self.engine.rows(dataset, table, offset, limit, selected, _int64_timestamps(params))
        total = self.engine.count(dataset, table)
        self.rows_served[f"tabledata {dataset}.{table}"] += len(rows)
        answer: dict[str, Any] = {"kind": "bigquery#tableDataList", "totalRows": str(total), "rows": rows}
        if offset + len(rows) < total:
            answer["pageToken"] = str(offset + len(rows))
        return answer

    # Jobs ----------------------------------------------------------------------------------
    def insert_job(self, project: str, body: Mapping[str, Any], upload: Path | None = None) -> dict[str, Any]:
        """``jobs.insert`` (query) or the end of an upload (load): run the job, return its resource."""
        reference = body.get("jobReference") or {}
        job_id = str(reference.get("jobId") or f"job_{uuid.uuid4().hex}")
        if (project, job_id) in self.jobs:
            raise BigQueryError(409, "duplicate", f"Already Exists: Job {project}:{DEFAULT_LOCATION}.{job_id}")
        configuration = dict(body.get("configuration") or {})
        if configuration.get("dryRun") and "query" in configuration:
            return self._dry_run(project, job_id, reference, configuration)
        job = Job(
            project,
            job_id,
            str(reference.get("location") or DEFAULT_LOCATION),
            configuration,
            int(self.state.now() * 1000),
        )
        try:
            if "query" in configuration:
                self._run_query(job, configuration["query"])
            elif "load" in configuration and upload is not None:
                self._run_load(job, configuration["load"], upload)
            else:
                raise BigQueryError(400, "invalid", "Only query jobs and load jobs with uploaded data are emulated.")
        except BigQueryError as error:
            job.error = error
        self.jobs[(project, job_id)] = job
        return job.to_api()

    def get_job(self, project: str, job_id: str) -> Job:
        job = self.jobs.get((project, job_id))
        if job is None:
            raise BigQueryError(404, "notFound", f"Not found: Job {project}:{job_id}")
        return job

    def query_results(self, project: str, job_id: str, params: Mapping[str, str]) -> dict[str, Any]:
        """``jobs.getQueryResults``: the schema, the row count and one page of the job's rows."""
        job = self.get_job(project, job_id)
        if job.error is not None:
            raise job.error
        answer: dict[str, Any] = {
            "kind": "bigquery#getQueryResultsResponse",
            "jobReference": job.reference(),
            "jobComplete": True,
            "cacheHit": False,
            "totalBytesProcessed": "0",
        }
        dml = job.statistics.get("query", {}).get("numDmlAffectedRows")
        if dml is not None:
            answer["numDmlAffectedRows"] = dml
        if job.result_table is None:
            return {**answer, "schema": {"fields": []}, "totalRows": "0", "rows": []}
        offset = int(params.get("pageToken") or params.get("startIndex") or 0)
        limit = _page_rows(params)
        if params.get("maxResults") == "0":  # the client's completion poll asks for no rows
            schema = self.engine.schema(RESULTS_SCHEMA, job.result_table)
            total = self.engine.count(RESULTS_SCHEMA, job.result_table)
            return {**answer, "schema": {"fields": schema}, "totalRows": str(total)}
        rows, schema = self.engine.rows(
            RESULTS_SCHEMA, job.result_table, offset, limit, None, _int64_timestamps(params)
        )
        total = self.engine.count(RESULTS_SCHEMA, job.result_table)
        self.rows_served[f"query {job_id}"] += len(rows)
        answer.update(schema={"fields": schema}, totalRows=str(total), rows=rows)
        if offset + len(rows) < total:
            answer["pageToken"] = str(offset + len(rows))
        return answer

    def _dry_run(
        self, project: str, job_id: str, reference: Mapping[str, Any], configuration: dict[str, Any]
    ) -> dict[str, Any]:
        """A dry run: the query is checked and its schema returned in ``statistics.query.schema``;
        nothing runs and, as in BigQuery, the job is not kept (``jobs.get`` does not find it)."""
        config = configuration["query"]
        if config.get("useLegacySql"):
            raise BigQueryError(400, "invalidQuery", "Legacy SQL is not emulated; set use_legacy_sql=False.")
        parameters = parameter_values(config.get("queryParameters") or [])
        fields = self.engine.describe(str(config.get("query") or ""), parameters)
        job = Job(project, job_id, str(reference.get("location") or DEFAULT_LOCATION), configuration, 0)
        job.statistics = {
            "query": {"statementType": "SELECT", "totalBytesProcessed": "0", "schema": {"fields": fields}}
        }
        return job.to_api()

    def _run_query(self, job: Job, config: Mapping[str, Any]) -> None:
        if config.get("useLegacySql"):
            raise BigQueryError(400, "invalidQuery", "Legacy SQL is not emulated; set use_legacy_sql=False.")
        parameters = parameter_values(config.get("queryParameters") or [])
        result = self.engine.run_script(str(config.get("query") or ""), parameters, f"job_{uuid.uuid4().hex}")
        job.result_table = result.result_table
        statistics: dict[str, Any] = {"statementType": result.statement_type, "totalBytesProcessed": "0"}
        if result.affected_rows is not None:
            statistics["numDmlAffectedRows"] = str(result.affected_rows)
        job.statistics = {"query": statistics}

    def _run_load(self, job: Job, config: Mapping[str, Any], path: Path) -> None:
        destination = config.get("destinationTable") or {}
        dataset, table = str(destination.get("datasetId") or ""), str(destination.get("tableId") or "")
        fields = (config.get("schema") or {}).get("fields") or []
        source_format = str(config.get("sourceFormat") or "CSV")
        write = str(config.get("writeDisposition") or "WRITE_APPEND")
        existing = self.engine.columns(dataset, table)
        if not existing:
            if config.get("createDisposition") == "CREATE_NEVER":
                raise BigQueryError(404, "notFound", f"Not found: Table {dataset}.{table}")
            if not fields and source_format == "PARQUET":
                fields = self.engine.parquet_fields(path)
            if not fields:
                raise BigQueryError(400, "invalid", "Give the load job a schema (autodetect is not emulated).")
            self.engine.create_table(dataset, table, fields)
        elif fields and write == "WRITE_TRUNCATE":
            self.engine.create_table(dataset, table, fields, replace=True)  # a truncating load replaces the schema
        elif fields:
            check_same_schema(dataset, table, existing, fields)
        loaded = self.engine.load(dataset, table, path, source_format, write)
        job.statistics = {
            "load": {"outputRows": str(loaded), "inputFiles": "1", "inputFileBytes": str(path.stat().st_size)}
        }

    # Uploads -------------------------------------------------------------------------------
    def spool_path(self) -> Path:
        return self._spool / uuid.uuid4().hex

    def start_upload(self, project: str, job_body: dict[str, Any]) -> str:
        session_id = uuid.uuid4().hex
        path = self.spool_path()
        path.touch()
        self.uploads[session_id] = UploadSession(project, job_body, path)
        return session_id

    def upload_chunk(self, session_id: str, start: int, data: bytes, total: int | None) -> dict[str, Any] | int:
        """Append a chunk; returns the job resource once the last byte arrived, else the bytes received."""
        session = self.uploads.get(session_id)
        if session is None:
            raise BigQueryError(404, "notFound", "Not found: upload session (emulated)")
        if start != session.received:
            raise BigQueryError(400, "invalid", f"Chunk starts at {start}; {session.received} bytes were received.")
        with session.path.open("ab") as stream:
            stream.write(data)
        session.received += len(data)
        if total is None or session.received < total:
            return session.received
        del self.uploads[session_id]
        try:
            return self.insert_job(session.project, session.job_body, session.path)
        finally:
            session.path.unlink(missing_ok=True)


def check_same_schema(
    dataset: str, table: str, existing: list[tuple[str, str, bool]], fields: list[dict[str, Any]]
) -> None:
    """An appending load with a schema must match the table (BigQuery: "Provided Schema does not match")."""
    types = {
        name: (bigquery_field(name, data_type, True)["type"], data_type.endswith("[]"))
        for name, data_type, _ in existing
    }
    for field_schema in fields:
        name = str(field_schema["name"])
        wanted = (legacy_type(str(field_schema.get("type", "STRING"))), field_schema.get("mode") == "REPEATED")
        problem = (
            "Cannot add fields" if name not in types else "Field has changed type" if types[name] != wanted else ""
        )
        if problem:
            raise BigQueryError(
                400, "invalid", f"Provided Schema does not match Table {dataset}.{table}. {problem} (field: {name})"
            )


def parameter_values(parameters: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Named ``queryParameters`` as Python values DuckDB binds (scalars only)."""
    values: dict[str, Any] = {}
    for parameter in parameters:
        name = parameter.get("name")
        if not name:
            raise BigQueryError(400, "invalidQuery", "Positional query parameters are not emulated; name them.")
        type_name = str((parameter.get("parameterType") or {}).get("type") or "STRING").upper()
        raw = (parameter.get("parameterValue") or {}).get("value")
        values[str(name)] = None if raw is None else _scalar(type_name, str(raw))
    return values


def _scalar(type_name: str, raw: str) -> Any:
    if type_name in ("INT64", "INTEGER"):
        return int(raw)
    if type_name in ("FLOAT64", "FLOAT", "NUMERIC", "BIGNUMERIC"):
        return float(raw)
    if type_name in ("BOOL", "BOOLEAN"):
        return raw.lower() == "true"
    if type_name == "DATE":
        return datetime.date.fromisoformat(raw)
    return raw


def _page_rows(params: Mapping[str, str]) -> int:
    raw = params.get("maxResults")
    return max(1, int(raw)) if raw and raw.isdigit() and int(raw) > 0 else DEFAULT_PAGE_ROWS


def _int64_timestamps(params: Mapping[str, str]) -> bool:
    return str(params.get("formatOptions.useInt64Timestamp", "")).lower() == "true"
