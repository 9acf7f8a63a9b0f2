"""Submitting a prepared job exactly once per job key (the layout and the record: ``state.py``).

The job's record is the memory that survives task retries (XCom is cleared when a task retries).
It lives in a :class:`~airflow_llm_batch.batch.record_store.RecordStore`: the work dir's state file,
or on Airflow 3.3+ the task instance's Task State Store. It is written as *intent* before each
create call and as *submitted* with the batch id after it:

- a retry finds ``submitted`` chunks and re-attaches to their batches;
- a chunk left at ``intent`` (the task died during the create call) is looked up at the provider
  by its job-key tag where the provider has tags; if nothing is found it is submitted again;
- no record at all (a first try, or the record was lost with its work dir) is answered the same
  way: the provider is asked for batches tagged with the job key before anything is created.

Only one task creates batches for a job key at a time (:class:`~airflow_llm_batch.batch.lease.WriterLease`);
a second one waits, then re-attaches to what the first created.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from airflow_llm_batch.batch.backends.base import BatchBackend, ChunkFile, PreparedJob, RequestSpec
from airflow_llm_batch.batch.lease import WriterLease
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
    """Create one batch per chunk unless the record (or the provider's tags) shows it exists already;
    return the manifest. Holds the job key's writer lease while it creates (see ``lease.py``)."""
    with WriterLease(layout.lease_file, job_key.as_string()) as lease:
        state = JobState.load(layout.record_store)
        if lease.waited:
            log.info("The other writer of %s finished; re-attaching to what it created", job_key.as_string())
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
        # An empty job (no chunk to create) asks the provider nothing: an empty day stays a clean
        # zero-item run with no API call.
        looked_up = prepared.chunks and not state.data["chunks"]
        tagged = find_tagged_batches(backend, job_key, state) if looked_up else {}
        entries = [
            _submit_or_attach(chunk, state, backend, spec, job_key, tagged.get(chunk.index))
            for chunk in prepared.chunks
        ]
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


def find_tagged_batches(backend: BatchBackend, job_key: JobKey, state: JobState) -> dict[int, str]:
    """The job key's batches at the provider when the job has no record (first try, or record lost).

    One list call (or a short scan) per job; a provider without tags (Anthropic) answers nothing.
    Batches of an earlier input that ``on_input_change="resubmit"`` set aside are not taken.
    """
    set_aside = {c.get("batch_id") for old in state.data.get("superseded", ()) for c in old["chunks"].values()}
    found = {index: batch_id for index, batch_id in backend.find_batches(job_key).items() if batch_id not in set_aside}
    if found:
        log.warning(
            "No record of %s in the %s, but %s holds %d batch(es) tagged with its job key (the record was "
            "lost, e.g. with its work dir): re-attaching to them instead of creating new ones: %s",
            job_key.as_string(),
            state.store.where,
            backend.provider,
            len(found),
            ", ".join(found.values()),
        )
    return found


def _submit_or_attach(
    chunk: ChunkFile,
    state: JobState,
    backend: BatchBackend,
    spec: RequestSpec,
    job_key: JobKey,
    tagged: str | None = None,
) -> BatchEntry:
    recorded = state.chunk(chunk.index)
    if recorded.get("batch_id"):
        log.info("Chunk %d: re-attaching to batch %s created by an earlier try", chunk.index, recorded["batch_id"])
        return BatchEntry(batch_id=recorded["batch_id"], chunk=chunk.index, count=chunk.count)
    if tagged:
        state.set_chunk(chunk.index, state="submitted", batch_id=tagged, count=chunk.count, recovered=True)
        return BatchEntry(batch_id=tagged, chunk=chunk.index, count=chunk.count)
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
