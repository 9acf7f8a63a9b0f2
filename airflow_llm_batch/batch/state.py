"""The work-dir layout of one attempt of a job, and its record (what survives task retries).

Below ``job.py`` (which submits) and the backends that keep files of their own in the layout
(Vertex request tables): a record, like the manifest, that calls nothing above it. Where the record
lives is a :class:`~airflow_llm_batch.batch.record_store.RecordStore`: the work dir's ``state.json``,
or on Airflow 3.3+ the task instance's Task State Store (``airflow_llm_batch/state_store.py``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from airflow_llm_batch.batch.backends.base import PreparedJob
from airflow_llm_batch.batch.record_store import FileRecordStore, RecordStore
from airflow_llm_batch.batch.records import JobKey
from airflow_llm_batch.batch.storage import StoragePath, uri_of
from airflow_llm_batch.exceptions import JobFilesMissingError, StateConflictError

log = logging.getLogger(__name__)


def chunk_file_name(index: int) -> str:
    """The request lines of chunk ``index`` (the one place chunk file names are made)."""
    return f"chunk-{index:05d}.jsonl"


def ids_file_name(index: int) -> str:
    """The ``[custom_id, user id]`` pairs of chunk ``index``."""
    return f"chunk-{index:05d}.ids.jsonl"


@dataclass(frozen=True)
class JobLayout:
    """Where one attempt of one job keeps its files.

    ``{work_dir}/{dag_id}/{run_id}/{task_id}/attempt-{n}/`` with ``requests/`` (chunk files and
    their id maps), ``state.json`` (unless ``records`` keeps the record elsewhere), ``waves.json``
    (the sensor's record of later waves under a queue quota, likewise),
    ``writer.lease`` while a task creates batches, ``schema.json`` and ``results/``.

    :param records: where the job's record lives; ``None``: the state file in this folder.
    """

    root: StoragePath
    records: RecordStore | None = None

    @classmethod
    def for_job(
        cls, work_dir: StoragePath, job_key: JobKey, attempt: int, records: RecordStore | None = None
    ) -> JobLayout:
        path = work_dir
        for part in job_key.path_parts():
            path = path / part
        return cls(path / f"attempt-{attempt}", records)

    @property
    def record_store(self) -> RecordStore:
        """``records`` (reading the state file while it has no record yet), else the state file."""
        state_file = FileRecordStore(self.state_file)
        return self.records.reading_through(state_file) if self.records is not None else state_file

    @property
    def lease_file(self) -> StoragePath:
        return self.root / "writer.lease"

    @property
    def requests_dir(self) -> StoragePath:
        return self.root / "requests"

    @property
    def results_dir(self) -> StoragePath:
        return self.root / "results"

    @property
    def state_file(self) -> StoragePath:
        return self.root / "state.json"

    @property
    def waves_file(self) -> StoragePath:
        """The sensor's record of later waves on Airflow 3.1/3.2 (``wave_record.py``)."""
        return self.root / "waves.json"

    @property
    def schema_file(self) -> StoragePath:
        return self.root / "schema.json"

    def chunk_file(self, index: int) -> StoragePath:
        return self.requests_dir / chunk_file_name(index)

    def ids_file(self, index: int) -> StoragePath:
        return self.requests_dir / ids_file_name(index)


def check_job_files(layout: JobLayout, batch_ids: list[str]) -> None:
    """Fail with what to do when the job's request files (the id maps results are matched with) are gone."""
    if not batch_ids or layout.requests_dir.exists():
        return
    raise JobFilesMissingError(
        f"The job's files are gone from the work dir: {uri_of(layout.requests_dir)} does not exist (deleted, "
        "or written on another worker's local disk). Its batches are intact at the provider "
        f"({', '.join(batch_ids)}). Clear this run's submit task together with its downstream tasks: the "
        "submit task writes the files again and re-attaches to the same batches (through the job's record, "
        "or by their job-key tag), so nothing is paid twice. To keep this from happening, use a work dir "
        "every worker shares and nothing cleans up while runs are active (s3://, gs://, a shared volume)."
    )


class JobState:
    """The job's record: fingerprint, first submit time, deadline, one entry per chunk.

    A plain JSON object: keys this module does not know (added by other features) are kept as they are.
    """

    def __init__(self, store: RecordStore, data: dict[str, Any] | None = None) -> None:
        self.store = store
        self.data: dict[str, Any] = data or {"chunks": {}}
        self.data.setdefault("chunks", {})

    @classmethod
    def load(cls, store: RecordStore | StoragePath) -> JobState:
        """The record from ``store`` (a record store, or the path of a state file), empty if none."""
        if not isinstance(store, RecordStore):
            store = FileRecordStore(store)
        return cls(store, store.load())

    def save(self) -> None:
        self.store.save(self.data)

    def chunk(self, index: int) -> dict[str, Any]:
        return dict(self.data["chunks"].get(str(index), {}))

    def set_chunk(self, index: int, **fields: Any) -> None:
        self.data["chunks"][str(index)] = {**self.chunk(index), **fields}
        self.save()


def check_fingerprint(state: JobState, prepared: PreparedJob, on_input_change: str) -> None:
    """Raise StateConflictError when the input changed since batches were created and the user
    did not ask to resubmit; with ``"resubmit"``, set the earlier chunks aside in the state."""
    previous = state.data.get("fingerprint")
    if previous is None or previous == prepared.fingerprint or not state.data.get("chunks"):
        return
    if on_input_change == "resubmit":
        log.warning(
            "The input changed since this job key was first submitted; on_input_change='resubmit': "
            "submitting the new input. Batches of the earlier input are left as they are: %s",
            [c.get("batch_id") for c in state.data["chunks"].values()],
        )
        superseded = state.data.setdefault("superseded", [])
        superseded.append({"fingerprint": previous, "chunks": state.data["chunks"]})
        state.data.update(chunks={}, fingerprint=prepared.fingerprint)
        for earlier in ("handed_off", "wave", "learned_quota"):  # the earlier input's waves (``job.py``)
            state.data.pop(earlier, None)
        state.save()
        return
    raise StateConflictError(
        "The input of this task changed since it first submitted batches for this run "
        f"({state.store.where}). Nothing was submitted. To pay for the new input anyway, "
        "set on_input_change='resubmit'; to keep the earlier batches, restore the earlier input."
    )
