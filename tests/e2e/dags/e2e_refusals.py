"""Submit -> wait -> results while the test makes the provider refuse the wait (tests/e2e/test_refusals.py).

E2E_PROVIDER picks the connection and model; the sensor polls every second so a refusal shows
within a second of the test causing it.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG

from airflow_llm_batch import LLMBatchCompletionSensor, LLMBatchResultsOperator, LLMBatchSubmitOperator

PROVIDER = os.environ.get("E2E_PROVIDER", "openai")
MODELS = {"openai": "gpt-4.1-mini", "anthropic": "claude-haiku-4-5", "gemini": "gemini-2.5-flash"}

with DAG(dag_id="e2e_refusals", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):
    submit = LLMBatchSubmitOperator(
        task_id="submit",
        items=[{"id": f"r-{n}", "text": f"item {n}"} for n in range(6)],
        prompt_template="Summarize: {text}",
        model=MODELS[PROVIDER],
        conn_id=f"llm_batch_{PROVIDER}",
    )
    wait = LLMBatchCompletionSensor(task_id="wait", manifest=submit.output, poll_interval=1)
    results = LLMBatchResultsOperator(task_id="results", manifest=wait.output)
    submit >> wait >> results
