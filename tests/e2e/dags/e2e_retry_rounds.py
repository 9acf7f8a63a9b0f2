"""A classification step with retry rounds for the items that failed (provider chosen by env)."""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG

from airflow_llm_batch import llm_batch_step

PROVIDER = os.environ.get("E2E_PROVIDER", "openai")
MODELS = {"openai": "gpt-4.1-mini", "anthropic": "claude-haiku-4-5", "gemini": "gemini-2.5-flash"}
SCHEMA = {
    "type": "object",
    "properties": {"sentiment": {"type": "string", "enum": ["positive", "negative", "neutral"]}},
    "required": ["sentiment"],
}

with DAG(dag_id="e2e_retry_rounds", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):
    llm_batch_step(
        "classify",
        max_item_retries=int(os.environ.get("E2E_MAX_RETRIES", "2")),
        items=[{"review_id": f"R-{n:03d}", "text": f"review {n}: it was fine"} for n in range(60)],
        id_field="review_id",
        prompt_template="Sentiment of: {text}",
        model=MODELS[PROVIDER],
        response_schema=SCHEMA,
        conn_id=f"llm_batch_{PROVIDER}",
    )
