"""A step with quality gates: min_success_rate on ``final`` (E2E_GATE_MODE: fail or warn) and a
max_batch_age short enough that the wait task warns while the emulator's batch runs."""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG

from airflow_llm_batch import llm_batch_step

SCHEMA = {
    "type": "object",
    "properties": {"topic": {"type": "string", "enum": ["billing", "bug", "other"]}},
    "required": ["topic"],
}

with DAG(dag_id="e2e_gates", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):
    llm_batch_step(
        "step",
        max_item_retries=0,
        items=[{"ticket_id": f"G-{n:03d}", "text": f"ticket {n} about an invoice"} for n in range(50)],
        id_field="ticket_id",
        prompt_template="Topic of: {text}",
        model="gpt-4.1-mini",
        response_schema=SCHEMA,
        conn_id="llm_batch_openai",
        min_success_rate=0.95,
        on_gate_breach=os.environ.get("E2E_GATE_MODE", "fail"),
        max_batch_age=1,
    )
