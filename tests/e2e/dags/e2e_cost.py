"""Cost and budget: the summary's cost from the emulator's token counts; a run over max_cost stops first."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_llm_batch import LLMBatchCompletionSensor, LLMBatchResultsOperator, LLMBatchSubmitOperator

RESULTS_ASSET = "llm-batch://e2e_cost/results"
ITEMS = [
    {"id": f"c-{n}", "text": f"cost item {n}: " + "the printer jams on every page. " * (1 + n % 4)} for n in range(30)
]

with DAG(dag_id="e2e_cost", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):
    submit = LLMBatchSubmitOperator(
        task_id="submit",
        items=ITEMS,
        prompt_template="Summarize: {text}",
        model="gpt-4.1-mini",
        parameters={"max_tokens": 60},
        conn_id="llm_batch_openai",
        max_cost=1.0,
    )
    wait = LLMBatchCompletionSensor(task_id="wait", manifest=submit.output, poll_interval=1)
    results = LLMBatchResultsOperator(task_id="results", manifest=wait.output, output_asset=RESULTS_ASSET)
    submit >> wait >> results

with DAG(dag_id="e2e_over_budget", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):
    submit = LLMBatchSubmitOperator(
        task_id="submit",
        items=ITEMS,
        prompt_template="Summarize: {text}",
        model="gpt-4.1-mini",
        parameters={"max_tokens": 60},
        conn_id="llm_batch_openai",
        max_cost=0.0001,
    )
    wait = LLMBatchCompletionSensor(task_id="wait", manifest=submit.output, poll_interval=1)
    results = LLMBatchResultsOperator(task_id="results", manifest=wait.output)
    submit >> wait >> results
