"""The reuse store's BigQuery table for a job with a BigQuery sink (``reuse={"table": ...}``, ``docs/reuse.md``).

The table uses the sink's connection (its credentials and project), so the Submit task looks for
the sink on the Results (or consolidating) tasks downstream of it; without one, ``table`` is a
configuration error before any API call. The manifest then carries the table, its connection id
and the task whose answers it keeps, and every Results task of the job (retry rounds too, which
have no sink) opens the table from those to store its answers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from airflow_llm_batch.batch.records import JobKey
from airflow_llm_batch.batch.reuse_table import ReuseTable
from airflow_llm_batch.exceptions import ConfigurationError
from airflow_llm_batch.io.bigquery import connection_settings, table_id
from airflow_llm_batch.io.bigquery_sink import BigQuerySink


def reuse_table_for(task_id: str, table: str, downstream: Iterable[Any], job_key: JobKey) -> ReuseTable:
    """The Submit task's store: ``table`` through the connection of the first BigQuery sink among
    the ``downstream`` tasks (``sink=`` of a Results or consolidating task)."""
    sink = next((task.sink for task in downstream if isinstance(getattr(task, "sink", None), BigQuerySink)), None)
    if sink is None:
        raise ConfigurationError(
            f"{task_id}: reuse 'table' ({table!r}) keeps the answers in BigQuery through the job's BigQuery "
            "sink, and no task after this one has sink=BigQuerySink(...). Give the Results task a BigQuery "
            "sink, or leave out 'table' to keep the answers in the work dir. Nothing was submitted."
        )
    settings = sink.settings or connection_settings(sink.conn_id)
    return ReuseTable(settings, table_id(table, settings.project), job_key.dag_id, job_key.task_id, sink.conn_id)


def reopen_reuse_table(reuse: Mapping[str, Any]) -> ReuseTable:
    """The table a Submit task's manifest names (``extra["reuse"]``), for a Results task to store in."""
    dag_id, task_id = reuse["scope"]
    return ReuseTable(connection_settings(reuse["conn_id"]), reuse["table"], dag_id, task_id, reuse["conn_id"])
