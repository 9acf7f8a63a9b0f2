"""BigQuery in: a query or a table streamed page by page as items; and the connection plumbing the
BigQuery sink (``bigquery_sink.py``) uses (the settings themselves are ``batch/google_settings.py``).

``google.cloud.bigquery`` is imported inside functions only: DAG files build a
:class:`BigQuerySource` at parse time, and that import costs ~0.14 s per parse.

Credentials come from a connection (``conn_id``): the password is an OAuth access token, or the
extras hold a service-account key (``keyfile_dict`` / ``key_path``), else Application Default
Credentials. Extras ``project``, ``location`` and ``bigquery_endpoint`` (the emulator's
``{url}/bigquery``). The plain names and the Google provider's prefixed ones
(``extra__google_cloud_platform__project``) are both read. Secrets never reach ``repr`` or errors.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from airflow_llm_batch.batch.google_settings import GoogleSettings
from airflow_llm_batch.exceptions import ConfigurationError

DEFAULT_CONN_ID = "google_cloud_default"
DEFAULT_PAGE_SIZE = 10_000

__all__ = ["DEFAULT_CONN_ID", "BigQuerySource", "GoogleSettings", "api_message", "connection_settings", "table_id"]


def connection_settings(conn_id: str) -> GoogleSettings:
    """The settings of an Airflow connection (imported lazily: this module is also used without Airflow)."""
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)
    return GoogleSettings.from_parts(conn.password, dict(conn.extra_dejson or {}))


def table_id(table: str, default_project: str | None) -> str:
    """``project.dataset.table`` from ``bq://p.d.t``, ``p.d.t`` or ``d.t`` (the settings' project)."""
    name = table.removeprefix("bq://").strip("`").strip()
    parts = name.split(".")
    if len(parts) == 2 and default_project:
        parts = [default_project, *parts]
    if len(parts) != 3 or not all(parts):
        raise ConfigurationError(
            f"BigQuery table {table!r} is not 'project.dataset.table' (or 'dataset.table' with a project "
            "in the connection's extras)"
        )
    return ".".join(parts)


def api_message(error: BaseException) -> str:
    """The message of a Google API error without its request URL and job id noise."""
    message = getattr(error, "message", None) or str(error)
    return str(message).strip().splitlines()[0]


class BigQuerySource:
    """Items from BigQuery for ``LLMBatchSubmitOperator(items=...)``, read page by page.

    Give a ``query`` (GoogleSQL; Jinja works in it, ``{{ ds }}``) or a ``table``. Each row becomes
    one item: its columns are the fields the id and the prompt template use. Only one page of
    ``page_size`` rows is in memory at a time. A query that fails, a table or a column that does
    not exist fail the Submit task with BigQuery's reason and what to change, before anything is
    submitted (the Submit task validates every item before its first provider call).

    :param query: the query whose rows are the items; select the id column and the prompt's columns.
    :param table: instead of a query, ``project.dataset.table`` (or ``dataset.table``).
    :param columns: with ``table``, the columns to read (default: all of them).
    :param query_parameters: named ``@parameters`` of the query: ``{"day": "2026-01-01"}`` or
        ``{"day": ("DATE", "2026-01-01")}``; values are never pasted into the SQL.
    :param conn_id: the Google connection (token or key, ``project``, ``bigquery_endpoint``).
    :param page_size: rows per page fetched from BigQuery.
    :param settings: instead of ``conn_id``, ready :class:`GoogleSettings` (tests, scripts).
    """

    template_fields: Sequence[str] = ("query", "table")

    def __init__(
        self,
        *,
        query: str | None = None,
        table: str | None = None,
        columns: Sequence[str] | None = None,
        query_parameters: Mapping[str, Any] | None = None,
        conn_id: str = DEFAULT_CONN_ID,
        page_size: int = DEFAULT_PAGE_SIZE,
        settings: GoogleSettings | None = None,
    ) -> None:
        if (query is None) == (table is None):
            raise ConfigurationError("BigQuerySource: give exactly one of query= and table=")
        if columns is not None and query is not None:
            raise ConfigurationError("BigQuerySource: columns= applies to table=; select the columns in the query")
        if page_size < 1:
            raise ConfigurationError("BigQuerySource: page_size must be at least 1")
        self.query = query
        self.table = table
        self.columns = list(columns) if columns is not None else None
        self.query_parameters = dict(query_parameters or {})
        self.conn_id = conn_id
        self.page_size = page_size
        self.settings = settings

    def __repr__(self) -> str:
        what = f"query={self.query!r}" if self.query is not None else f"table={self.table!r}"
        return f"BigQuerySource({what}, conn_id={self.conn_id!r})"

    def iter_items(self) -> Iterator[dict[str, Any]]:
        """Each row as a dict of its columns, streamed; BigQuery errors become ConfigurationError."""
        from google.api_core.exceptions import GoogleAPIError

        settings = self.settings or connection_settings(self.conn_id)
        client = settings.bigquery_client()
        try:
            rows = self._run_query(client) if self.query is not None else self._read_table(client, settings)
            for row in rows:
                yield dict(row.items())
        except GoogleAPIError as error:
            raise ConfigurationError(self.explain(error)) from None
        finally:
            client.close()

    def _run_query(self, client: Any) -> Any:
        from google.cloud import bigquery

        config = bigquery.QueryJobConfig(use_legacy_sql=False, query_parameters=query_parameters(self.query_parameters))
        return client.query(str(self.query), job_config=config).result(page_size=self.page_size)

    def _read_table(self, client: Any, settings: GoogleSettings) -> Any:
        table = client.get_table(table_id(str(self.table), settings.project or client.project))
        available = [schema_field.name for schema_field in table.schema]
        missing = [name for name in self.columns or () if name not in available]
        if missing:
            raise ConfigurationError(
                f"BigQuery table {table.full_table_id} has no column(s) {missing}; it has {available}. "
                "Fix columns= of the BigQuerySource; nothing was submitted."
            )
        selected = [f for f in table.schema if f.name in self.columns] if self.columns else None
        return client.list_rows(table, selected_fields=selected, page_size=self.page_size)

    def as_sql(self, default_project: str | None) -> str:
        """The source as one GoogleSQL query: the query, or ``SELECT`` the columns ``FROM`` the table
        (for the Vertex path that builds request tables in SQL; the rows stay in BigQuery)."""
        if self.query is not None:
            return str(self.query)
        selected = ", ".join(f"`{name}`" for name in self.columns) if self.columns else "*"
        return f"SELECT {selected} FROM `{table_id(str(self.table), default_project)}`"

    def bound_parameters(self) -> list[Any]:
        """The query's ``@parameters`` as ``google.cloud.bigquery`` parameters."""
        return query_parameters(self.query_parameters)

    def explain(self, error: BaseException) -> str:
        """A BigQuery error about this source in words: what failed and what to change."""
        from google.api_core.exceptions import NotFound

        reason = api_message(error)
        if self.query is None:
            if isinstance(error, NotFound):
                return (
                    f"BigQuery source table {self.table!r} was not found ({reason}). Check table= "
                    "(project.dataset.table) and the connection's project; nothing was submitted."
                )
            return f"Reading BigQuery table {self.table!r} failed ({reason}); nothing was submitted."
        first_line = str(self.query).strip().splitlines()[0][:120] if str(self.query).strip() else ""
        if isinstance(error, NotFound):
            what = "the source query reads a table that does not exist"
            fix = "check the table names in the query (`project.dataset.table`)"
        else:
            what = "BigQuery rejected the source query"
            fix = "fix the query (rendered, it begins: " + repr(first_line) + ")"
        return f"{what}: {reason}. To go on, {fix}; nothing was submitted."


def query_parameters(values: Mapping[str, Any]) -> list[Any]:
    """``{"name": value}`` or ``{"name": ("TYPE", value)}`` as BigQuery scalar parameters."""
    from google.cloud import bigquery

    parameters = []
    for name, value in values.items():
        if isinstance(value, tuple):
            type_name, raw = value
        else:
            type_name = {bool: "BOOL", int: "INT64", float: "FLOAT64"}.get(type(value), "STRING")
            raw = value
        parameters.append(bigquery.ScalarQueryParameter(name, type_name, raw))
    return parameters
