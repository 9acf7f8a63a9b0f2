"""Vertex AI request tables built by BigQuery itself: no source row passes through the worker.

When the items are a BigQuery query or table and the provider is Vertex AI, the Submit task asks
BigQuery to build the request table that the batch prediction job reads:

1. a dry run of the source query gives its columns: the id column and every ``{field}`` of the
   prompt template must be there (else the error names the column);
2. ``CREATE OR REPLACE TABLE <stem>_staged AS SELECT key, request, null_field FROM (<source>)``
   builds each ``GenerateContentRequest`` in SQL: the request JSON that the worker path would
   write, split around the prompt text, concatenated with ``TO_JSON_STRING`` of the prompt, which
   is the template's literals and ``CAST(column AS STRING)`` values joined with ``||``;
3. one check query over the staged rows: null, empty and duplicate ids, a field the template uses
   that is NULL, requests above the provider's size limit (the error names an example id and the
   count); bad input raises here, before any Vertex call;
4. one ``CREATE OR REPLACE TABLE <stem>_c<chunk>_requests AS SELECT key, request`` per chunk of at
   most the provider's limits, then the staged table is dropped;
5. the ``key`` column of each request table (one STRING column, page by page) is read into the ids
   file that the Results task reconciles against, so an id with no output row still gets a row.

The stem is ``llm_batch_<job key digest>_<input fingerprint>``: a task retry re-attaches to its
jobs through the state file (``job.py``) and builds nothing again; a changed source query gets
new tables. A retry round reads nothing either: the failed keys are loaded as a small table and
the next request tables are selected from the previous ones (:meth:`SqlRequestTables.from_retry`).

The SQL text is built in ``vertex_sql.py``.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from airflow_llm_batch.batch import jsonl
from airflow_llm_batch.batch.backends.base import ChunkFile, InPlaceRequests, PreparedJob, ProviderLimits, RequestSpec
from airflow_llm_batch.batch.backends.vertex_sql import (
    check_sql,
    chunk_sql,
    fingerprint_of,
    problems_of,
    request_json_parts,
    staged_select,
    template_fields,
)
from airflow_llm_batch.batch.records import JobKey
from airflow_llm_batch.batch.state import JobLayout, JobState, check_fingerprint
from airflow_llm_batch.batch.storage import StoragePath
from airflow_llm_batch.exceptions import ConfigurationError, InvalidInputError

if TYPE_CHECKING:
    from airflow_llm_batch.batch.google_settings import GoogleSettings

log = logging.getLogger(__name__)

TABLES_FILE = "tables.json"
ID_PAGE_ROWS = 50_000
# Column types whose CAST(... AS STRING) is the text Python's str() gives (the worker path's);
# others (BOOL 'true' vs 'True', FLOAT, TIMESTAMP...) keep the worker path unless SQL is forced.
SAME_TEXT_TYPES = {"STRING", "INTEGER", "INT64"}
NOT_SCALAR_TYPES = {"RECORD", "STRUCT", "JSON", "BYTES", "GEOGRAPHY", "RANGE"}


class TablesBackend(Protocol):
    """What the request tables use of the Vertex backend (``vertex.py`` imports this module, so
    this module names the backend by what it offers, not by import)."""

    limits: ProviderLimits

    @property
    def provider(self) -> str: ...

    @property
    def dataset(self) -> str: ...

    @property
    def bigquery(self) -> Any: ...

    @property
    def settings(self) -> GoogleSettings: ...

    def build_body(self, spec: RequestSpec, text: str) -> dict[str, Any]: ...

    def check_model(self, spec: RequestSpec) -> None: ...

    def check_spec(self, spec: RequestSpec) -> None: ...

    def submit_chunk(self, chunk: ChunkFile, spec: RequestSpec, job_key: JobKey) -> str: ...


@dataclass(frozen=True)
class SourceQuery:
    """The source as SQL: a query (with its ``@parameters``) or ``SELECT ... FROM`` a table."""

    sql: str
    parameters: list[Any]
    explain: Any  # BigQuery error -> the source's own message ("...; nothing was submitted")


class SqlRequestTables:
    """Builds a job's request tables in BigQuery and submits one Vertex job per table.

    :param backend: the Vertex backend; its BigQuery client (the Vertex connection's identity,
        which must be able to read the source tables) runs every query.
    :param layout: the attempt's work-dir folder: ``requests/tables.json`` and the ids files.
    :param on_input_change: as the operator's; ``"fail"`` refuses a changed source before any
        table or ids file is touched (the earlier jobs' ids files stay as they were).
    """

    def __init__(
        self, backend: TablesBackend, layout: JobLayout, job_key: JobKey, on_input_change: str = "fail"
    ) -> None:
        self.backend = backend
        self.layout = layout
        self.job_key = job_key
        self.on_input_change = on_input_change
        self.tables: dict[int, str] = {}

    @property
    def _tables_file(self) -> StoragePath:
        return self.layout.requests_dir / TABLES_FILE

    def _stem(self, fingerprint: str) -> str:
        return f"{self.backend.dataset}.llm_batch_{self.job_key.digest()}_{fingerprint[:8]}"

    # First round ---------------------------------------------------------------------------------
    def source_columns(self, source: SourceQuery) -> dict[str, tuple[str, str]]:
        """``{name: (type, mode)}`` of the source's columns, from a dry run (free, nothing runs)."""
        from google.api_core.exceptions import GoogleAPIError
        from google.cloud import bigquery

        config = bigquery.QueryJobConfig(dry_run=True, use_legacy_sql=False, query_parameters=source.parameters)
        try:
            job = self.backend.bigquery.query(source.sql, job_config=config)
        except GoogleAPIError as error:
            raise ConfigurationError(source.explain(error)) from None
        return {f.name: (str(f.field_type).upper(), str(f.mode or "NULLABLE").upper()) for f in job.schema or ()}

    def unfit_columns(
        self, columns: Mapping[str, tuple[str, str]], id_field: str, template: str, force: bool
    ) -> list[str]:
        """Columns whose text SQL would write differently from the worker path (empty: SQL fits).

        A column the id or the template names that the source lacks fails here, naming it.
        """
        fields = template_fields(template)[1]
        if id_field not in columns:
            raise InvalidInputError(
                [f"the source has no id column '{id_field}' (id_field); its columns: {sorted(columns)}"]
            )
        missing = [name for name in fields if name not in columns]
        if missing:
            raise InvalidInputError(
                [
                    f"the source has no column '{name}' that the prompt template uses ({{{name}}}); "
                    f"its columns: {sorted(columns)}"
                    for name in missing
                ]
            )
        unfit = []
        for name in dict.fromkeys((id_field, *fields)):
            data_type, mode = columns[name]
            if mode == "REPEATED" or data_type in NOT_SCALAR_TYPES:
                unfit.append(f"{name} ({data_type}{' REPEATED' if mode == 'REPEATED' else ''})")
            elif not force and data_type not in SAME_TEXT_TYPES:
                unfit.append(f"{name} ({data_type})")
        if unfit and force:
            raise ConfigurationError(
                f"requests_in_sql=True, but column(s) {unfit} cannot be put into a prompt in SQL; select them "
                "as STRING (TO_JSON_STRING, FORMAT) in the query, or use requests_in_sql=None"
            )
        return unfit

    def from_source(self, source: SourceQuery, id_field: str, template: str, spec: RequestSpec) -> PreparedJob:
        """Request tables for the first round (see the module docstring)."""
        select = staged_select(source.sql, id_field, template, request_json_parts(self.backend, spec))
        fingerprint = fingerprint_of(select, [p.to_api_repr() for p in source.parameters], spec.model)
        return self._prepare(select, source.parameters, fingerprint, spec.model, id_field, source.explain)

    # Retry rounds --------------------------------------------------------------------------------
    def from_retry(self, previous: JobLayout, retryable: Mapping[int, set[str]], model: str) -> PreparedJob:
        """Request tables of the retryable items, selected in SQL from the previous attempt's tables.

        The failed keys (from the Results task's failed-items file) are loaded as a one-column
        table; the previous requests are never read back.
        """
        from google.cloud import bigquery

        tables = {int(c["index"]): str(c["table"]) for c in read_tables_file(previous)["chunks"]}
        used = sorted(tables[chunk] for chunk in retryable if chunk in tables)
        keys = sorted(set().union(*retryable.values())) if retryable else []
        fingerprint = fingerprint_of(used, keys, model)
        reused = self._reuse(fingerprint)
        if reused is not None:
            return reused
        keys_table = f"{self._stem(fingerprint)}_retry_keys"
        config = bigquery.LoadJobConfig(
            schema=[bigquery.SchemaField("key", "STRING")], write_disposition="WRITE_TRUNCATE"
        )
        self.backend.bigquery.load_table_from_json([{"key": k} for k in keys], keys_table, job_config=config).result()
        union = " UNION ALL ".join(f"SELECT key, request FROM `{table}`" for table in used)
        select = (
            "SELECT previous.key AS key, previous.request AS request, CAST(NULL AS STRING) AS null_field "
            f"FROM ({union}) AS previous WHERE previous.key IN (SELECT key FROM `{keys_table}`)"
        )
        try:
            return self._prepare(select, [], fingerprint, model, "key", None)
        finally:
            self.backend.bigquery.query(f"DROP TABLE IF EXISTS `{keys_table}`").result()

    # Both ----------------------------------------------------------------------------------------
    def _prepare(
        self, select: str, parameters: list[Any], fingerprint: str, model: str, id_field: str, explain: Any
    ) -> PreparedJob:
        from google.api_core.exceptions import GoogleAPIError

        reused = self._reuse(fingerprint)
        if reused is not None:
            return reused
        stem = self._stem(fingerprint)
        staged = f"{stem}_staged"
        try:
            self._run(f"CREATE OR REPLACE TABLE `{staged}` AS\n{select}", parameters)
        except GoogleAPIError as error:
            raise ConfigurationError(explain(error) if explain else str(error)) from None
        try:
            limits = self.backend.limits
            [check] = [dict(row.items()) for row in self._run(check_sql(staged, limits.max_request_bytes), [])]
            problems = problems_of(check, id_field, self.backend.provider, limits.max_request_bytes)
            if problems:
                raise InvalidInputError(problems)
            chunks = self._chunk_tables(stem, staged, int(check["items"]), int(check["total_bytes"]), model)
        finally:
            self._run(f"DROP TABLE IF EXISTS `{staged}`", [])
        self._write_tables_file(fingerprint, chunks)
        return PreparedJob(chunks=tuple(chunks), item_count=sum(c.count for c in chunks), fingerprint=fingerprint)

    def _reuse(self, fingerprint: str) -> PreparedJob | None:
        """The tables an earlier try built, once it started creating jobs from them: never rebuilt."""
        state = JobState.load(self.layout.record_store)
        if not state.data.get("chunks") or not self._tables_file.exists():
            return None
        if state.data.get("fingerprint") != fingerprint and self.on_input_change == "fail":
            # job.submit_prepared's own check and message, raised here before anything is built.
            check_fingerprint(state, PreparedJob((), 0, fingerprint), self.on_input_change)
        recorded = read_tables_file(self.layout)
        if recorded.get("fingerprint") != fingerprint or state.data.get("fingerprint") != fingerprint:
            return None
        chunks = []
        for entry in recorded["chunks"]:
            index = int(entry["index"])
            self.tables[index] = str(entry["table"])
            count, size = int(entry["count"]), int(entry["bytes"])
            chunks.append(ChunkFile(index, self._tables_file, count, size, entry["model"], table=self.tables[index]))
        log.info("Re-using the request tables an earlier try built: %s", ", ".join(self.tables.values()))
        return PreparedJob(chunks=tuple(chunks), item_count=sum(c.count for c in chunks), fingerprint=fingerprint)

    def _chunk_tables(self, stem: str, staged: str, items: int, total_bytes: int, model: str) -> list[ChunkFile]:
        limits = self.backend.limits
        if items == 0:
            return []
        count = max(math.ceil(items / limits.max_requests), math.ceil(total_bytes / limits.max_bytes), 1)
        per_chunk = math.ceil(items / count)
        self.layout.requests_dir.mkdir(parents=True, exist_ok=True)
        chunks = []
        for index in range(count):
            table = f"{stem}_c{index:05d}_requests"
            self._run(chunk_sql(staged, table, index, count, per_chunk), [])
            rows = self._write_ids(table, self.layout.ids_file(index))
            share = total_bytes * rows // items
            self.tables[index] = table
            chunks.append(ChunkFile(index, self._tables_file, rows, share, model, table=table))
        return chunks

    def _write_ids(self, table: str, path: StoragePath) -> int:
        """The ids file of a request table: its ``key`` column, read page by page (the only column read)."""
        from google.cloud import bigquery

        rows = self.backend.bigquery.list_rows(
            table, selected_fields=[bigquery.SchemaField("key", "STRING")], page_size=ID_PAGE_ROWS
        )
        with jsonl.JsonlWriter(path) as writer:
            for row in rows:
                writer.write([row["key"], row["key"]])  # the key is the user's id: Vertex takes any string
            return writer.count

    def _write_tables_file(self, fingerprint: str, chunks: list[ChunkFile]) -> None:
        self.layout.requests_dir.mkdir(parents=True, exist_ok=True)
        entries = [
            {"index": c.index, "table": self.tables[c.index], "count": c.count, "bytes": c.bytes, "model": c.model}
            for c in chunks
        ]
        with self._tables_file.open("wb") as stream:
            stream.write(jsonl.dumps({"fingerprint": fingerprint, "chunks": entries}, option=jsonl.orjson.OPT_INDENT_2))

    def _run(self, sql: str, parameters: list[Any]) -> Any:
        from google.cloud import bigquery

        config = bigquery.QueryJobConfig(use_legacy_sql=False, query_parameters=parameters)
        return self.backend.bigquery.query(sql, job_config=config).result()

    def create_job(self, chunk: ChunkFile, spec: RequestSpec, job_key: JobKey) -> str:
        """The Vertex job of one request table (what ``VertexBackend.submit_chunk`` does for it)."""
        return self.backend.submit_chunk(chunk, spec, job_key)


def results_table_of(requests_table: str) -> str:
    """A fresh output table beside a request table (a new one per job: a re-created job never mixes)."""
    return f"{requests_table.removesuffix('_requests')}_{uuid.uuid4().hex[:8]}_results"


def obstacles(job: InPlaceRequests) -> list[str]:
    """Why the request tables cannot be built in SQL for ``job`` (empty: they can)."""
    reasons = []
    if not callable(getattr(job.source, "as_sql", None)):  # a BigQuerySource (io/ is above: no import)
        reasons.append("the items are not a BigQuerySource")
    if job.template is None or job.body_field:
        reasons.append("there is no prompt_template (body_field)")
    elif any("." in name for name in template_fields(job.template)[1]):
        reasons.append("the prompt template reads nested fields ({a.b}), which the SQL path does not build")
    return reasons


def prepare_from_source(backend: TablesBackend, job: InPlaceRequests) -> PreparedJob | None:
    """The first round's request tables built in BigQuery, or ``None`` when a column's text would
    differ from the worker path's (``requests_in_sql=None``) or the dry run fails there."""
    backend.check_model(job.spec)
    backend.check_spec(job.spec)
    tables = SqlRequestTables(backend, JobLayout(job.layout_root, job.records), job.job_key, job.on_input_change)
    items = job.source
    source = SourceQuery(items.as_sql(backend.settings.project), items.bound_parameters(), items.explain)
    try:
        columns = tables.source_columns(source)
    except ConfigurationError as error:
        if job.force:
            raise
        # E.g. the Vertex connection may not read the source; the worker path reads it with the
        # source's own connection, and reports a bad query in its own words.
        log.info("Building the requests in the worker: the dry run through the Vertex connection failed (%s)", error)
        return None
    template = str(job.template)
    unfit = tables.unfit_columns(columns, job.id_field, template, bool(job.force))
    if unfit:
        log.info(
            "Building the requests in the worker: column(s) %s would be written differently by SQL "
            "(requests_in_sql=True builds them in SQL anyway)",
            unfit,
        )
        return None
    prepared = tables.from_source(source, job.id_field, template, job.spec)
    log.info(
        "Built %d request(s) in BigQuery: %s (no source row passed through the worker)",
        prepared.item_count,
        ", ".join(tables.tables.values()) or "no table, the source is empty",
    )
    return prepared


def retry_from_tables(
    backend: TablesBackend, previous_root: StoragePath, job: InPlaceRequests, retryable: Mapping[int, set[str]]
) -> PreparedJob | None:
    """A retry round's request tables selected from the previous attempt's, when that attempt built
    its requests in SQL; else ``None``."""
    previous = JobLayout(previous_root)
    if not built_in_sql(previous):
        return None
    tables = SqlRequestTables(backend, JobLayout(job.layout_root, job.records), job.job_key, job.on_input_change)
    return tables.from_retry(previous, retryable, job.spec.model)


def read_tables_file(layout: JobLayout) -> dict[str, Any]:
    with (layout.requests_dir / TABLES_FILE).open("rb") as stream:
        return dict(jsonl.loads(stream.read()))


def built_in_sql(layout: JobLayout) -> bool:
    """Whether this attempt's requests are BigQuery tables (its retry round then stays in SQL)."""
    return (layout.requests_dir / TABLES_FILE).exists()
