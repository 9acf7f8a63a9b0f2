"""One small classification per provider, for the triggerer restart test (tests/e2e/test_triggerer_restart.py).

submit -> wait (deferrable: the test kills the triggerer while its trigger polls) -> results.
Thirty items fit one batch on every provider.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_llm_batch import LLMBatchCompletionSensor, LLMBatchResultsOperator, LLMBatchSubmitOperator

MODELS = {"openai": "gpt-4.1-mini", "anthropic": "claude-haiku-4-5", "gemini": "gemini-2.5-flash"}
ITEMS = [{"ticket_id": f"R-{n:03d}", "text": f"ticket {n} about an invoice"} for n in range(30)]
SCHEMA = {
    "type": "object",
    "properties": {"topic": {"type": "string", "enum": ["billing", "bug", "other"]}},
    "required": ["topic"],
}

for provider, model in MODELS.items():
    with DAG(
        dag_id=f"e2e_triggerer_restart_{provider}",
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    ):
        submit = LLMBatchSubmitOperator(
            task_id="submit",
            items=ITEMS,
            id_field="ticket_id",
            prompt_template="Topic of: {text}",
            model=model,
            response_schema=SCHEMA,
            conn_id=f"llm_batch_{provider}",
        )
        wait = LLMBatchCompletionSensor(task_id="wait", manifest=submit.output)
        results = LLMBatchResultsOperator(task_id="results", manifest=submit.output)
        submit >> wait >> results
