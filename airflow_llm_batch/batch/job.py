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

Under a queue quota the chunks go out in waves (``waves.py``). The Submit task creates the first
and records every chunk, pending ones too; once the first wave exists its record marks the
hand-off, and the pending chunks travel to the sensor in the manifest. The sensor keeps its own
record of the later waves (``wave_record.py``): each task writes only the record it owns, which
on Airflow 3.3+ is the only record it can reach (each task instance has its own Task State Store).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from airflow_llm_batch.batch.backends.base import BatchBackend, ChunkFile, PreparedJob, RequestSpec
from airflow_llm_batch.batch.lease import WriterLease
from airflow_llm_batch.batch.manifest import BatchEntry, Manifest
from airflow_llm_batch.batch.quota import QueueQuota
from airflow_llm_batch.batch.records import JobKey
from airflow_llm_batch.batch.state import JobLayout, JobState, check_fingerprint
from airflow_llm_batch.batch.storage import uri_of
from airflow_llm_batch.batch.waves import SUBMITTED, ChunkRecords, record_chunks, submit_wave
from airflow_llm_batch.exceptions import ConfigurationError

log = logging.getLogger(__name__)


def check_chunks(backend: BatchBackend, prepared: PreparedJob) -> None:
    """Refuse, before any API call, chunks the provider would refuse as a job (a Bedrock chunk under
    its minimum): creating the earlier chunks first would pay for a job that cannot finish."""
    problems = backend.chunk_problems(prepared.chunks)
    if problems:
        raise ConfigurationError(" ".join(problems))


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
    quota: QueueQuota | None = None,
) -> Manifest:
    """Create the first wave of batches (every batch without a quota) unless the record (or the
    provider's tags) shows it exists already; return the manifest, the chunks left for later waves
    as ``pending``. Holds the job key's writer lease while it creates (see ``lease.py``).

    Once the first wave is created the record says so (``handed_off``): the pending chunks belong
    to the sensor from then on, and a retry or a cleared run re-attaches and creates nothing.

    :param quota: the queue quota the waves are planned under (``batch/quota.py``); none: one wave.
    """
    check_chunks(backend, prepared)
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
        records = record_chunks(state, prepared.chunks, spec, quota or QueueQuota())
        for index, batch_id in tagged.items():
            if records.chunk(index) and records.chunk(index).get("state") != SUBMITTED:
                records.update(index, state=SUBMITTED, batch_id=batch_id, recovered=True, wave=1)
        _renew_deadline(state, records, now, timeout_seconds)
        if state.data.get("handed_off"):
            log.info(
                "The first wave was handed to the sensor by an earlier try: re-attaching to its %d batch(es), "
                "creating nothing (the %d chunk(s) still pending in this record belong to the sensor)",
                len(records.items()) - len(records.pending()),
                len(records.pending()),
            )
        else:
            _first_wave(records, prepared, backend, spec, job_key)
    return first_wave_manifest(
        records,
        job_key=job_key,
        provider=backend.provider,
        conn_id=conn_id,
        spec=spec,
        layout=layout,
        attempt=attempt,
        prepared=prepared,
    )


def _first_wave(
    records: ChunkRecords, prepared: PreparedJob, backend: BatchBackend, spec: RequestSpec, job_key: JobKey
) -> None:
    """Create the first wave (a crashed earlier try's ``intent`` chunks looked up by tag first),
    then mark the hand-off: from now on the pending chunks are the sensor's to create."""
    chunks = {chunk.index: chunk for chunk in prepared.chunks}
    for index, record in records.items():
        if record.get("state") == SUBMITTED:
            log.info("Chunk %d: re-attaching to batch %s created by an earlier try", index, record["batch_id"])
    report = submit_wave(
        records,
        chunk_file=chunks.__getitem__,
        backend=backend,
        spec=spec,
        job_key=job_key,
        create=backend.submit_chunk,
        attach=lambda chunk: find_earlier_batch(backend, job_key, chunk),
    )
    if report.pending:
        log.info("%s (queue quota: %s); the sensor creates the next waves", report.line(), records.quota.describe())
    records.data["handed_off"] = True
    records.state.save()


def _renew_deadline(state: JobState, records: ChunkRecords, now: float, timeout_seconds: float) -> None:
    """A user cleared a run whose deadline had passed with chunks never submitted: waiting again is
    what they asked for, so those chunks get a new deadline (submitted batches keep theirs)."""
    if records.pending() and float(state.data["deadline"]) <= now:
        state.data["deadline"] = now + timeout_seconds
        state.save()
        log.warning("The earlier deadline had passed with chunks never submitted; new deadline in %ds", timeout_seconds)


def first_wave_manifest(
    records: ChunkRecords,
    *,
    job_key: JobKey,
    provider: str,
    conn_id: str,
    spec: RequestSpec,
    layout: JobLayout,
    attempt: int,
    prepared: PreparedJob,
) -> Manifest:
    """The manifest Submit hands on: the first wave's batches, and every pending chunk with what the
    sensor needs to create it later (counts, bytes, model, tokens, chunk file URI; never item data)."""
    sources = {index: _source(records.chunk(index), layout, index) for index, _ in records.items()}
    return Manifest(
        job_key=job_key,
        provider=provider,
        conn_id=conn_id,
        model=spec.model,
        kind=spec.kind.value,
        work_uri=uri_of(layout.root),
        attempt=attempt,
        item_count=prepared.item_count,
        batches=[
            BatchEntry(
                batch_id=record["batch_id"],
                chunk=index,
                count=int(record["count"]),
                tokens=int(record.get("tokens") or 0),
                source=sources[index],
            )
            for index, record in records.items()
            if record.get("state") == SUBMITTED
        ],
        submitted_at=float(records.data["submitted_at"]),
        deadline=float(records.data["deadline"]),
        has_schema=spec.response_schema is not None,
        fingerprint=prepared.fingerprint,
        pending=[
            {"chunk": index, "count": int(records.chunk(index)["count"]), **sources[index]}
            for index in records.pending()
        ],
        wave=records.wave,
        queue_quota=records.quota.to_dict(),
        # The sensor must not re-attach a pending chunk to a batch of an earlier input by its tag.
        extra={"set_aside": sorted(set_aside_batches(records.data))} if records.data.get("superseded") else {},
    )


def _source(record: dict[str, Any], layout: JobLayout, index: int) -> dict[str, Any]:
    """What creating a chunk's batch takes, for the sensor (the chunk file's URI: it has no layout)."""
    fields: dict[str, Any] = {key: record[key] for key in ("bytes", "model", "tokens", "table") if key in record}
    return {**fields, "uri": uri_of(layout.chunk_file(index))}


def find_tagged_batches(backend: BatchBackend, job_key: JobKey, state: JobState) -> dict[int, str]:
    """The job key's batches at the provider when the job has no record (first try, or record lost).

    One list call (or a short scan) per job; a provider without tags (Anthropic) answers nothing.
    Batches of an earlier input that ``on_input_change="resubmit"`` set aside are not taken.
    """
    set_aside = set_aside_batches(state.data)
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


def set_aside_batches(record: dict[str, Any]) -> set[str]:
    """Batches of an earlier input that ``on_input_change="resubmit"`` set aside: never taken back."""
    return {c["batch_id"] for old in record.get("superseded", ()) for c in old["chunks"].values() if c.get("batch_id")}


def find_earlier_batch(backend: BatchBackend, job_key: JobKey, chunk: ChunkFile) -> str | None:
    """The batch an earlier try was creating for a chunk left at ``intent``, found by its tag."""
    found = backend.find_batch(job_key, chunk.index)
    if found:
        log.info("Chunk %d: found batch %s by its job-key tag; re-attaching", chunk.index, found)
        return found
    log.warning(
        "Chunk %d: an earlier try was creating its batch when it stopped, and %s shows no batch for "
        "this job key; submitting it now",
        chunk.index,
        backend.provider,
    )
    return None


__all__ = ["JobLayout", "JobState", "check_fingerprint", "find_earlier_batch", "submit_prepared"]
