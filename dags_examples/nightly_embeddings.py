"""Nightly embeddings: embed the day's knowledge-base articles into a Parquet file.

export_articles -> submit (kind="embedding") -> wait (deferrable) -> results (Parquet)

Runs on Gemini by default; switch to OpenAI by switching the connection and the model only:
``LLM_BATCH_EMBEDDINGS_CONN_ID=llm_batch_openai LLM_BATCH_EMBEDDINGS_MODEL=text-embedding-3-small``
(or edit the two constants). Anthropic has no embeddings API.
"""

from __future__ import annotations

import os
import random
from typing import Any

import pendulum
from airflow.sdk import DAG, task

from airflow_llm_batch import LLMBatchCompletionSensor, LLMBatchResultsOperator, LLMBatchSubmitOperator

CONN_ID = os.environ.get("LLM_BATCH_EMBEDDINGS_CONN_ID", "llm_batch_gemini")
MODEL = os.environ.get("LLM_BATCH_EMBEDDINGS_MODEL", "gemini-embedding-001")
DIMENSIONS = 256
ARTICLES_PER_NIGHT = 120

_SUBJECTS = ["reset a password", "export invoices", "connect Slack", "rotate API keys", "invite a teammate"]


def synthetic_articles(day: str, count: int = ARTICLES_PER_NIGHT) -> list[dict[str, str]]:
    rng = random.Random(f"kb-{day}")
    return [
        {
            "article_id": f"KB-{number:05d}",
            "text": f"How to {rng.choice(_SUBJECTS)}: open Settings, choose step {rng.randint(1, 9)}, and confirm.",
        }
        for number in range(count)
    ]


with DAG(
    dag_id="nightly_embeddings",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["llm-batch", "example"],
    doc_md=__doc__,
):

    @task
    def export_articles(ds: str | None = None, ti: Any = None) -> str:
        """Stand-in for the nightly export, written into the run's folder of the step's work dir."""
        from airflow_llm_batch.batch.jsonl import JsonlWriter
        from airflow_llm_batch.work_dir import task_work_dir

        path = task_work_dir(ti, CONN_ID) / "articles.jsonl"
        with JsonlWriter(path) as writer:
            writer.write_all(synthetic_articles(str(ds)))
        return str(path)

    submit = LLMBatchSubmitOperator(
        task_id="submit",
        items=export_articles(),
        id_field="article_id",
        kind="embedding",
        prompt_template="{text}",
        model=MODEL,
        parameters={"dimensions": DIMENSIONS},
        conn_id=CONN_ID,
    )
    wait = LLMBatchCompletionSensor(task_id="wait", manifest=submit.output)
    results = LLMBatchResultsOperator(task_id="results", manifest=wait.output, output_format="parquet")
    submit >> wait >> results
