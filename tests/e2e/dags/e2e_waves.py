"""The waves DAG: a 20-chunk classification step under the provider's queue quota, set by env.

E2E_PROVIDER picks the connection (``waves_<provider>``: five items a chunk, no SDK retries, so a
429 on create is seen at once); E2E_QUOTA (JSON) is the task's ``queue_quota`` ("" = unknown: the
quota is learned from the provider's refusals); E2E_TIMEOUT the deadline in seconds;
E2E_CANCEL_ON_TIMEOUT "0" makes the wait fail at the deadline; E2E_DEFERRABLE "0" waits in poke mode;
E2E_INVALID_CHUNK makes one chunk's
batch fail validation as a whole (its model is unknown to the provider: chunk 3, OpenAI).
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG

from airflow_llm_batch import LLMBatchSubmitOperator, llm_batch_step

PROVIDER = os.environ.get("E2E_PROVIDER", "openai")
QUOTA = os.environ.get("E2E_QUOTA", "")
MODELS = {
    "openai": "gpt-4.1-mini",
    "anthropic": "claude-haiku-4-5",
    "gemini": "gemini-2.5-flash",
    "bedrock": "anthropic.claude-3-5-haiku-20241022-v1:0",
}
INVALID_CHUNK = int(os.environ.get("E2E_INVALID_CHUNK", "-1"))
ITEMS = [{"ticket_id": f"W-{n:03d}", "text": f"ticket {n:03d} about an invoice"} for n in range(100)]


class SubmitWithOneBadChunk(LLMBatchSubmitOperator):
    """Sends chunk E2E_INVALID_CHUNK with a request line the provider refuses while validating the
    file (an OpenAI ``url`` that is not the batch's endpoint), so that batch fails as a whole."""

    def _backend(self, hook: Any) -> Any:
        backend = super()._backend(hook)
        create = backend.submit_chunk

        def create_maybe_broken(chunk: Any, spec: Any, job_key: Any) -> str:
            if chunk.index == INVALID_CHUNK and self.retry_of is None:
                lines = chunk.path.read_bytes().splitlines(keepends=True)
                # The last line: the backend takes the batch's endpoint from the first one.
                lines[-1] = lines[-1].replace(b'"/v1/chat/completions"', b'"/v1/completions"')
                chunk.path.write_bytes(b"".join(lines))
            return str(create(chunk, spec, job_key))

        backend.submit_chunk = create_maybe_broken
        return backend


with DAG(dag_id="e2e_waves", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):
    llm_batch_step(
        "step",
        max_item_retries=1,
        submit_operator_class=SubmitWithOneBadChunk,
        items=ITEMS,
        id_field="ticket_id",
        prompt_template="Topic of: {text}",
        model=MODELS[PROVIDER],
        conn_id=f"waves_{PROVIDER}",
        queue_quota=json.loads(QUOTA) if QUOTA else None,
        timeout=timedelta(seconds=float(os.environ.get("E2E_TIMEOUT", "600"))),
        sensor_kwargs={
            "poll_interval": 0.3,
            "cancel_on_timeout": os.environ.get("E2E_CANCEL_ON_TIMEOUT", "1") == "1",
            "deferrable": os.environ.get("E2E_DEFERRABLE", "1") == "1",
        },
    )
