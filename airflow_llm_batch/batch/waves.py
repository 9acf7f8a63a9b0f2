"""Submitting a job in waves under a queue quota, with the job state as the one record.

Every chunk of the job has a record in the job state (``JobState``, plain JSON, beside the
intent/submitted records of ``job.py``)::

    {"state": "pending" | "intent" | "submitted", "count": 50000, "bytes": ..., "model": ...,
     "tokens": ..., "wave": 3, "batch_id": ..., "outcome": "completed" | ... (once seen ended),
     "refused": [{"batch_id": ..., "reason": ..., "at": ...}]}

and the job keeps ``wave`` (the number of the last wave), ``queue_quota`` (what was configured)
and ``learned_quota`` (lowered by refusals). Submit creates the first wave; the sensor, each time
capacity frees, records what ended (:func:`note_statuses`: a batch refused for capacity sends
its chunk back to *pending*, nothing was billed) and creates the next (:func:`submit_wave`).
A chunk whose batch answered anything (completed, failed for another reason, expired,
cancelled) is never submitted again here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from airflow_llm_batch.batch.backends.base import BatchBackend, ChunkFile, RequestSpec
from airflow_llm_batch.batch.quota import ChunkLoad, QueueQuota, learn_from_refusal, plan_wave
from airflow_llm_batch.batch.records import JobKey, Kind

log = logging.getLogger(__name__)

PENDING, INTENT, SUBMITTED = "pending", "intent", "submitted"

CreateBatch = Callable[[ChunkFile, RequestSpec, JobKey], str]


class ChunkRecords:
    """The chunk records of a job state (``JobState``-like: ``data`` and ``save``)."""

    def __init__(self, state: Any, *, seeded: bool = False) -> None:
        self.state = state
        self.data: dict[str, Any] = state.data
        #: Built from a manifest, no record found (``wave_record.py``): asks the provider's tags first.
        self.seeded = seeded

    def chunk(self, index: int) -> dict[str, Any]:
        return dict(self.data["chunks"].get(str(index), {}))

    def update(self, index: int, **fields: Any) -> None:
        self.data["chunks"][str(index)] = {**self.chunk(index), **fields}
        self.state.save()

    def items(self) -> list[tuple[int, dict[str, Any]]]:
        return sorted((int(index), dict(record)) for index, record in self.data["chunks"].items())

    @property
    def quota(self) -> QueueQuota:
        configured = QueueQuota.from_dict(self.data.get("queue_quota"))
        return configured.tightened(QueueQuota.from_dict(self.data.get("learned_quota")))

    @property
    def wave(self) -> int:
        return int(self.data.get("wave", 0))

    def pending(self) -> list[int]:
        return [index for index, record in self.items() if record.get("state", PENDING) != SUBMITTED]

    def running(self) -> list[int]:
        return [
            index for index, record in self.items() if record.get("state") == SUBMITTED and not record.get("outcome")
        ]

    def load(self, index: int) -> ChunkLoad:
        record = self.chunk(index)
        return ChunkLoad(index, int(record.get("count", 0)), int(record.get("tokens", 0)))


def record_chunks(state: Any, chunks: Sequence[ChunkFile], spec: RequestSpec, quota: QueueQuota) -> ChunkRecords:
    """Give every chunk a record (``pending`` unless it has one) and keep the configured quota."""
    records = ChunkRecords(state)
    for chunk in chunks:
        recorded = records.chunk(chunk.index)
        if recorded.get("tokens") is not None:
            continue
        load = ChunkLoad.estimate(chunk.index, chunk.count, chunk.bytes, spec.parameters, spec.kind is Kind.EMBEDDING)
        fields = {"count": chunk.count, "bytes": chunk.bytes, "model": chunk.model, "tokens": load.tokens}
        if chunk.table is not None:  # requests built in place (Vertex tables): a later wave reads them there
            fields["table"] = chunk.table
        records.data["chunks"][str(chunk.index)] = {"state": PENDING, **fields, **recorded}
    records.data["queue_quota"] = quota.to_dict()
    state.save()
    return records


def note_statuses(
    records: ChunkRecords, statuses: Mapping[str, Mapping[str, Any] | None], backend: BatchBackend
) -> list[int]:
    """Record the batches seen ended; send the chunks of batches refused for capacity back to pending.

    Returns the chunks sent back. The quota the job plans with is lowered from each refusal.
    """
    by_batch = {record.get("batch_id"): index for index, record in records.items() if record.get("state") == SUBMITTED}
    ended = {
        by_batch[batch_id]: (batch_id, dict(summary))
        for batch_id, summary in statuses.items()
        if batch_id in by_batch and summary and summary.get("outcome")
    }
    refused = {
        index: (batch_id, "; ".join(summary.get("errors") or ()))
        for index, (batch_id, summary) in ended.items()
        if summary["outcome"] == "failed" and backend.refused_for_capacity(tuple(summary.get("errors") or ()))
    }
    # What the job had in the queue beside the refused batches when they were refused.
    admitted = [records.load(index) for index in records.running() if index not in refused]
    for index, (_batch_id, summary) in ended.items():
        if index not in refused and not records.chunk(index).get("outcome"):
            records.update(index, outcome=summary["outcome"], status=summary)
    for index, (batch_id, reason) in refused.items():
        learned = learn_from_refusal(records.quota, admitted, reason)
        records.data["learned_quota"] = learned.to_dict()
        refusal = {"batch_id": batch_id, "reason": reason, "at": time.time()}
        records.update(index, state=PENDING, batch_id=None, refused=[*records.chunk(index).get("refused", []), refusal])
        log.warning(
            "Batch %s (chunk %d) was refused by %s's queue quota (%s): nothing was billed; the chunk "
            "waits for the next wave, planned with %s",
            batch_id,
            index,
            backend.provider,
            reason,
            learned.describe(),
        )
    return sorted(refused)


@dataclass(frozen=True)
class WaveReport:
    """What one wave did: its number, the batches it created, what runs and what still waits."""

    wave: int
    created: list[str]
    running: int
    pending: int
    #: batches or creates the provider refused for capacity in this step (their chunks wait again)
    refused: int = 0

    def line(self) -> str:
        return f"wave {self.wave}: {self.running} batches running, {self.pending} pending"


def submit_wave(
    records: ChunkRecords,
    *,
    chunk_file: Callable[[int], ChunkFile],
    backend: BatchBackend,
    spec: RequestSpec,
    job_key: JobKey,
    create: CreateBatch,
    attach: Callable[[ChunkFile], str | None],
) -> WaveReport:
    """Create batches for the pending chunks that fit under the quota now, in chunk order.

    :param chunk_file: the chunk file of a chunk index.
    :param attach: finds the batch of a chunk an earlier try was creating (``intent``), or ``None``.
    A create refused for capacity (429, RESOURCE_EXHAUSTED) leaves its chunk pending, lowers the
    quota and ends the wave; any other error propagates (the intent record stays, as before).
    """
    quota = records.quota
    running = [records.load(index) for index in records.running()]
    admitted = plan_wave([records.load(index) for index in records.pending()], running, quota)
    created: list[str] = []
    refused = 0
    wave = records.wave + 1 if admitted else records.wave
    for load in admitted:
        chunk = chunk_file(load.chunk)
        batch_id = attach(chunk) if records.chunk(load.chunk).get("state") == INTENT else None
        if batch_id is not None:
            records.update(load.chunk, recovered=True)
        else:
            records.update(load.chunk, state=INTENT, at=time.time(), wave=wave)
            try:
                batch_id = create(chunk, spec, job_key)
            except Exception as error:
                if not backend.is_capacity_error(error):
                    raise
                learned = learn_from_refusal(quota, running, str(error))
                records.data["learned_quota"] = learned.to_dict()
                records.update(load.chunk, state=PENDING)
                refused = 1
                log.warning(
                    "Chunk %d: %s refused a new batch for capacity (%s: %s); it waits for the next wave, "
                    "planned with %s. Nothing was billed.",
                    load.chunk,
                    backend.provider,
                    type(error).__name__,
                    error,
                    learned.describe(),
                )
                break
            log.info("Chunk %d: created batch %s with %d requests (wave %d)", load.chunk, batch_id, load.requests, wave)
        records.update(load.chunk, state=SUBMITTED, batch_id=batch_id, at=time.time(), wave=wave)
        created.append(batch_id)
        running.append(load)
    if created:
        records.data["wave"] = wave
        records.state.save()
    return WaveReport(wave, created, len(records.running()), len(records.pending()), refused)
