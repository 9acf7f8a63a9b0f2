"""Submitting a prepared job exactly once per job key, and the work-dir layout of a job.

The state file is the memory that survives task retries (XCom is cleared when a task retries).
It is written as *intent* before each create call and as *submitted* with the batch id after it:

- a retry finds ``submitted`` chunks and re-attaches to their batches;
- a chunk left at ``intent`` (the task died during the create call) is looked up at the provider
  by its job-key tag where the provider has tags; if nothing is found it is submitted again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from airflow_llm_batch.batch import jsonl
from airflow_llm_batch.batch.backends.base import BatchBackend, ChunkFile, RequestSpec
from airflow_llm_batch.batch.manifest import BatchEntry, Manifest
from airflow_llm_batch.batch.prepare import PreparedJob
from airflow_llm_batch.batch.records import JobKey
from airflow_llm_batch.batch.storage import StoragePath, uri_of
from airflow_llm_batch.exceptions import StateConflictError

log = logging.getLogger(__name__)

ON_INPUT_CHANGE = ("fail", "resubmit")


@dataclass(frozen=True)
class JobLayout:
    """Where one attempt of one job keeps its files.

    ``{work_dir}/{dag_id}/{run_id}/{task_id}/attempt-{n}/`` with ``requests/`` (chunk files and
    their id maps), ``state.json``, ``schema.json`` and ``results/``.
    """

    root: StoragePath

    @classmethod
    def for_job(cls, work_dir: StoragePath, job_key: JobKey, attempt: int) -> JobLayout:
        path = work_dir
        for part in job_key.path_parts():
            path = path / part
        return cls(path / f"attempt-{attempt}")

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
    def schema_file(self) -> StoragePath:
        return self.root / "schema.json"

    def chunk_file(self, index: int) -> StoragePath:
        return self.requests_dir / f"chunk-{index:05d}.jsonl"

    def ids_file(self, index: int) -> StoragePath:
        return self.requests_dir / f"chunk-{index:05d}.ids.jsonl"


class JobState:
    """The state file's content: fingerprint, first submit time, deadline, one entry per chunk."""

    def __init__(self, path: StoragePath, data: dict[str, Any] | None = None) -> None:
        self.path = path
        self.data: dict[str, Any] = data or {"chunks": {}}

    @classmethod
    def load(cls, path: StoragePath) -> JobState:
        if not path.exists():
            return cls(path)
        with path.open("rb") as stream:
            return cls(path, jsonl.loads(stream.read()))

    def save(self) -> None:
        with self.path.open("wb") as stream:
            stream.write(jsonl.dumps(self.data, option=jsonl.orjson.OPT_INDENT_2))

    def chunk(self, index: int) -> dict[str, Any]:
        return dict(self.data["chunks"].get(str(index), {}))

    def set_chunk(self, index: int, **fields: Any) -> None:
        self.data["chunks"][str(index)] = {**self.chunk(index), **fields}
        self.save()


def submit_prepared(
    prepared: PreparedJob,
    *,
    backend: BatchBackend,
    spec: RequestSpec,
    job_key: JobKey,
    layout: JobLayout,
    conn_id: str,
    attempt: int,
    timeout_seconds: float,
    on_input_change: str = "fail",
    clock: Callable[[], float] = time.time,
    submit_chunk: Callable[[ChunkFile, RequestSpec, JobKey], str] | None = None,
) -> Manifest:
    """Create one batch per chunk unless the state file shows it exists already; return the manifest.

    :param submit_chunk: creates one chunk's batch (default ``backend.submit_chunk``); Vertex jobs
        over request tables built in SQL pass their own (``backends/vertex_tables.py``).
    """
    state = JobState.load(layout.state_file)
    check_fingerprint(state, prepared, on_input_change)
    now = clock()
    if "submitted_at" not in state.data:
        state.data.update(
            fingerprint=prepared.fingerprint,
            submitted_at=now,
            deadline=now + timeout_seconds,
            job_key=job_key.as_string(),
            provider=backend.provider,
        )
        state.save()
    create = submit_chunk or backend.submit_chunk
    entries = [_submit_or_attach(chunk, state, backend, spec, job_key, create) for chunk in prepared.chunks]
    return Manifest(
        job_key=job_key,
        provider=backend.provider,
        conn_id=conn_id,
        model=spec.model,
        kind=spec.kind.value,
        work_uri=uri_of(layout.root),
        attempt=attempt,
        item_count=prepared.item_count,
        batches=entries,
        submitted_at=float(state.data["submitted_at"]),
        deadline=float(state.data["deadline"]),
        has_schema=spec.response_schema is not None,
        fingerprint=prepared.fingerprint,
    )


def _submit_or_attach(
    chunk: ChunkFile,
    state: JobState,
    backend: BatchBackend,
    spec: RequestSpec,
    job_key: JobKey,
    create: Callable[[ChunkFile, RequestSpec, JobKey], str],
) -> BatchEntry:
    recorded = state.chunk(chunk.index)
    if recorded.get("batch_id"):
        log.info("Chunk %d: re-attaching to batch %s created by an earlier try", chunk.index, recorded["batch_id"])
        return BatchEntry(batch_id=recorded["batch_id"], chunk=chunk.index, count=chunk.count)
    if recorded.get("state") == "intent":
        found = backend.find_batch(job_key, chunk.index)
        if found:
            log.info("Chunk %d: found batch %s by its job-key tag; re-attaching", chunk.index, found)
            state.set_chunk(chunk.index, state="submitted", batch_id=found, recovered=True)
            return BatchEntry(batch_id=found, chunk=chunk.index, count=chunk.count)
        log.warning(
            "Chunk %d: an earlier try was creating its batch when it stopped, and %s shows no batch for "
            "this job key; submitting it now",
            chunk.index,
            backend.provider,
        )
    state.set_chunk(chunk.index, state="intent", count=chunk.count, at=time.time())
    batch_id = create(chunk, spec, job_key)
    state.set_chunk(chunk.index, state="submitted", batch_id=batch_id, at=time.time())
    log.info("Chunk %d: created batch %s with %d requests", chunk.index, batch_id, chunk.count)
    return BatchEntry(batch_id=batch_id, chunk=chunk.index, count=chunk.count)


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
        state.save()
        return
    raise StateConflictError(
        "The input of this task changed since it first submitted batches for this run "
        f"(state file {uri_of(state.path)}). Nothing was submitted. To pay for the new input anyway, "
        "set on_input_change='resubmit'; to keep the earlier batches, restore the earlier input."
    )
