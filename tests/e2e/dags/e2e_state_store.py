"""Where the job's record lives, for tests/e2e/test_state_store.py: submit -> wait -> results.

One DAG per provider, ``e2e_state_store_<provider>``; sixty items in batches of twenty (three
chunks). The run's conf sets the faults, each on the task's first try only:

- ``{"crash": "lose_work_dir"}``: the submit task dies after it created and recorded its batches
  (XCom never written) and takes the job's folder in the work dir with it, so its retry runs as on
  another worker that never saw the first one's disk;
- ``{"crash": "keep_work_dir"}``: the same crash, the work dir kept (a shared disk);
- ``{"lose_work_dir_before_results": true}``: the job's folder is deleted after the batches ended,
  before the results task reads them (that task then fails; the test clears the run).

``e2e_state_store_waves`` (OpenAI): sixty items in six chunks under a task quota of two batches,
three waves; Submit creates the first, the sensor the others, each in its own record. Its conf
``{"crash_sensor_after_wave": 2}`` makes the sensor's first try die right after it created and
recorded wave 2 (before deferring again); its retry must re-attach, not create wave 2 again.
"""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import DAG

from airflow_llm_batch import LLMBatchCompletionSensor, LLMBatchResultsOperator, LLMBatchSubmitOperator

WAVES_QUOTA = {"concurrent_batches": 2}

MODELS = {"openai": "gpt-4.1-mini", "anthropic": "claude-haiku-4-5", "gemini": "gemini-2.5-flash"}
ITEMS = [{"ticket_id": f"S-{n:03d}", "text": f"ticket {n} about an invoice"} for n in range(60)]


def _first_try(context: Any) -> bool:
    return int(context["ti"].try_number) <= 1


def _conf(context: Any) -> dict[str, Any]:
    return dict(context["dag_run"].conf or {})


def _delete_job_folder(manifest: dict[str, Any]) -> None:
    shutil.rmtree(Path(manifest["work_uri"]).parent)  # every attempt of this job key


class CrashingSubmit(LLMBatchSubmitOperator):
    def execute(self, context: Any) -> dict[str, Any]:
        manifest = super().execute(context)
        crash = _conf(context).get("crash")
        if crash and _first_try(context):
            if crash == "lose_work_dir":
                _delete_job_folder(manifest)
            raise RuntimeError(f"simulated worker crash ({crash}): batches created and recorded, XCom not written")
        return manifest


class ResultsAfterLoss(LLMBatchResultsOperator):
    def execute(self, context: Any) -> dict[str, Any]:
        if _conf(context).get("lose_work_dir_before_results") and _first_try(context):
            _delete_job_folder(self.manifest)
        return dict(super().execute(context))


class CrashingSensor(LLMBatchCompletionSensor):
    def _next_wave(self, context: Any, manifest: Any, statuses: dict[str, Any]) -> list[str]:
        running = super()._next_wave(context, manifest, statuses)
        crash_after = _conf(context).get("crash_sensor_after_wave")
        if crash_after and _first_try(context) and manifest.wave >= int(crash_after):
            raise RuntimeError(f"simulated worker crash: wave {manifest.wave} created and recorded, not deferred")
        return running


def _chain(model: str, provider: str) -> None:
    submit = CrashingSubmit(
        task_id="submit",
        items=ITEMS,
        id_field="ticket_id",
        prompt_template="Topic of: {text}",
        model=model,
        conn_id=f"llm_batch_{provider}",
        provider_limits={"max_requests": 20},
        retries=1,
        retry_delay=timedelta(seconds=0),
    )
    wait = LLMBatchCompletionSensor(task_id="wait", manifest=submit.output)
    results = ResultsAfterLoss(task_id="results", manifest=submit.output)
    submit >> wait >> results


def _waves_chain() -> None:
    submit = CrashingSubmit(
        task_id="submit",
        items=ITEMS,
        id_field="ticket_id",
        prompt_template="Topic of: {text}",
        model=MODELS["openai"],
        conn_id="llm_batch_openai",
        provider_limits={"max_requests": 10},
        queue_quota=WAVES_QUOTA,
        retries=1,
        retry_delay=timedelta(seconds=0),
    )
    wait = CrashingSensor(
        task_id="wait", manifest=submit.output, poll_interval=1.0, retries=1, retry_delay=timedelta(seconds=0)
    )
    # The sensor's manifest names every wave's batches; Submit's only the first.
    results = ResultsAfterLoss(task_id="results", manifest=wait.output)
    submit >> wait >> results


START = pendulum.datetime(2026, 1, 1, tz="UTC")
for provider, model in MODELS.items():
    with DAG(dag_id=f"e2e_state_store_{provider}", schedule=None, start_date=START):
        _chain(model, provider)

with DAG(dag_id="e2e_state_store_waves", schedule=None, start_date=START):
    _waves_chain()
