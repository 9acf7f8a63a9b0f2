"""The fault-matrix DAG: a classification step with retry rounds, its provider and faults set by env.

E2E_PROVIDER picks the connection and model; E2E_CRASH makes the first try of the submit task die
at a chosen point (the retry must re-attach instead of paying again):
- ``after_record``: the batch was created and recorded in the state file, the XCom never written;
- ``before_record``: the create call returned, the state file never heard of it.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG

from airflow_llm_batch import LLMBatchSubmitOperator, llm_batch_step

PROVIDER = os.environ.get("E2E_PROVIDER", "openai")
CRASH = os.environ.get("E2E_CRASH", "")
MODELS = {
    "openai": "gpt-4.1-mini",
    "anthropic": "claude-haiku-4-5",
    "gemini": "gemini-2.5-flash",
    "azure_openai": "gpt-4.1-mini",  # a deployment name
    "openai_compatible": "gpt-4.1-mini",
    "openai_responses": "gpt-4.1-mini",  # OpenAI, every chat job on /v1/responses (the connection's extra)
    "bedrock": "anthropic.claude-3-5-haiku-20241022-v1:0",
}
SCHEMA = {
    "type": "object",
    "properties": {"topic": {"type": "string", "enum": ["billing", "bug", "other"]}},
    "required": ["topic"],
}


def _first_try(context: Any) -> bool:
    return int(context["ti"].try_number) <= 1


class CrashingSubmit(LLMBatchSubmitOperator):
    """Dies on its first try at the point E2E_CRASH names (retry rounds never crash)."""

    def execute(self, context: Any) -> dict[str, Any]:
        self._context = context
        manifest = super().execute(context)
        if CRASH == "after_record" and self.retry_of is None and _first_try(context):
            raise RuntimeError("simulated worker crash: batches created and recorded, XCom not written")
        return manifest

    def _backend(self, hook: Any) -> Any:
        backend = super()._backend(hook)
        if CRASH == "before_record" and self.retry_of is None and _first_try(self._context):
            create = backend.submit_chunk

            def create_then_die(*args: Any, **kwargs: Any) -> str:
                create(*args, **kwargs)
                raise RuntimeError("simulated worker crash: the create call returned, nothing recorded")

            backend.submit_chunk = create_then_die
        return backend


with DAG(dag_id="e2e_faults", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):
    llm_batch_step(
        "step",
        max_item_retries=2,
        submit_operator_class=CrashingSubmit,
        items=[{"ticket_id": f"F-{n:03d}", "text": f"ticket {n} about an invoice"} for n in range(50)],
        id_field="ticket_id",
        prompt_template="Topic of: {text}",
        model=MODELS[PROVIDER],
        response_schema=SCHEMA,
        conn_id=f"llm_batch_{PROVIDER}",
        retries=2,
        retry_delay=timedelta(seconds=0),
    )
