"""The SQL engine behind the emulated BigQuery: an in-memory DuckDB database (no HTTP here).

Why DuckDB: it ships in one PyPI wheel with the JSON and Parquet readers built in (nothing to
download at start, unlike bqemulator's ``INSTALL spatial``), it has real transactions, ``JSON``,
list (``REPEATED``) and ``TIMESTAMPTZ`` types, ``read_json`` / ``read_parquet`` that load a
100,000-row file without Python loops, and its SQL is close enough to GoogleSQL that a one-pass
translation (``sql.py``) covers what this package sends. SQLite has none of the column types.

A dataset is a DuckDB schema, a table a DuckDB table; the project is ignored. Values leave the
engine already in the REST form (strings; ``TIMESTAMP`` as microseconds) because converting
them in SQL keeps large pages out of Python's per-value conversions.
"""

from __future__ import annotations

import contextlib
import datetime
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from airflow_llm_batch.emulator.bigquery.sql import SqlError, first_word, split_statements

RESULTS_SCHEMA = "_emulator_results"
# BigQuery type (legacy and standard names) -> DuckDB type.
DUCK_TYPES = {
    "STRING": "VARCHAR",
    "INTEGER": "BIGINT",
    "INT64": "BIGINT",
    "FLOAT": "DOUBLE",
    "FLOAT64": "DOUBLE",
    "NUMERIC": "DECIMAL(38, 9)",
    "BIGNUMERIC": "DECIMAL(38, 9)",
    "BOOLEAN": "BOOLEAN",
    "BOOL": "BOOLEAN",
    "JSON": "JSON",
    "DATE": "DATE",
    "DATETIME": "TIMESTAMP",
    "TIMESTAMP": "TIMESTAMPTZ",
    "TIME": "TIME",
    "BYTES": "BLOB",
}
_INTEGER_TYPES = ("BIGINT", "INTEGER", "SMALLINT", "TINYINT", "HUGEINT", "UBIGINT", "UINTEGER", "USMALLINT")
MACROS = (
    "CREATE OR REPLACE MACRO parse_json(x) AS CAST(x AS JSON)",
    "CREATE OR REPLACE MACRO to_json_string(x) AS CAST(to_json(x) AS VARCHAR)",
    "CREATE OR REPLACE MACRO date(x) AS CAST(x AS DATE)",
    "CREATE OR REPLACE MACRO byte_length(x) AS strlen(x)",
)


class BigQueryError(Exception):
    """An API error; rendered as ``{"error": {"code", "message", "errors": [{"reason", ...}]}}``."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message

    def error_proto(self) -> dict[str, Any]:
        return {"reason": self.reason, "message": self.message, "domain": "global"}


@dataclass(frozen=True)
class ScriptResult:
    """What a query job leaves: the result table of its last SELECT (if any) and DML counts."""

    result_table: str | None
    statement_type: str
    affected_rows: int | None


def duck_type(field: Mapping[str, Any]) -> str:
    """A BigQuery ``TableFieldSchema`` as a DuckDB column type."""
    type_name = str(field.get("type", "STRING")).upper()
    if type_name in ("RECORD", "STRUCT"):
        raise BigQueryError(400, "invalid", f"Field {field.get('name')}: RECORD columns are not emulated.")
    if type_name not in DUCK_TYPES:
        raise BigQueryError(400, "invalid", f"Field {field.get('name')}: unknown type {type_name}.")
    base = DUCK_TYPES[type_name]
    return base + "[]" if str(field.get("mode", "")).upper() == "REPEATED" else base


def legacy_type(type_name: str) -> str:
    """The API's (legacy) name of a type: ``INT64`` -> ``INTEGER``, ``BOOL`` -> ``BOOLEAN``..."""
    upper = type_name.upper()
    return {"INT64": "INTEGER", "FLOAT64": "FLOAT", "BOOL": "BOOLEAN", "BIGNUMERIC": "NUMERIC", "STRUCT": "RECORD"}.get(
        upper, upper
    )


def bigquery_field(name: str, data_type: str, nullable: bool) -> dict[str, Any]:
    """A DuckDB column as a BigQuery ``TableFieldSchema`` (legacy type names, as the API returns)."""
    repeated = data_type.endswith("[]")
    base = data_type[:-2] if repeated else data_type
    if base in ("VARCHAR",):
        type_name = "STRING"
    elif base in _INTEGER_TYPES:
        type_name = "INTEGER"
    elif base in ("DOUBLE", "FLOAT", "REAL"):
        type_name = "FLOAT"
    elif base.startswith("DECIMAL"):
        type_name = "NUMERIC"
    elif base == "TIMESTAMP WITH TIME ZONE":
        type_name = "TIMESTAMP"
    elif base == "TIMESTAMP":
        type_name = "DATETIME"
    else:
        type_name = {"BOOLEAN": "BOOLEAN", "JSON": "JSON", "DATE": "DATE", "BLOB": "BYTES", "TIME": "TIME"}.get(
            base, "STRING"
        )
    mode = "REPEATED" if repeated else ("NULLABLE" if nullable else "REQUIRED")
    return {"name": name, "type": type_name, "mode": mode}


def value_expression(column: str, data_type: str, int64_timestamps: bool) -> str:
    """SQL that renders a column the way the REST API sends values: strings, lists of strings."""
    quoted = _quote(column)
    if data_type.endswith("[]"):
        inner = value_expression("__x", data_type[:-2], int64_timestamps).replace('"__x"', "__x")
        # BigQuery has no NULL arrays: a REPEATED column reads as [] where nothing was stored.
        return f"coalesce(list_transform({quoted}, lambda __x: {inner}), [])"
    if data_type == "VARCHAR":
        return quoted
    if data_type == "TIMESTAMP WITH TIME ZONE":
        micros = f"epoch_us({quoted})"
        return f"CAST({micros} AS VARCHAR)" if int64_timestamps else f"CAST({micros} / 1000000.0 AS VARCHAR)"
    if data_type == "TIMESTAMP":
        return f"strftime({quoted}, '%Y-%m-%dT%H:%M:%S.%f')"
    if data_type == "BLOB":
        return f"base64({quoted})"
    return f"CAST({quoted} AS VARCHAR)"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def table_name(dataset: str, table: str) -> str:
    return f"{_quote(dataset)}.{_quote(table)}"


class Engine:
    """One in-memory DuckDB database. Callers hold the emulator state's lock."""

    def __init__(self) -> None:
        self.db = self._connect()

    @staticmethod
    def _connect() -> duckdb.DuckDBPyConnection:
        db = duckdb.connect(":memory:")
        for macro in MACROS:
            db.execute(macro)
        db.execute(f"CREATE SCHEMA {_quote(RESULTS_SCHEMA)}")
        return db

    def reset(self) -> None:
        self.db.close()
        self.db = self._connect()

    # Datasets and tables -------------------------------------------------------------------
    def dataset_exists(self, dataset: str) -> bool:
        rows = self.db.execute("SELECT 1 FROM information_schema.schemata WHERE schema_name = ?", [dataset]).fetchall()
        return bool(rows)

    def create_dataset(self, dataset: str) -> None:
        if self.dataset_exists(dataset):
            raise BigQueryError(409, "duplicate", f"Already Exists: Dataset {dataset}")
        self.db.execute(f"CREATE SCHEMA {_quote(dataset)}")

    def columns(self, dataset: str, table: str) -> list[tuple[str, str, bool]]:
        """``(name, duckdb type, nullable)`` per column; empty when the table does not exist."""
        rows = self.db.execute(
            "SELECT column_name, data_type, is_nullable = 'YES' FROM information_schema.columns "
            "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
            [dataset, table],
        ).fetchall()
        return [(str(name), str(data_type), bool(nullable)) for name, data_type, nullable in rows]

    def schema(self, dataset: str, table: str) -> list[dict[str, Any]]:
        return [bigquery_field(*column) for column in self.columns(dataset, table)]

    def require_table(self, dataset: str, table: str, project: str = "") -> list[tuple[str, str, bool]]:
        columns = self.columns(dataset, table)
        if not columns:
            where = f"{project}:{dataset}.{table}" if project else f"{dataset}.{table}"
            raise BigQueryError(404, "notFound", f"Not found: Table {where}")
        return columns

    def create_table(
        self, dataset: str, table: str, fields: Sequence[Mapping[str, Any]], replace: bool = False
    ) -> None:
        if not self.dataset_exists(dataset):
            raise BigQueryError(404, "notFound", f"Not found: Dataset {dataset}")
        if not fields:
            raise BigQueryError(400, "invalid", f"Table {dataset}.{table} needs a schema with at least one field.")
        if self.columns(dataset, table) and not replace:
            raise BigQueryError(409, "duplicate", f"Already Exists: Table {dataset}.{table}")
        definitions = []
        for field in fields:
            required = str(field.get("mode", "")).upper() == "REQUIRED"
            definitions.append(f"{_quote(str(field['name']))} {duck_type(field)}{' NOT NULL' if required else ''}")
        verb = "CREATE OR REPLACE TABLE" if replace else "CREATE TABLE"
        self.db.execute(f"{verb} {table_name(dataset, table)} ({', '.join(definitions)})")

    def drop_table(self, dataset: str, table: str) -> None:
        self.require_table(dataset, table)
        self.db.execute(f"DROP TABLE {table_name(dataset, table)}")

    def count(self, dataset: str, table: str) -> int:
        row = self.db.execute(f"SELECT count(*) FROM {table_name(dataset, table)}").fetchone()
        return int(row[0]) if row else 0

    def rows(
        self,
        dataset: str,
        table: str,
        offset: int,
        limit: int,
        selected: Sequence[str] | None = None,
        int64_timestamps: bool = True,
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """One page of rows in the REST form ``{"f": [{"v": ...}]}``, and the schema of the columns sent."""
        columns = self.require_table(dataset, table)
        if selected:
            by_name = {column[0]: column for column in columns}
            unknown = [name for name in selected if name not in by_name]
            if unknown:
                raise BigQueryError(400, "invalid", f"Unrecognized name in selectedFields: {unknown[0]}")
            columns = [by_name[name] for name in selected]
        expressions = ", ".join(value_expression(name, data_type, int64_timestamps) for name, data_type, _ in columns)
        page = self.db.execute(
            f"SELECT {expressions} FROM {table_name(dataset, table)} LIMIT {int(limit)} OFFSET {int(offset)}"
        ).fetchall()
        encoded = [{"f": [{"v": _cell(value)} for value in row]} for row in page]
        return encoded, [bigquery_field(*column) for column in columns]

    # Queries -------------------------------------------------------------------------------
    def run_script(self, sql: str, parameters: Mapping[str, Any], job_id: str) -> ScriptResult:
        """Run every statement; the last one's rows (a SELECT) go to a results table named after the job."""
        try:
            statements = split_statements(sql)
        except SqlError as error:
            raise BigQueryError(400, "invalidQuery", f"Syntax error: {error}") from None
        if not statements:
            raise BigQueryError(400, "invalidQuery", "Syntax error: the query is empty.")
        result: ScriptResult = ScriptResult(None, "SCRIPT", None)
        try:
            for position, statement in enumerate(statements):
                last = position == len(statements) - 1
                result = self._run_statement(statement, parameters, job_id if last else None)
        except duckdb.Error as error:
            self._rollback()
            raise query_error(error) from None
        return result if len(statements) == 1 else ScriptResult(result.result_table, "SCRIPT", result.affected_rows)

    def describe(self, sql: str, parameters: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The columns a query would return, without running it (a dry run); errors as a run's."""
        try:
            statements = split_statements(sql)
        except SqlError as error:
            raise BigQueryError(400, "invalidQuery", f"Syntax error: {error}") from None
        if len(statements) != 1 or first_word(statements[0]) not in ("SELECT", "WITH"):
            raise BigQueryError(400, "invalidQuery", "Dry runs of scripts and DDL are not emulated; send one SELECT.")
        statement = statements[0]
        used = {name: value for name, value in parameters.items() if f"${name}" in statement}
        try:
            described = self.db.execute(f"DESCRIBE {statement}", used).fetchall()
        except duckdb.Error as error:
            raise query_error(error) from None
        return [bigquery_field(str(name), str(data_type), True) for name, data_type, *_ in described]

    def _run_statement(self, statement: str, parameters: Mapping[str, Any], job_id: str | None) -> ScriptResult:
        used = {name: value for name, value in parameters.items() if f"${name}" in statement}
        word = first_word(statement)
        if word in ("SELECT", "WITH") or statement.startswith("("):
            if job_id is None:
                self.db.execute(statement, used)
                return ScriptResult(None, "SELECT", None)
            target = table_name(RESULTS_SCHEMA, job_id)
            self.db.execute(f"CREATE TABLE {target} AS {statement}", used)
            return ScriptResult(job_id, "SELECT", None)
        cursor = self.db.execute(statement, used)
        affected = None
        if word in ("INSERT", "UPDATE", "DELETE", "MERGE"):
            row = cursor.fetchone()
            affected = int(row[0]) if row else 0
        return ScriptResult(None, word, affected)

    def _rollback(self) -> None:
        with contextlib.suppress(duckdb.Error):  # no transaction was open
            self.db.execute("ROLLBACK")

    # Loads ---------------------------------------------------------------------------------
    def load(self, dataset: str, table: str, path: Path, source_format: str, write_disposition: str) -> int:
        """Load a file into an existing table; WRITE_TRUNCATE replaces its rows in one transaction."""
        columns = self.require_table(dataset, table)
        if path.stat().st_size == 0:
            reader = None
        elif source_format == "NEWLINE_DELIMITED_JSON":
            types = ", ".join(
                f"'{name.replace(chr(39), chr(39) * 2)}': '{data_type}'" for name, data_type, _ in columns
            )
            reader = f"read_json('{path}', format = 'newline_delimited', columns = {{{types}}})"
        elif source_format == "PARQUET":
            json_columns = [name for name, data_type, _ in columns if data_type == "JSON"]
            if json_columns:
                # BigQuery: "the source data must be in CSV, Avro, or JSON format" to load JSON columns.
                raise BigQueryError(
                    400,
                    "invalid",
                    f"Column {json_columns[0]} is JSON; JSON columns load only from CSV, Avro or "
                    "newline-delimited JSON, not Parquet.",
                )
            reader = f"read_parquet('{path}')"
        else:
            raise BigQueryError(400, "invalid", f"sourceFormat {source_format} is not emulated.")
        target = table_name(dataset, table)
        self.db.execute("BEGIN TRANSACTION")
        try:
            if write_disposition == "WRITE_TRUNCATE":
                self.db.execute(f"DELETE FROM {target}")
            elif write_disposition == "WRITE_EMPTY" and self.count(dataset, table):
                raise BigQueryError(400, "duplicate", f"Already Exists: Table {dataset}.{table} is not empty")
            loaded = 0
            if reader is not None:
                before = self.count(dataset, table)
                self.db.execute(f"INSERT INTO {target} BY NAME SELECT * FROM {reader}")
                loaded = self.count(dataset, table) - before
            self.db.execute("COMMIT")
        except duckdb.Error as error:
            self._rollback()
            raise BigQueryError(
                400, "invalid", f"Error while reading data, error message: {_first_line(error)}"
            ) from None
        except BigQueryError:
            self._rollback()
            raise
        return loaded

    def parquet_fields(self, path: Path) -> list[dict[str, Any]]:
        """The schema a Parquet file describes (what a load without a schema creates)."""
        described = self.db.execute(f"DESCRIBE SELECT * FROM read_parquet('{path}')").fetchall()
        return [bigquery_field(str(name), str(data_type), True) for name, data_type, *_ in described]


def query_error(error: duckdb.Error) -> BigQueryError:
    """A DuckDB error in BigQuery's words: a missing table is ``notFound`` (404), the rest ``invalidQuery``."""
    message = _first_line(error)
    missing = re.search(r"Table with name (\S+) does not exist", message)
    if isinstance(error, duckdb.CatalogException) and missing:
        return BigQueryError(404, "notFound", f"Not found: Table {missing.group(1)} was not found (emulated)")
    return BigQueryError(400, "invalidQuery", message)


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def _cell(value: Any) -> Any:
    if isinstance(value, list):
        return [{"v": _cell(item)} for item in value]
    if isinstance(value, datetime.date | datetime.datetime):  # pragma: no cover - rendered as text in SQL
        return value.isoformat()
    return value
