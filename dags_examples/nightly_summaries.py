"""Nightly summaries: one-paragraph summaries of the day's documents through Anthropic's Message Batches.

export_documents -> submit -> wait (deferrable) -> results

The long, shared system prompt is marked for prompt caching (``cache_system_prompt``): every
request of the batch repeats it, and cached input tokens cost a fraction of fresh ones.

Connection ``llm_batch_anthropic`` (type ``llm_batch_anthropic``): the API key as password; for
the bundled emulator set the host to ``http://127.0.0.1:8765/anthropic``.
"""

from __future__ import annotations

import os
import random
from typing import Any

import pendulum
from airflow.sdk import DAG, task

from airflow_llm_batch import LLMBatchCompletionSensor, LLMBatchResultsOperator, LLMBatchSubmitOperator

CONN_ID = os.environ.get("LLM_BATCH_SUMMARIES_CONN_ID", "llm_batch_anthropic")
MODEL = os.environ.get("LLM_BATCH_SUMMARIES_MODEL", "claude-sonnet-4-5")
DOCUMENTS_PER_NIGHT = 60

STYLE_GUIDE = """You write summaries for the company's morning digest.
Rules: one paragraph, at most three sentences, plain words, no marketing tone, no bullet points.
Start with the document's main decision or finding; then who is affected; then what happens next.
Never invent numbers or names that are not in the document. If the document has no clear point,
say so in one sentence."""

_TOPICS = ["pricing change", "incident review", "hiring plan", "vendor contract", "product launch", "audit finding"]
_TEAMS = ["finance", "platform", "sales", "support", "security", "design"]


def synthetic_documents(day: str, count: int = DOCUMENTS_PER_NIGHT) -> list[dict[str, str]]:
    rng = random.Random(f"docs-{day}")
    documents = []
    for number in range(count):
        topic, team = rng.choice(_TOPICS), rng.choice(_TEAMS)
        body = " ".join(
            f"The {team} team discussed the {topic}. Decision {n}: proceed with option {rng.choice('ABC')} "
            f"by week {rng.randint(1, 52)}."
            for n in range(rng.randint(3, 8))
        )
        documents.append({"doc_id": f"D-{day}-{number:03d}", "title": f"{team.title()} {topic}", "body": body})
    return documents


with DAG(
    dag_id="nightly_summaries",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["llm-batch", "example"],
    doc_md=__doc__,
):

    @task
    def export_documents(ds: str | None = None, ti: Any = None) -> str:
        """Stand-in for the nightly export, written into the run's folder of the step's work dir."""
        from airflow_llm_batch.batch.jsonl import JsonlWriter
        from airflow_llm_batch.work_dir import task_work_dir

        path = task_work_dir(ti, CONN_ID) / "documents.jsonl"
        with JsonlWriter(path) as writer:
            writer.write_all(synthetic_documents(str(ds)))
        return str(path)

    submit = LLMBatchSubmitOperator(
        task_id="submit",
        items=export_documents(),
        id_field="doc_id",
        system_prompt=STYLE_GUIDE,
        prompt_template="# {title}\n\n{body}",
        model=MODEL,
        parameters={"max_tokens": 300},
        provider_options={"cache_system_prompt": True},
        conn_id=CONN_ID,
    )
    wait = LLMBatchCompletionSensor(task_id="wait", manifest=submit.output)
    results = LLMBatchResultsOperator(task_id="results", manifest=wait.output, output_format="jsonl")
    submit >> wait >> results
