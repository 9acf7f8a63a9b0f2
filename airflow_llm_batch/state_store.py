"""The job's record in Airflow's Task State Store (Airflow 3.3+, AIP-103), else in the work dir.

On Airflow 3.3 and later every running task instance gets ``context["task_state_store"]``: a
key/value store in the metadata database (or the deployment's configured backend) scoped to
``(dag_id, run_id, task_id, map_index)``, shared by every try of the task instance, and shown in
the task's **Storage** tab of the UI. The Submit task keeps its idempotency record there under
:data:`RECORD_KEY`, so a retry on another worker (no shared disk) still re-attaches to the batches
its earlier try created. On 3.1 and 3.2 the record stays the work dir's ``state.json``.

Not ``ResumableJobMixin``: that mixin persists one external id *after* a blocking submit and
polls in the worker. A Submit task here creates many batches, must record each *before* its
create call (the intent that makes a lost create response findable), and leaves the waiting to a
deferrable sensor, so it writes the store directly through the same accessor the mixin uses.
"""

from __future__ import annotations

from typing import Any

from airflow_llm_batch.batch.record_store import RecordStore
from airflow_llm_batch.exceptions import StateConflictError

#: The Task State Store key of the record (the name users see in the Storage tab).
RECORD_KEY = "llm_batch_job"
#: The key of the sensor's record of later waves (``batch/wave_record.py``), in the *sensor*
#: task instance's store: the sensor owns the chunks Submit handed on.
WAVES_KEY = "llm_batch_waves"


class TaskStateRecordStore(RecordStore):
    """The record as one JSON value in the task instance's Task State Store.

    Each save replaces the whole value in one call, so a reader never sees half a record. The
    value keeps Airflow's default retention (``[state_store] default_retention_days``, 30 days):
    long past any batch's 24-hour window; deleted with the DAG run.

    :param accessor: ``context["task_state_store"]``.
    :param key: :data:`RECORD_KEY` (Submit's record) or :data:`WAVES_KEY` (the sensor's).
    """

    def __init__(self, accessor: Any, key: str = RECORD_KEY) -> None:
        self.accessor = accessor
        self.key = key
        self.where = f"Task State Store of this task instance (key {key!r}, the task's Storage tab)"

    def load(self) -> dict[str, Any] | None:
        record = self.accessor.get(self.key)
        if record is None or isinstance(record, dict):
            return record
        raise StateConflictError(
            f"The {self.where} holds {type(record).__name__}, not this package's job record. Nothing was "
            "submitted. Delete the key in the task's Storage tab (or through the REST API) and clear the task: "
            "the next try looks its batches up by job-key tag where the provider has tags."
        )

    def save(self, record: dict[str, Any]) -> None:
        self.accessor.set(self.key, record)


def task_state_records(context: Any, key: str = RECORD_KEY) -> RecordStore | None:
    """The task instance's Task State Store where Airflow offers one (3.3+), else ``None`` (the
    layout then keeps the record in the work dir's state file)."""
    accessor = context.get("task_state_store") if hasattr(context, "get") else None
    return TaskStateRecordStore(accessor, key) if accessor is not None else None


def wave_records(context: Any, waves_file: Any) -> RecordStore:
    """Where the sensor keeps its record of later waves: its own task instance's Task State Store
    (3.3+), else ``waves.json`` in the job's folder of the work dir (``waves_file``)."""
    from airflow_llm_batch.batch.record_store import FileRecordStore

    return task_state_records(context, WAVES_KEY) or FileRecordStore(waves_file)
