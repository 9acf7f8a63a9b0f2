"""The triage example's tickets, prompt and schema, night after night, with ``reuse=`` (docs/reuse.md).

The same 200 tickets are exported every night; ``E2E_NIGHT`` says which night it is, and each night
after the first changes the body of a tenth of them (a different tenth each night). Only those are
asked again; the rest are answered from the earlier nights. ``e2e_reuse_bigquery``: the first 50
of them in three tasks, the results loaded into a BigQuery table and the answers kept in another.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.sdk import DAG
from nightly_ticket_triage import PROMPT, SYSTEM_PROMPT, TRIAGE_SCHEMA, synthetic_tickets

from airflow_llm_batch import LLMBatchCompletionSensor, LLMBatchResultsOperator, LLMBatchSubmitOperator, llm_batch_step
from airflow_llm_batch.io.bigquery_sink import BigQuerySink

NIGHT = int(os.environ.get("E2E_NIGHT", "1"))


def tickets(night: int) -> list[dict[str, str]]:
    """The backlog on a night: every night after the first changed the tickets numbered ``night`` mod 10."""
    backlog = synthetic_tickets("2026-03-01")
    for number, ticket in enumerate(backlog):
        changed = [n for n in range(2, night + 1) if number % 10 == n % 10]
        if changed:
            ticket["body"] += f" Update on night {changed[-1]}: still not fixed."
    return backlog


with DAG(dag_id="e2e_reuse", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):
    llm_batch_step(
        "triage",
        max_item_retries=2,
        items=tickets(NIGHT),
        id_field="ticket_id",
        system_prompt=SYSTEM_PROMPT,
        prompt_template=PROMPT,
        model="gpt-4.1-mini",
        parameters={"max_tokens": 200},
        response_schema=TRIAGE_SCHEMA,
        conn_id="llm_batch_openai",
        reuse={"max_age": timedelta(days=30)},
    )


with DAG(dag_id="e2e_reuse_bigquery", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):
    submit = LLMBatchSubmitOperator(
        task_id="submit",
        items=tickets(NIGHT)[:50],
        id_field="ticket_id",
        system_prompt=SYSTEM_PROMPT,
        prompt_template=PROMPT,
        model="gpt-4.1-mini",
        parameters={"max_tokens": 200},
        response_schema=TRIAGE_SCHEMA,
        conn_id="llm_batch_openai",
        reuse={"max_age": timedelta(days=30), "table": "reuse.llm_batch_reuse"},  # through the sink's connection
    )
    wait = LLMBatchCompletionSensor(task_id="wait", manifest=submit.output)
    results = LLMBatchResultsOperator(
        task_id="results",
        manifest=wait.output,
        output_format="parquet",
        sink=BigQuerySink("reuse.ticket_labels", conn_id="google_cloud_default", typed_columns=True),
    )
    submit >> wait >> results
