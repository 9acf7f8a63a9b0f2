"""The sensor's own record of a job's later waves (the Submit task's record is Submit's).

Under a queue quota the Submit task creates the first wave and hands the pending chunks on in
the manifest (``job.py``). From then on the sensor owns them: it keeps a record of its own, in a
:class:`~airflow_llm_batch.batch.record_store.RecordStore` chosen the way Submit's is (on Airflow
3.3+ the *sensor* task instance's Task State Store, key ``llm_batch_waves``; on 3.1 and 3.2 the
work dir's ``waves.json`` beside ``state.json``). Each task writes only the record it owns: on
3.3 a task instance cannot reach another's store, and one owner per record needs no merging.

The record is seeded from the manifest the first time and read back on every resume, retry or
triggerer restart, so a sensor retry re-attaches to the waves an earlier try created instead of
creating them again. Each create is recorded as *intent* before and *submitted* after, under the
job key's writer lease (``lease.py``), exactly as Submit does; a create whose response was lost is
found by its job-key tag where the provider has tags.

A job with no pending chunk never writes this record: its sensor only waits, as before waves.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from airflow_llm_batch.batch.backends.base import BatchBackend, ChunkFile, RequestSpec
from airflow_llm_batch.batch.job import find_earlier_batch
from airflow_llm_batch.batch.lease import WriterLease
from airflow_llm_batch.batch.manifest import BatchEntry, Manifest
from airflow_llm_batch.batch.record_store import RecordStore
from airflow_llm_batch.batch.records import Kind
from airflow_llm_batch.batch.state import JobState
from airflow_llm_batch.batch.storage import StoragePath
from airflow_llm_batch.batch.waves import PENDING, SUBMITTED, ChunkRecords, WaveReport, note_statuses, submit_wave
from airflow_llm_batch.exceptions import JobFilesMissingError

log = logging.getLogger(__name__)

#: What a pending chunk carries in the manifest: enough to create its batch, never item data.
SOURCE_FIELDS = ("bytes", "model", "tokens", "uri", "table")
PENDING_FIELDS = ("count", *SOURCE_FIELDS)
#: Set once the record was first saved: from then on every change is saved.
KEPT = "kept"


class WaveState(JobState):
    """A job state saved only once there is something to remember: a chunk not yet submitted
    (pending, or at intent), or an earlier save. A job without waves costs no write."""

    def save(self) -> None:
        if not self.data.get(KEPT) and all(r.get("state") == SUBMITTED for r in self.data["chunks"].values()):
            return
        self.data[KEPT] = True
        super().save()


def load_wave_record(store: RecordStore, manifest: Manifest) -> ChunkRecords:
    """The sensor's record: read back if an earlier try (or resume) kept one for this input, else
    seeded from Submit's manifest (its first wave and its pending chunks)."""
    data = store.load()
    if data is not None and data.get("fingerprint") == manifest.fingerprint and data.get("chunks"):
        return ChunkRecords(WaveState(store, data))
    if data is not None:
        log.warning("The %s holds the waves of an earlier input; starting again from the Submit task's", store.where)
    return ChunkRecords(WaveState(store, seed(manifest)), seeded=True)


def seed(manifest: Manifest) -> dict[str, Any]:
    """A wave record from Submit's manifest: its batches as submitted, its pending chunks as pending."""
    chunks: dict[str, Any] = {
        str(entry.chunk): {
            **(entry.source or {}),
            "state": SUBMITTED,
            "batch_id": entry.batch_id,
            "count": entry.count,
            "tokens": entry.tokens,
            "wave": manifest.wave or 1,
        }
        for entry in manifest.batches
    }
    for pending in manifest.pending:
        chunks[str(pending["chunk"])] = {"state": PENDING, **{k: v for k, v in pending.items() if k != "chunk"}}
    return {
        "fingerprint": manifest.fingerprint,
        "job_key": manifest.job_key.as_string(),
        "queue_quota": dict(manifest.queue_quota),
        "wave": manifest.wave,
        "chunks": chunks,
    }


def advance_waves(
    manifest: Manifest,
    records: ChunkRecords,
    statuses: Mapping[str, Mapping[str, Any] | None],
    backend: BatchBackend,
    *,
    path_of: Callable[[str], StoragePath],
    lease_file: StoragePath,
    clock: Callable[[], float] = time.time,
) -> WaveReport:
    """While a job waits: record the batches seen ended (refused ones send their chunks back to
    pending) and, before the deadline, create the next wave. ``manifest`` is updated in place to
    name every wave's batches and the chunks still pending."""
    if records.seeded and records.pending():
        _recover_tagged(records, manifest, backend)
    refused = len(note_statuses(records, statuses, backend))
    report = WaveReport(records.wave, [], len(records.running()), len(records.pending()), refused)
    if report.pending and clock() < manifest.deadline:

        def chunk_file(index: int) -> ChunkFile:
            record = records.chunk(index)
            count, size, model = int(record["count"]), int(record["bytes"]), str(record["model"])
            path = path_of(str(record["uri"]))
            if record.get("table") is None and not path.exists():
                raise JobFilesMissingError(
                    f"Chunk {index} waits for a later wave, but its request file {record['uri']} is gone from "
                    "the work dir (deleted, or written on another worker's local disk). Nothing was created for "
                    "it. Use a work dir every worker shares (s3://, gs://, a shared volume), then clear the "
                    "submit task with its downstream tasks: it writes the files again and re-attaches."
                )
            return ChunkFile(index, path, count, size, model, record.get("table"))

        with WriterLease(lease_file, manifest.job_key.as_string()):
            report = submit_wave(
                records,
                chunk_file=chunk_file,
                backend=backend,
                spec=RequestSpec(model=manifest.model, kind=Kind(manifest.kind)),
                job_key=manifest.job_key,
                create=backend.submit_chunk,
                attach=lambda chunk: find_earlier_batch(backend, manifest.job_key, chunk),
            )
        report = dataclasses.replace(report, refused=report.refused + refused)
    refresh_manifest(manifest, records)
    return report


def _recover_tagged(records: ChunkRecords, manifest: Manifest, backend: BatchBackend) -> None:
    """No wave record yet: the first resume, or a record lost (a store cleared on success, a work
    dir deleted on 3.1). As Submit does without a record, ask the provider for the job key's batches
    before creating any, and re-attach a pending chunk to the batch tagged with it. One list call;
    a provider without tags (Anthropic) answers nothing. Then the record is saved at once."""
    known = {*manifest.batch_ids, *manifest.extra.get("set_aside", ())}
    pending = set(records.pending())
    for index, batch_id in backend.find_batches(manifest.job_key).items():
        if index in pending and batch_id not in known:
            log.warning(
                "Chunk %d: no wave record of this job in the %s, but %s holds batch %s tagged with it: "
                "re-attaching instead of creating it again",
                index,
                records.state.store.where,
                backend.provider,
                batch_id,
            )
            records.update(index, state=SUBMITTED, batch_id=batch_id, recovered=True)
    records.seeded = False
    records.state.save()


def recorded_statuses(records: ChunkRecords) -> dict[str, dict[str, Any]]:
    """The last status of each batch the record has seen ended, by batch id."""
    return {record["batch_id"]: record["status"] for _, record in records.items() if record.get("status")}


def refresh_manifest(manifest: Manifest, records: ChunkRecords) -> Manifest:
    """The manifest's batches (every wave's) and pending chunks as the record has them now."""
    manifest.batches = [
        BatchEntry(
            batch_id=record["batch_id"],
            chunk=index,
            count=int(record["count"]),
            status=record.get("status"),
            tokens=int(record.get("tokens") or 0),
            source={k: v for k, v in record.items() if k in SOURCE_FIELDS},
        )
        for index, record in records.items()
        if record.get("state") == SUBMITTED
    ]
    manifest.pending = [
        {
            "chunk": index,
            **{k: v for k, v in records.chunk(index).items() if k not in ("state", "refused", "at", "batch_id")},
        }
        for index in records.pending()
    ]
    manifest.wave = records.wave
    manifest.queue_quota = records.quota.to_dict()
    return manifest


__all__ = ["advance_waves", "load_wave_record", "recorded_statuses", "refresh_manifest", "seed"]
