"""Submitting a prepared job exactly once per job key (the layout and state file: ``state.py``).

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

from airflow_llm_batch.batch.backends.base import BatchBackend, ChunkFile, PreparedJob, RequestSpec
from airflow_llm_batch.batch.manifest import BatchEntry, Manifest
from airflow_llm_batch.batch.records import JobKey
from airflow_llm_batch.batch.state import JobLayout, JobState, check_fingerprint
from airflow_llm_batch.batch.storage import uri_of

log = logging.getLogger(__name__)


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
) -> Manifest:
    """Create one batch per chunk unless the state file shows it exists already; return the manifest."""
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
    entries = [_submit_or_attach(chunk, state, backend, spec, job_key) for chunk in prepared.chunks]
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
    batch_id = backend.submit_chunk(chunk, spec, job_key)
    state.set_chunk(chunk.index, state="submitted", batch_id=batch_id, at=time.time())
    log.info("Chunk %d: created batch %s with %d requests", chunk.index, batch_id, chunk.count)
    return BatchEntry(batch_id=batch_id, chunk=chunk.index, count=chunk.count)


__all__ = ["JobLayout", "JobState", "check_fingerprint", "submit_prepared"]
