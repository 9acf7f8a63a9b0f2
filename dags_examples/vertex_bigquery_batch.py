"""Gemini on Vertex AI with BigQuery in and out: the batch reads and writes BigQuery tables.

documents (BigQuery table) -> submit (request tables built in SQL + batch prediction jobs) -> wait
-> results -> summaries table

On Vertex AI the batch prediction job itself reads a BigQuery request table (one
``GenerateContentRequest`` per row, in a ``request`` JSON column) and writes a BigQuery output
table (``response`` and ``status`` per row). The Submit task has BigQuery build the request table
with one ``CREATE TABLE ... AS SELECT`` over the documents (the prompt is put together in SQL, so
no document passes through the worker), checks it with one query, and creates one job per
request table in ``<project>.llm_batch``, labelled with the task's job key; the Results task
reads the output tables page by page into the usual result rows (the same columns as every
provider) and loads them into the summaries table. ``requests_in_sql=False`` builds the requests
in the worker instead (docs/bigquery.md).

Connections: ``llm_batch_vertex`` (type ``llm_batch_vertex``; password: an OAuth access token, or
empty for Application Default Credentials; extras ``project``, ``location``, ``bigquery_dataset``
(default ``llm_batch``); for the bundled emulator host ``http://127.0.0.1:8765/vertex`` and extra
``bigquery_endpoint`` ``http://127.0.0.1:8765/bigquery``). BigQuery source and sink use the same
connection here.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG

from airflow_llm_batch import LLMBatchCompletionSensor, LLMBatchResultsOperator, LLMBatchSubmitOperator
from airflow_llm_batch.io.bigquery import BigQuerySource
from airflow_llm_batch.io.bigquery_sink import BigQuerySink

CONN_ID = os.environ.get("LLM_BATCH_VERTEX_CONN_ID", "llm_batch_vertex")
MODEL = os.environ.get("LLM_BATCH_VERTEX_MODEL", "gemini-2.5-flash")
DOCUMENTS_TABLE = os.environ.get("LLM_BATCH_VERTEX_DOCUMENTS_TABLE", "content.documents")
SUMMARIES_TABLE = os.environ.get("LLM_BATCH_VERTEX_SUMMARIES_TABLE", "content.document_summaries")

with DAG(
    dag_id="vertex_bigquery_batch",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["llm-batch", "example", "bigquery", "vertex"],
    doc_md=__doc__,
):
    submit = LLMBatchSubmitOperator(
        task_id="submit",
        items=BigQuerySource(table=DOCUMENTS_TABLE, columns=["doc_id", "title", "text"], conn_id=CONN_ID),
        id_field="doc_id",
        system_prompt="Summarize the document in two sentences for a weekly digest.",
        prompt_template="{title}\n\n{text}",
        model=MODEL,
        parameters={"maxOutputTokens": 256, "temperature": 0.2},
        conn_id=CONN_ID,
    )
    wait = LLMBatchCompletionSensor(task_id="wait", manifest=submit.output)
    results = LLMBatchResultsOperator(
        task_id="results",
        manifest=wait.output,
        output_format="parquet",
        sink=BigQuerySink(SUMMARIES_TABLE, conn_id=CONN_ID),
    )
    submit >> wait >> results
