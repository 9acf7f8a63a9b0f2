"""Benchmark 5: the nightly triage at scale, ``LLM_BATCH_BENCH_ITEMS`` tickets (100,000 by default).

export -> submit -> wait (deferrable) -> results (Parquet), against the emulator, with the prompt,
schema and ticket sizes of benchmark 2. Run by ``python -m bench.e2e``, never scheduled.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG, task

from airflow_llm_batch import LLMBatchCompletionSensor, LLMBatchResultsOperator, LLMBatchSubmitOperator

ITEMS = int(os.environ.get("LLM_BATCH_BENCH_ITEMS", "100000"))
SCHEMA = {
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

with DAG(dag_id="bench_e2e_triage", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):

    @task
    def export(ds: str | None = None) -> str:
        """Writes the tickets as JSONL (the stand-in for a warehouse export) and returns the URI."""
        from airflow.sdk import ObjectStoragePath

        from airflow_llm_batch.config import default_work_dir
        from bench.submit import write_items

        path = ObjectStoragePath(default_work_dir()) / "inputs" / "bench_e2e_triage" / f"{ds}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_items(path, ITEMS)
        return str(path)

    submit = LLMBatchSubmitOperator(
        task_id="submit",
        items=export(),
        id_field="ticket_id",
        system_prompt=(
            "You triage customer support tickets. Answer with the ticket's category, its priority, "
            "and a one-line reason for both."
        ),
        prompt_template="Subject: {subject}\n\n{body}",
        model="gpt-4.1-mini",
        parameters={"max_tokens": 200},
        response_schema=SCHEMA,
        conn_id="bench_openai",
    )
    wait = LLMBatchCompletionSensor(task_id="wait", manifest=submit.output, poll_interval=1)
    results = LLMBatchResultsOperator(task_id="results", manifest=submit.output, output_format="parquet")
    submit >> wait >> results
