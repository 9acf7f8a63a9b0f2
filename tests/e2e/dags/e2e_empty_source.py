"""An export that found nothing tonight: a clean zero-item run, not an error."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_llm_batch import LLMBatchCompletionSensor, LLMBatchResultsOperator, LLMBatchSubmitOperator

with DAG(dag_id="e2e_empty_source", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):
    submit = LLMBatchSubmitOperator(
        task_id="submit", items=[], prompt_template="{text}", model="gpt-4.1-mini", conn_id="llm_batch_openai"
    )
    wait = LLMBatchCompletionSensor(task_id="wait", manifest=submit.output)
    results = LLMBatchResultsOperator(task_id="results", manifest=submit.output)
    submit >> wait >> results
