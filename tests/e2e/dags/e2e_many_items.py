"""10,000 items split into ten batches: the XCom values must stay small (control, never data)."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, task

from airflow_llm_batch import LLMBatchCompletionSensor, LLMBatchResultsOperator, LLMBatchSubmitOperator

with DAG(dag_id="e2e_many_items", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):

    @task
    def export(ds: str | None = None) -> str:
        from airflow.sdk import ObjectStoragePath

        from airflow_llm_batch.batch.jsonl import JsonlWriter
        from airflow_llm_batch.config import default_work_dir

        path = ObjectStoragePath(default_work_dir()) / "inputs" / "e2e_many_items" / f"{ds}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with JsonlWriter(path) as writer:
            writer.write_all({"doc_id": f"doc-{n:05d}", "text": f"document number {n}"} for n in range(10_000))
        return str(path)

    submit = LLMBatchSubmitOperator(
        task_id="submit",
        items=export(),
        id_field="doc_id",
        prompt_template="Summarize: {text}",
        model="gpt-4.1-mini",
        conn_id="llm_batch_openai",
        provider_limits={"max_requests": 1000},
    )
    wait = LLMBatchCompletionSensor(task_id="wait", manifest=submit.output)
    results = LLMBatchResultsOperator(task_id="results", manifest=submit.output, output_format="parquet")
    submit >> wait >> results
