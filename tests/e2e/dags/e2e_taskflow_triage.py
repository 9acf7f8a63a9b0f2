"""The triage example written with TaskFlow: ``@task.llm_batch`` instead of the three operators."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, task

# The example DAG's file sits in the same DAG folder (on sys.path in every Airflow process).
from nightly_ticket_triage import CONN_ID, MODEL, PROMPT, SYSTEM_PROMPT, TRIAGE_SCHEMA, synthetic_tickets

with DAG(
    dag_id="e2e_taskflow_triage",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
):

    @task.llm_batch(
        id_field="ticket_id",
        system_prompt=SYSTEM_PROMPT,
        prompt_template=PROMPT,
        model=MODEL,
        parameters={"max_tokens": 200},
        response_schema=TRIAGE_SCHEMA,
        conn_id=CONN_ID,
    )
    def tickets(ds: str | None = None) -> list[dict[str, str]]:
        return synthetic_tickets(str(ds))

    tickets()
