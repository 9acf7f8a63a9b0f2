"""Vertex AI with the request tables built in BigQuery SQL: a templated query in, labels out.

``e2e_vertex_sql``: submit -> wait -> results into a BigQuery table (``e2e_vertex_sql_in_worker``:
the same with ``requests_in_sql=False``). ``e2e_vertex_sql_retry``: the
same query through ``llm_batch_step`` with retry rounds (selected in SQL from the first round's
request tables). The date works for scheduled runs and for manual runs without a logical date.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_llm_batch import LLMBatchCompletionSensor, LLMBatchResultsOperator, LLMBatchSubmitOperator, llm_batch_step
from airflow_llm_batch.io.bigquery import BigQuerySource
from airflow_llm_batch.io.bigquery_sink import BigQuerySink

CONN_ID = "llm_batch_vertex"
QUERY = """
SELECT ticket_id, subject, body
FROM `support_sql.tickets`
WHERE created_date = DATE '{{ (dag_run.logical_date or dag_run.run_after) | ds }}'
"""
SCHEMA = {
    "type": "object",
    "properties": {"category": {"type": "string", "enum": ["billing", "bug", "other"]}},
    "required": ["category"],
}
COMMON = {
    "id_field": "ticket_id",
    "system_prompt": "Triage the ticket.",
    "prompt_template": 'Subject: "{subject}"\n\n{body}',
    "model": "gemini-2.5-flash",
    "parameters": {"maxOutputTokens": 128},
    "response_schema": SCHEMA,
    "conn_id": CONN_ID,
}
START = pendulum.datetime(2026, 1, 1, tz="UTC")

# The default (requests built in SQL), and the worker path forced with requests_in_sql=False.
for dag_id, requests_in_sql in (("e2e_vertex_sql", None), ("e2e_vertex_sql_in_worker", False)):
    with DAG(dag_id=dag_id, schedule=None, start_date=START):
        submit = LLMBatchSubmitOperator(
            task_id="submit",
            items=BigQuerySource(query=QUERY, conn_id=CONN_ID),
            requests_in_sql=requests_in_sql,
            **COMMON,
        )
        wait = LLMBatchCompletionSensor(task_id="wait", manifest=submit.output, poll_interval=1)
        results = LLMBatchResultsOperator(
            task_id="results",
            manifest=submit.output,
            sink=BigQuerySink("support_sql.ticket_labels", conn_id=CONN_ID, typed_columns=True),
        )
        submit >> wait >> results

# Bad rows: S-001 takes S-000's id, S-002 has no body. Fails in the check query, before any Vertex call.
BAD_QUERY = """
SELECT CASE WHEN ticket_id = 'S-001' THEN 'S-000' ELSE ticket_id END AS ticket_id, subject,
       CASE WHEN ticket_id = 'S-002' THEN NULL ELSE body END AS body
FROM `support_sql.tickets`
"""
with DAG(dag_id="e2e_vertex_sql_bad", schedule=None, start_date=START):
    LLMBatchSubmitOperator(task_id="submit", items=BigQuerySource(query=BAD_QUERY, conn_id=CONN_ID), **COMMON)

with DAG(dag_id="e2e_vertex_sql_retry", schedule=None, start_date=START):
    llm_batch_step(
        "classify",
        max_item_retries=2,
        items=BigQuerySource(query=QUERY, conn_id=CONN_ID),
        sensor_kwargs={"poll_interval": 1},
        **COMMON,
    )
