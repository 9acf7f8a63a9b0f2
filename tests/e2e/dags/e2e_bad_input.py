"""Three submit tasks whose input is wrong in three ways; each must fail before any API call."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_llm_batch import LLMBatchSubmitOperator

COMMON = {
    "model": "gpt-4.1-mini",
    "conn_id": "llm_batch_openai",
    "id_field": "ticket_id",
    "prompt_template": "{subject}: {body}",
    "retries": 0,
}

with DAG(dag_id="e2e_bad_input", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):
    LLMBatchSubmitOperator(
        task_id="missing_id",
        items=[{"ticket_id": "A-1", "subject": "s", "body": "b"}, {"subject": "no id here", "body": "b"}],
        **COMMON,
    )
    LLMBatchSubmitOperator(
        task_id="duplicate_id",
        items=[{"ticket_id": "D-7", "subject": "s", "body": "b"}, {"ticket_id": "D-7", "subject": "t", "body": "c"}],
        **COMMON,
    )
    LLMBatchSubmitOperator(
        task_id="missing_field",
        items=[{"ticket_id": "F-3", "subject": "s"}],
        **COMMON,
    )
