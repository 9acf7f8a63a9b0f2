"""Nightly ticket triage from BigQuery to BigQuery, on any provider.

tickets (BigQuery query, page by page) -> submit -> wait (deferrable) -> results -> labels table

The day's tickets are read with a templated query, classified through the batch
API of whichever provider the connection names, and the labels are loaded into a BigQuery table
with load jobs: the result columns, ``json`` as a JSON column, ``category`` / ``priority`` /
``reason`` as typed columns, and ``dag_id, run_id, task_id``. Running the results task again for
the same DAG run replaces that run's rows instead of adding more.

Connections: ``LLM_BATCH_BQ_TRIAGE_CONN_ID`` (default ``llm_batch_openai``) for the LLM, and
``google_cloud_default`` for BigQuery (password: an OAuth token, or a key in the extras, or empty
for Application Default Credentials; extras ``project`` and, for the bundled emulator,
``bigquery_endpoint``: ``http://127.0.0.1:8765/bigquery``). The dataset of the labels table must exist.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG

from airflow_llm_batch import LLMBatchCompletionSensor, LLMBatchResultsOperator, LLMBatchSubmitOperator
from airflow_llm_batch.io.bigquery import BigQuerySource
from airflow_llm_batch.io.bigquery_sink import BigQuerySink

CONN_ID = os.environ.get("LLM_BATCH_BQ_TRIAGE_CONN_ID", "llm_batch_openai")
MODEL = os.environ.get("LLM_BATCH_BQ_TRIAGE_MODEL", "gpt-4.1-mini")
BIGQUERY_CONN_ID = os.environ.get("LLM_BATCH_BIGQUERY_CONN_ID", "google_cloud_default")
TICKETS_TABLE = os.environ.get("LLM_BATCH_BQ_TICKETS_TABLE", "support.tickets")
LABELS_TABLE = os.environ.get("LLM_BATCH_BQ_LABELS_TABLE", "support.ticket_labels")

TRIAGE_SCHEMA = {
    "title": "ticket_triage",
    "type": "object",
    "properties": {
        "category": {"type": "string", "enum": ["billing", "bug", "account", "feature_request", "other"]},
        "priority": {"type": "string", "enum": ["low", "medium", "high", "urgent"]},
        "reason": {"type": "string", "maxLength": 200},
    },
    "required": ["category", "priority", "reason"],
    "additionalProperties": False,
}

# Jinja renders the date before the query runs; the ticket text itself never passes through Jinja.
# The run's logical date when it has one (a scheduled run: the day of its data interval), else the
# day it was triggered (a manual run from the UI has no logical date in Airflow 3, and no {{ ds }}).
TICKETS_QUERY = f"""
SELECT ticket_id, subject, body
FROM `{TICKETS_TABLE}`
WHERE created_date = DATE '{{{{ (dag_run.logical_date or dag_run.run_after) | ds }}}}'
"""

with DAG(
    dag_id="nightly_bigquery_triage",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["llm-batch", "example", "bigquery"],
    doc_md=__doc__,
):
    submit = LLMBatchSubmitOperator(
        task_id="submit",
        items=BigQuerySource(query=TICKETS_QUERY, conn_id=BIGQUERY_CONN_ID, page_size=5_000),
        id_field="ticket_id",
        system_prompt="You triage customer support tickets: category, priority and a one-line reason.",
        prompt_template="Subject: {subject}\n\n{body}",
        model=MODEL,
        parameters={"max_tokens": 200},
        response_schema=TRIAGE_SCHEMA,
        conn_id=CONN_ID,
    )
    wait = LLMBatchCompletionSensor(task_id="wait", manifest=submit.output)
    results = LLMBatchResultsOperator(
        task_id="results",
        manifest=wait.output,
        output_format="parquet",
        sink=BigQuerySink(LABELS_TABLE, conn_id=BIGQUERY_CONN_ID, typed_columns=True),
    )
    submit >> wait >> results
