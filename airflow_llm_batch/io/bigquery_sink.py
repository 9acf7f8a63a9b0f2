"""Result rows out to a BigQuery table: load jobs (free), never streaming inserts.

How a re-run replaces its own rows instead of duplicating them (per-writer staging, then one
transaction):

1. before any result is read, the target table is checked against the columns the results need
   (a conflict fails with what to change, nothing written) or created if it is missing;
2. the rows are written to local Parquet (or NDJSON) files as they stream, then loaded into a
   staging table named after the writing task (``<table>__llm_batch_staging_<digest>``) with
   ``WRITE_TRUNCATE``, so a re-run reuses and overwrites the same staging table;
3. one multi-statement transaction deletes the rows this writer (``dag_id``, ``run_id``,
   ``task_id``) put there before and inserts the staged rows, then the staging table is dropped.

A failure before the commit leaves the target exactly as it was. JSON columns are staged as
STRING and turned into JSON by ``PARSE_JSON`` in the insert, because BigQuery loads JSON columns
only from CSV, Avro or NDJSON, not Parquet.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from airflow_llm_batch.batch import jsonl
from airflow_llm_batch.batch.records import ITEM_RESULT_COLUMNS, RESULT_COLUMNS, JobKey
from airflow_llm_batch.exceptions import ConfigurationError
from airflow_llm_batch.io.bigquery import DEFAULT_CONN_ID, GoogleSettings, api_message, connection_settings, table_id

LOAD_FORMATS = ("parquet", "jsonl")
ROWS_PER_LOAD_FILE = 100_000  # caps what one upload holds in memory (the client sends 100 MB chunks)
ROW_GROUP = 10_000
# The result row's columns (``records.RESULT_COLUMNS``), then who wrote them; (name, type, mode).
_BIGQUERY_KINDS = {
    "string": ("STRING", "NULLABLE"),
    "json": ("JSON", "NULLABLE"),
    "float_list": ("FLOAT", "REPEATED"),
    "bool": ("BOOLEAN", "NULLABLE"),
    "int32": ("INTEGER", "NULLABLE"),
    "int64": ("INTEGER", "NULLABLE"),
}
RESULT_FIELDS: tuple[tuple[str, str, str], ...] = (
    *((name, *_BIGQUERY_KINDS[kind]) for name, kind in RESULT_COLUMNS),
    ("dag_id", "STRING", "NULLABLE"),
    ("run_id", "STRING", "NULLABLE"),
    ("task_id", "STRING", "NULLABLE"),
)
_SCALAR_TYPES = {"string": "STRING", "integer": "INTEGER", "number": "FLOAT", "boolean": "BOOLEAN"}
_SAME_TYPE = {"INT64": "INTEGER", "FLOAT64": "FLOAT", "BOOL": "BOOLEAN"}


class BigQuerySink:
    """Write the Results (or consolidated) rows to a BigQuery table; a re-run replaces its rows.

    Columns: the result row's (``id, status, text, json, embedding, error_type, ...``), then
    ``dag_id, run_id, task_id`` of the writing task; ``json`` is a JSON column. With
    ``typed_columns=True`` and a flat response schema (string, integer, number and boolean
    properties) each property also gets a typed column, e.g. ``category STRING``.

    :param table: ``project.dataset.table`` (or ``dataset.table``); created if missing, the dataset
        must exist. Jinja works in it.
    :param conn_id: the Google connection (see ``BigQuerySource``).
    :param typed_columns: add one typed column per property of a flat response schema.
    :param typed_column_prefix: prefix of those columns, e.g. ``"out_"`` when a property is named
        like a result column (``status``).
    :param load_format: ``"parquet"`` (default, compact) or ``"jsonl"`` (newline-delimited JSON).
    :param settings: instead of ``conn_id``, ready :class:`GoogleSettings` (tests, scripts).
    """

    template_fields: Sequence[str] = ("table",)

    def __init__(
        self,
        table: str,
        *,
        conn_id: str = DEFAULT_CONN_ID,
        typed_columns: bool = False,
        typed_column_prefix: str = "",
        load_format: str = "parquet",
        settings: GoogleSettings | None = None,
    ) -> None:
        if load_format not in LOAD_FORMATS:
            raise ConfigurationError(f"BigQuerySink: load_format must be one of {LOAD_FORMATS}, not {load_format!r}")
        self.table = table
        self.conn_id = conn_id
        self.typed_columns = typed_columns
        self.typed_column_prefix = typed_column_prefix
        self.load_format = load_format
        self.settings = settings
        self._client: Any = None
        self._target = ""
        self._fields: list[tuple[str, str, str]] = []
        self._typed: dict[str, tuple[str, str]] = {}
        self._writer: JobKey | None = None

    def __repr__(self) -> str:
        return f"BigQuerySink(table={self.table!r}, conn_id={self.conn_id!r})"

    @property
    def uri(self) -> str:
        return f"bq://{self._target or self.table}"

    # Before any result is read ---------------------------------------------------------------
    def prepare(self, writer: JobKey, response_schema: Mapping[str, Any] | None) -> None:
        """Check (or create) the target table; raise ConfigurationError saying what to change."""
        from google.api_core.exceptions import GoogleAPIError, NotFound
        from google.cloud import bigquery

        settings = self.settings or connection_settings(self.conn_id)
        self._client = settings.bigquery_client()
        self._target = table_id(self.table, settings.project or self._client.project)
        self._writer = writer
        self._typed = typed_properties(response_schema, self.typed_column_prefix) if self.typed_columns else {}
        self._fields = [*RESULT_FIELDS, *((name, kind, "NULLABLE") for name, kind in self._typed.values())]
        try:
            try:
                existing = self._client.get_table(self._target)
            except NotFound:
                self._create_target(bigquery)
                return
            problems = schema_conflicts(self._fields, existing.schema)
        except GoogleAPIError as error:
            raise ConfigurationError(f"BigQuery sink {self._target}: {api_message(error)}") from None
        if problems:
            raise ConfigurationError(
                f"BigQuery sink table {self._target} does not fit the result rows: {'; '.join(problems)}. "
                "Nothing was written. Change the table to match, or write to a new table (it is created "
                "with the right columns)."
            )

    def _create_target(self, bigquery: Any) -> None:
        from google.api_core.exceptions import NotFound

        project, dataset, _ = self._target.split(".")
        try:
            self._client.get_dataset(f"{project}.{dataset}")
        except NotFound:
            raise ConfigurationError(
                f"BigQuery sink: dataset {project}.{dataset} does not exist; create it "
                f"(bq mk --dataset {project}:{dataset}) or point table= at an existing dataset. Nothing was written."
            ) from None
        table = bigquery.Table(self._target, schema=schema_fields(self._fields))
        self._client.create_table(table, exists_ok=True)

    # After every result was read -------------------------------------------------------------
    def write(self, rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
        """Stage the rows with load jobs, then replace this writer's rows in one transaction."""
        if self._client is None or self._writer is None:
            raise RuntimeError("BigQuerySink.prepare() must run before write()")
        staging = f"{self._target}__llm_batch_staging_{self._writer.digest()}"
        with tempfile.TemporaryDirectory(prefix="llm-batch-bq-") as folder:
            count = 0
            for part, path in enumerate(self._stage_files(rows, Path(folder))):
                count += self._load(path, staging, truncate=part == 0)
                path.unlink()
        self._replace(staging)
        self._client.close()
        return {"table": self._target, "rows": count, "method": "staging+transaction"}

    def _stage_files(self, rows: Iterable[Mapping[str, Any]], folder: Path) -> Iterator[Path]:
        """Load files of at most ``ROWS_PER_LOAD_FILE`` rows, written ``ROW_GROUP`` rows at a time
        (memory holds one row group, whatever the total); always at least one file, maybe empty."""
        part, in_part = 0, 0
        writer = _PartFile(folder / f"part-{part}", self.load_format, self._fields)
        group: list[dict[str, Any]] = []
        for row in rows:
            group.append(self._staged_row(row))
            in_part += 1
            if len(group) >= ROW_GROUP or in_part >= ROWS_PER_LOAD_FILE:
                writer.write(group)
                group = []
            if in_part >= ROWS_PER_LOAD_FILE:
                yield writer.close()
                part, in_part = part + 1, 0
                writer = _PartFile(folder / f"part-{part}", self.load_format, self._fields)
        writer.write(group)
        if in_part or part == 0:
            yield writer.close()
        else:
            writer.close().unlink()

    def _staged_row(self, row: Mapping[str, Any]) -> dict[str, Any]:
        assert self._writer is not None
        staged = {name: row.get(name) for name in ITEM_RESULT_COLUMNS}
        if staged["json"] is not None:
            staged["json"] = jsonl.dumps(staged["json"]).decode()
        staged.update(dag_id=self._writer.dag_id, run_id=self._writer.run_id, task_id=writer_task(self._writer))
        value = row.get("json")
        parsed: Mapping[str, Any] = value if isinstance(value, dict) else {}
        for prop, (column, kind) in self._typed.items():
            staged[column] = typed_value(parsed.get(prop), kind)
        return staged

    def _load(self, path: Path, staging: str, truncate: bool) -> int:
        from google.cloud import bigquery

        config = bigquery.LoadJobConfig(
            schema=schema_fields(self._fields, json_as_string=True),
            source_format="PARQUET" if self.load_format == "parquet" else "NEWLINE_DELIMITED_JSON",
            write_disposition="WRITE_TRUNCATE" if truncate else "WRITE_APPEND",
            create_disposition="CREATE_IF_NEEDED",
        )
        if self.load_format == "parquet":
            options = bigquery.ParquetOptions()
            options.enable_list_inference = True  # a Parquet LIST is a REPEATED column, not a RECORD
            config.parquet_options = options
        with path.open("rb") as stream:
            job = self._client.load_table_from_file(stream, staging, job_config=config)
        return int(job.result().output_rows or 0)

    def _replace(self, staging: str) -> None:
        from google.cloud import bigquery

        assert self._writer is not None
        names = [name for name, _, _ in self._fields]
        selected = [f"PARSE_JSON({name}) AS {name}" if kind == "JSON" else name for name, kind, _ in self._fields]
        script = (
            "BEGIN TRANSACTION;\n"
            f"DELETE FROM `{self._target}` WHERE dag_id = @dag_id AND run_id = @run_id AND task_id = @task_id;\n"
            f"INSERT INTO `{self._target}` ({', '.join(names)}) SELECT {', '.join(selected)} FROM `{staging}`;\n"
            "COMMIT TRANSACTION;\n"
            f"DROP TABLE IF EXISTS `{staging}`;"
        )
        parameters = [
            bigquery.ScalarQueryParameter("dag_id", "STRING", self._writer.dag_id),
            bigquery.ScalarQueryParameter("run_id", "STRING", self._writer.run_id),
            bigquery.ScalarQueryParameter("task_id", "STRING", writer_task(self._writer)),
        ]
        self._client.query(script, job_config=bigquery.QueryJobConfig(query_parameters=parameters)).result()


class _PartFile:
    """One load file being written: Parquet row groups or NDJSON lines, appended as they come."""

    def __init__(self, stem: Path, load_format: str, fields: Sequence[tuple[str, str, str]]) -> None:
        self.path = stem.with_suffix(".parquet" if load_format == "parquet" else ".jsonl")
        self._stream = self.path.open("wb")
        self._parquet: Any = None
        if load_format == "parquet":
            import pyarrow.parquet as pq

            self._schema = arrow_schema(fields)
            self._parquet = pq.ParquetWriter(self._stream, self._schema, compression="zstd")

    def write(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        if self._parquet is None:
            self._stream.writelines(jsonl.dumps(row) + b"\n" for row in rows)
            return
        import pyarrow as pa

        self._parquet.write_table(pa.Table.from_pylist(rows, schema=self._schema))

    def close(self) -> Path:
        if self._parquet is not None:
            self._parquet.close()
        self._stream.close()
        return self.path


def writer_task(writer: JobKey) -> str:
    """The ``task_id`` column: the task id, with ``.N`` for a mapped task's index."""
    return writer.task_id if writer.map_index < 0 else f"{writer.task_id}.{writer.map_index}"


def typed_properties(schema: Mapping[str, Any] | None, prefix: str) -> dict[str, tuple[str, str]]:
    """``{property: (column, BigQuery type)}`` of a flat object schema; raise if it is not flat."""
    if not schema or schema.get("type") != "object" or not isinstance(schema.get("properties"), dict):
        raise ConfigurationError(
            "BigQuerySink(typed_columns=True) needs a response_schema that is a JSON object with properties; "
            "set typed_columns=False to keep the output in the json column only"
        )
    result_columns = {name for name, _, _ in RESULT_FIELDS}
    typed: dict[str, tuple[str, str]] = {}
    for prop, spec in schema["properties"].items():
        kinds = spec.get("type") if isinstance(spec, dict) else None
        kinds = [k for k in (kinds if isinstance(kinds, list) else [kinds]) if k != "null"]
        if len(kinds) != 1 or kinds[0] not in _SCALAR_TYPES:
            raise ConfigurationError(
                f"BigQuerySink(typed_columns=True): property {prop!r} is not a string, integer, number or "
                "boolean, so the schema is not flat; set typed_columns=False and read the json column"
            )
        column = f"{prefix}{prop}"
        if column in result_columns:
            raise ConfigurationError(
                f"BigQuerySink: property {prop!r} would be column {column!r}, which the result rows already "
                "have; set typed_column_prefix (e.g. 'out_')"
            )
        typed[prop] = (column, _SCALAR_TYPES[kinds[0]])
    return typed


def typed_value(value: Any, kind: str) -> Any:
    """The value if it has the column's type (JSON ints count as FLOAT), else None."""
    if value is None or (isinstance(value, bool) and kind != "BOOLEAN"):
        return None
    if kind == "FLOAT":
        return float(value) if isinstance(value, int | float) else None
    expected: type = {"STRING": str, "INTEGER": int, "BOOLEAN": bool}[kind]
    return value if isinstance(value, expected) else None


def schema_conflicts(wanted: Sequence[tuple[str, str, str]], existing: Sequence[Any]) -> list[str]:
    """What keeps the rows from going into an existing table, in words a user can act on."""
    have = {f.name: (_SAME_TYPE.get(f.field_type, f.field_type), f.mode or "NULLABLE") for f in existing}
    problems = []
    for name, kind, mode in wanted:
        if name not in have:
            problems.append(f"column {name} ({kind}{' REPEATED' if mode == 'REPEATED' else ''}) is missing")
        elif have[name][0] != kind or (have[name][1] == "REPEATED") != (mode == "REPEATED"):
            got = f"{have[name][0]}{' REPEATED' if have[name][1] == 'REPEATED' else ''}"
            problems.append(
                f"column {name} is {got}, the results need {kind}{' REPEATED' if mode == 'REPEATED' else ''}"
            )
    wanted_names = {name for name, _, _ in wanted}
    for name, (_, mode) in have.items():
        if name not in wanted_names and mode == "REQUIRED":
            problems.append(f"column {name} is REQUIRED but the results have no value for it")
    return problems


def schema_fields(fields: Sequence[tuple[str, str, str]], json_as_string: bool = False) -> list[Any]:
    from google.cloud import bigquery

    return [
        bigquery.SchemaField(name, "STRING" if json_as_string and kind == "JSON" else kind, mode=mode)
        for name, kind, mode in fields
    ]


def arrow_schema(fields: Sequence[tuple[str, str, str]]) -> Any:
    import pyarrow as pa

    types = {"STRING": pa.string(), "JSON": pa.string(), "INTEGER": pa.int64(), "FLOAT": pa.float64()}
    types["BOOLEAN"] = pa.bool_()
    return pa.schema(
        [(name, pa.list_(types[kind]) if mode == "REPEATED" else types[kind]) for name, kind, mode in fields]
    )
