"""Nightly ticket triage: classify yesterday's support tickets through OpenAI's Batch API.

export_tickets -> submit (LLMBatchSubmitOperator) -> wait (deferrable sensor) -> results

Each ticket gets a category, a priority and a one-line reason, as JSON that matches
``TRIAGE_SCHEMA``; the results file holds one row per ticket id. Only file URIs and batch ids
travel through XCom.

Connection ``llm_batch_openai`` (type ``llm_batch_openai``): the API key as password; for the
bundled emulator set the host to ``http://127.0.0.1:8765/openai/v1`` (``make demo`` does this).

Trigger with ``{"dry_run": true}`` (or ``airflow dags test nightly_ticket_triage -c '{"dry_run":
true}'``) to check every request and see the plan, tokens and cost without calling the provider.
"""

from __future__ import annotations

import os
import random
from typing import Any

import pendulum
from airflow.sdk import DAG, Param, task

from airflow_llm_batch import LLMBatchCompletionSensor, LLMBatchResultsOperator, LLMBatchSubmitOperator

CONN_ID = os.environ.get("LLM_BATCH_TRIAGE_CONN_ID", "llm_batch_openai")
MODEL = os.environ.get("LLM_BATCH_TRIAGE_MODEL", "gpt-4.1-mini")
TICKETS_PER_NIGHT = 200

TRIAGE_SCHEMA = {
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

SYSTEM_PROMPT = (
    "You triage customer support tickets. Answer with the ticket's category, its priority, "
    "and a one-line reason for both."
)
PROMPT = "Subject: {subject}\n\n{body}"

_SUBJECTS = {
    "billing": ["Charged twice this month", "Refund for annual plan", "Invoice shows wrong VAT"],
    "bug": ["Export button crashes the app", "Dashboard shows a blank page", "Sync fails with error 500"],
    "account": ["Cannot reset my password", "Please merge my two accounts", "Locked out after 2FA change"],
    "feature_request": ["Dark mode please", "Feature request: CSV import", "Add a Slack integration"],
    "other": ["Question about your office hours", "Partnership inquiry", "Thanks for the quick help"],
}


def synthetic_tickets(day: str, count: int = TICKETS_PER_NIGHT) -> list[dict[str, str]]:
    """Deterministic tickets for one day, so every run of the demo sees the same input."""
    rng = random.Random(day)
    tickets = []
    for number in range(count):
        category = rng.choice(sorted(_SUBJECTS))
        subject = rng.choice(_SUBJECTS[category])
        body = (
            f"Hello, {subject.lower()}. This is about my {category.replace('_', ' ')} issue; "
            f"it started {rng.randint(1, 14)} days ago and it is {rng.choice(['annoying', 'urgent', 'blocking'])}."
        )
        if number % 50 == 7:
            body += " The error page literally says {{ ds }} and {body}; please look."  # data, never a template
        tickets.append({"ticket_id": f"T-{day.replace('-', '')}-{number:04d}", "subject": subject, "body": body})
    return tickets


with DAG(
    dag_id="nightly_ticket_triage",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["llm-batch", "example"],
    doc_md=__doc__,
    params={"dry_run": Param(False, type="boolean", description="Check and plan only; call no provider")},
):

    @task
    def export_tickets(ds: str | None = None, ti: Any = None) -> str:
        """Stand-in for the nightly export: writes the day's tickets as JSONL into the run's folder of
        the step's work dir (S3 or GCS in production: the submit task may run on another worker)."""
        from airflow_llm_batch.batch.jsonl import JsonlWriter
        from airflow_llm_batch.work_dir import task_work_dir

        path = task_work_dir(ti, CONN_ID) / "tickets.jsonl"
        with JsonlWriter(path) as writer:
            writer.write_all(synthetic_tickets(str(ds)))
        return str(path)

    submit = LLMBatchSubmitOperator(
        task_id="submit",
        items=export_tickets(),
        id_field="ticket_id",
        system_prompt=SYSTEM_PROMPT,
        prompt_template=PROMPT,
        model=MODEL,
        parameters={"max_tokens": 200},
        response_schema=TRIAGE_SCHEMA,
        conn_id=CONN_ID,
        dry_run="{{ params.dry_run }}",
    )
    wait = LLMBatchCompletionSensor(task_id="wait", manifest=submit.output)
    results = LLMBatchResultsOperator(task_id="results", manifest=wait.output, output_format="jsonl")
    submit >> wait >> results
