"""Submit tasks whose input is wrong in one way each; every one must fail before any API call."""

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
OK = {"subject": "s", "body": "b"}

with DAG(dag_id="e2e_bad_input", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):
    LLMBatchSubmitOperator(
        task_id="missing_id", items=[{"ticket_id": "A-1", **OK}, {"subject": "no id here", "body": "b"}], **COMMON
    )
    LLMBatchSubmitOperator(task_id="empty_id", items=[{"ticket_id": "", **OK}], **COMMON)
    LLMBatchSubmitOperator(
        task_id="duplicate_id",
        items=[{"ticket_id": "D-7", **OK}, {"ticket_id": "D-7", "subject": "t", "body": "c"}],
        **COMMON,
    )
    LLMBatchSubmitOperator(task_id="missing_field", items=[{"ticket_id": "F-3", "subject": "s"}], **COMMON)
    LLMBatchSubmitOperator(
        task_id="request_too_big",
        items=[{"ticket_id": "B-1", "subject": "s", "body": "x" * 5000}],
        provider_limits={"max_request_bytes": 2000},
        **COMMON,
    )
    LLMBatchSubmitOperator(
        task_id="invalid_utf8",
        items=[{"ticket_id": "U-1", "subject": "s", "body": "caf\udce9 (a byte that is not UTF-8)"}],
        **COMMON,
    )
    LLMBatchSubmitOperator(
        task_id="wrong_model",
        items=[{"ticket_id": "M-1", **OK}],
        **{**COMMON, "model": "text-embedding-3-small"},
    )
