"""The triage step with a retry round, for the CeleryExecutor test (tests/deployment/test_celery_executor.py).

The results tasks go to the Celery queue ``results``, which only the second worker serves, and every
other task to the default queue of the first: each hand-over between submit and results crosses
machines that share no disk, so the request, state and result files must travel through the S3
work dir (``[llm_batch] work_dir``, the same on every worker).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_llm_batch import llm_batch_step

RESULTS_QUEUE = "results"
IDS = [f"C-{n:03d}" for n in range(40)]
SCHEMA = {
    "type": "object",
    "properties": {"topic": {"type": "string", "enum": ["billing", "bug", "other"]}},
    "required": ["topic"],
}

with DAG(dag_id="deploy_celery_triage", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")) as dag:
    llm_batch_step(
        "triage",
        max_item_retries=1,
        items=[{"ticket_id": item_id, "text": f"ticket {item_id} about an invoice"} for item_id in IDS],
        id_field="ticket_id",
        prompt_template="Topic of: {text}",
        model="gpt-4.1-mini",
        response_schema=SCHEMA,
        conn_id="llm_batch_openai",
    )
    for task in dag.tasks:
        if task.task_id.endswith("results"):
            task.queue = RESULTS_QUEUE
