"""The sensor without deferral: poke mode in the worker, same result."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_llm_batch import LLMBatchCompletionSensor, LLMBatchResultsOperator, LLMBatchSubmitOperator

with DAG(dag_id="e2e_poke_mode", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):
    submit = LLMBatchSubmitOperator(
        task_id="submit",
        items=[{"id": f"p-{n}", "text": f"poke item {n}"} for n in range(12)],
        prompt_template="Summarize: {text}",
        model="gpt-4.1-mini",
        conn_id="llm_batch_openai",
    )
    wait = LLMBatchCompletionSensor(
        task_id="wait", manifest=submit.output, deferrable=False, mode="poke", poll_interval=1
    )
    results = LLMBatchResultsOperator(task_id="results", manifest=wait.output)
    submit >> wait >> results
