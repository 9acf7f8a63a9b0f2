"""OpenAI Files and Batches: the state machine behind the emulated API (no HTTP here).

A batch's status is never stored: it is computed from the time elapsed since creation against
the scenario's ``completion_seconds`` (snapshotted at create, so changing the scenario later does
not rewrite a running batch). The first tenth is ``validating``, ``in_progress`` finishes items
linearly in a fixed shuffled order, the last tenth is ``finalizing``. When a read finds the batch
terminal for the first time, its output and error files are generated and its succeeded items are
billed in the ledger, exactly once.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from typing import Any

from airflow_llm_batch.emulator.ledger import BatchEntry, job_key_from_tags
from airflow_llm_batch.emulator.openai import lines
from airflow_llm_batch.emulator.openai.validation import (
    OpenAIError,
    check_create_params,
    check_input_file,
    output_expiry_seconds,
)
from airflow_llm_batch.emulator.scenario import Scenario
from airflow_llm_batch.emulator.state import EmulatorState

PROVIDER = "openai"
DAY = 86_400
BATCH_FILE_TTL = 30 * DAY  # "files with purpose=batch expire after 30 days", outputs likewise
MAX_REQUESTS = 50_000
MAX_BYTES = 200 * 1024 * 1024
# The API takes up to 10 minutes to cancel; the emulator compresses that like everything else.
MAX_CANCELLING_SECONDS = 1.0
UPLOAD_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")


@dataclass
class StoredFile:
    """A file in the Files API; ``content`` is the exact bytes served by ``/content``."""

    id: str
    filename: str
    purpose: str
    created_at: int
    content: bytes
    expires_at: int | None

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.content),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "expires_at": self.expires_at,
            "status_details": None,
        }


@dataclass(frozen=True)
class BatchItem:
    """One request of a batch and its fate, fixed at create from the scenario."""

    custom_id: str
    body: dict[str, Any]
    error_kind: str | None
    invalid_output: bool
    malformed_line: bool


@dataclass(frozen=True)
class Progress:
    """Where a batch stands at one moment.

    :param done: items processed so far: the first ``done`` of ``Batch.items`` have results.
    :param stamps: the ``*_at`` fields reached so far, as float seconds.
    :param ended_at: when the batch became terminal, or None while it runs.
    """

    status: str
    done: int
    stamps: dict[str, float]
    ended_at: float | None = None


@dataclass
class Batch:
    """A created batch. ``items`` are in processing order (also the order of the result files)."""

    id: str
    endpoint: str
    input_file_id: str
    metadata: dict[str, str] | None
    created_at: float
    completion_seconds: float
    outcome: str
    model: str | None
    items: list[BatchItem]
    errors: list[dict[str, Any]]
    output_expiry: int | None
    cancel_at: float | None = None
    cancel_done: int = 0
    failed_before: list[int] = field(default_factory=list)
    output_file_id: str | None = None
    error_file_id: str | None = None
    usage: lines.Usage = field(default_factory=lines.Usage)
    finished: bool = False

    def __post_init__(self) -> None:
        running = 0
        self.failed_before = [0]
        for item in self.items:
            running += item.error_kind is not None
            self.failed_before.append(running)
        if self.outcome == "cancelled" and not self.errors:
            self.cancel_at, self.cancel_done = self.created_at + self.completion_seconds / 2, len(self.items) // 2

    def done_by(self, moment: float) -> int:
        """Items processed by ``moment``: linear between the end of validation and finalizing."""
        total = len(self.items)
        if self.outcome == "expired":
            total //= 2
        if self.completion_seconds <= 0:
            return total
        started = self.created_at + 0.1 * self.completion_seconds
        fraction = (moment - started) / (0.8 * self.completion_seconds)
        return min(total, max(0, math.floor(len(self.items) * fraction)))

    def progress(self, now: float) -> Progress:
        """The batch at ``now``; see the module docstring for the timeline."""
        duration = self.completion_seconds
        started, ends = self.created_at + 0.1 * duration, self.created_at + duration
        if self.errors:
            if now < started:
                return Progress("validating", 0, {})
            return Progress("failed", 0, {"failed_at": started}, started)
        if self.cancel_at is not None and now >= self.cancel_at:
            return self._cancel_progress(now, started)
        if now < started:
            return Progress("validating", 0, {})
        stamps = {"in_progress_at": started}
        if self.outcome == "expired":
            if now < ends:
                return Progress("in_progress", self.done_by(now), stamps)
            return Progress("expired", self.done_by(ends), {**stamps, "expired_at": ends}, ends)
        finalizing = self.created_at + 0.9 * duration
        if now < finalizing:
            return Progress("in_progress", self.done_by(now), stamps)
        stamps["finalizing_at"] = finalizing
        if now < ends:
            return Progress("finalizing", len(self.items), stamps)
        return Progress("completed", len(self.items), {**stamps, "completed_at": ends}, ends)

    def _cancel_progress(self, now: float, started: float) -> Progress:
        assert self.cancel_at is not None
        stamps = {"cancelling_at": self.cancel_at}
        if self.cancel_at >= started:
            stamps["in_progress_at"] = started
        cancelled_at = self.cancel_at + min(MAX_CANCELLING_SECONDS, self.completion_seconds / 4)
        if now < cancelled_at:
            return Progress("cancelling", self.cancel_done, stamps)
        return Progress("cancelled", self.cancel_done, {**stamps, "cancelled_at": cancelled_at}, cancelled_at)

    def to_api(self, progress: Progress) -> dict[str, Any]:
        """The batch object exactly as ``types/batch.py`` describes it."""
        failed = self.failed_before[progress.done]
        counted = progress.status not in ("validating", "failed")
        stamp_names = ("in_progress_at", "finalizing_at", "completed_at", "failed_at", "expired_at")
        return {
            "id": self.id,
            "object": "batch",
            "endpoint": self.endpoint,
            "model": self.model,
            "errors": {"object": "list", "data": self.errors} if progress.status == "failed" else None,
            "input_file_id": self.input_file_id,
            "completion_window": "24h",
            "status": progress.status,
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "created_at": int(self.created_at),
            "expires_at": int(self.created_at) + DAY,
            **{name: _seconds(progress.stamps.get(name)) for name in stamp_names},
            "cancelling_at": _seconds(progress.stamps.get("cancelling_at")),
            "cancelled_at": _seconds(progress.stamps.get("cancelled_at")),
            "request_counts": {
                "total": len(self.items) if counted else 0,
                "completed": progress.done - failed,
                "failed": failed,
            },
            "usage": self.usage.to_api(),
            "metadata": self.metadata,
        }


class OpenAIService:
    """Files and batches of the emulated OpenAI account. Callers hold ``state.lock``."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state
        self.files: dict[str, StoredFile] = {}
        self.batches: dict[str, Batch] = {}

    def reset(self) -> None:
        self.files.clear()
        self.batches.clear()

    def settle(self) -> None:
        for batch in self.batches.values():
            self._refresh(batch)

    # Files ---------------------------------------------------------------------------------

    def upload_file(self, filename: str, purpose: str, content: bytes, expires_after: Any = None) -> dict[str, Any]:
        if purpose not in UPLOAD_PURPOSES:
            raise OpenAIError(400, f"Invalid value for 'purpose': {purpose!r}.", param="purpose", code="invalid_value")
        seconds = output_expiry_seconds(expires_after, "expires_after")
        stored = self._store(filename, purpose, content, seconds)
        return stored.to_api()

    def get_file(self, file_id: str) -> StoredFile:
        stored = self.files.get(file_id)
        if stored is None:
            raise OpenAIError(404, f"No such File object: {file_id}", param="id")
        return stored

    def delete_file(self, file_id: str) -> dict[str, Any]:
        self.get_file(file_id)
        del self.files[file_id]
        return {"id": file_id, "object": "file", "deleted": True}

    def list_files(self, purpose: str | None, after: str | None, limit: int, order: str) -> dict[str, Any]:
        ordered = [f for f in self.files.values() if purpose is None or f.purpose == purpose]
        if order == "desc":
            ordered.reverse()
        return _page([f.to_api() for f in ordered], after, limit)

    def _store(self, filename: str, purpose: str, content: bytes, ttl: int | None) -> StoredFile:
        created = int(self.state.now())
        if ttl is None and purpose in ("batch", "batch_output"):
            ttl = BATCH_FILE_TTL
        stored = StoredFile(
            f"file-{uuid.uuid4().hex[:24]}", filename, purpose, created, content, created + ttl if ttl else None
        )
        self.files[stored.id] = stored
        return stored

    # Batches -------------------------------------------------------------------------------

    def create_batch(self, body: Any) -> dict[str, Any]:
        check_create_params(body)
        source = self.get_file(body["input_file_id"])
        if source.purpose != "batch":
            raise OpenAIError(
                400,
                f"File {source.id} has purpose {source.purpose!r}; a batch needs purpose 'batch'.",
                param="input_file_id",
                code="invalid_value",
            )
        scenario = self.state.scenario
        parsed = check_input_file(
            source.content,
            body["endpoint"],
            scenario.max_requests_per_batch or MAX_REQUESTS,
            scenario.max_bytes_per_batch or MAX_BYTES,
        )
        if scenario.batch_outcome == "failed" and not parsed.errors:
            parsed.add_error("invalid_request", "The input file failed validation (emulated: batch_outcome=failed).")
        batch_id = f"batch_{uuid.uuid4().hex}"
        now = self.state.now()
        metadata = body.get("metadata")
        job_key = job_key_from_tags(metadata)
        entry = BatchEntry(
            PROVIDER, batch_id, int(now), parsed.model, len(parsed.requests), job_key, dict(metadata or {})
        )
        occurrences = self.state.ledger.record_batch(entry, [custom_id for custom_id, _ in parsed.requests])
        batch = Batch(
            id=batch_id,
            endpoint=body["endpoint"],
            input_file_id=source.id,
            metadata=metadata,
            created_at=now,
            completion_seconds=scenario.completion_seconds,
            outcome=scenario.batch_outcome,
            model=parsed.model,
            items=_plan_items(scenario, parsed.requests, occurrences),
            errors=parsed.errors,
            output_expiry=output_expiry_seconds(body.get("output_expires_after"), "output_expires_after"),
        )
        self.batches[batch_id] = batch
        return batch.to_api(self._refresh(batch))

    def retrieve_batch(self, batch_id: str) -> dict[str, Any]:
        batch = self._batch(batch_id)
        return batch.to_api(self._refresh(batch))

    def list_batches(self, after: str | None, limit: int) -> dict[str, Any]:
        newest_first = list(reversed(self.batches.values()))
        return _page([b.to_api(self._refresh(b)) for b in newest_first], after, limit)

    def cancel_batch(self, batch_id: str) -> dict[str, Any]:
        batch = self._batch(batch_id)
        now = self.state.now()
        progress = self._refresh(batch)
        if progress.ended_at is not None:
            raise OpenAIError(
                409,
                f"Cannot cancel a batch with status '{progress.status}'.",
                param="batch_id",
                code="batch_not_cancellable",
            )
        if progress.status != "cancelling":
            batch.cancel_at, batch.cancel_done = now, batch.done_by(now)
        return batch.to_api(self._refresh(batch))

    def _batch(self, batch_id: str) -> Batch:
        batch = self.batches.get(batch_id)
        if batch is None:
            raise OpenAIError(404, f"No batch found with id '{batch_id}'.", param="batch_id")
        return batch

    def _refresh(self, batch: Batch) -> Progress:
        """The batch's progress now; the first time it is terminal, write its results and bill."""
        progress = batch.progress(self.state.now())
        if progress.ended_at is not None and not batch.finished:
            batch.finished = True
            if progress.status != "failed":
                self._write_results(batch, progress)
        return progress

    def _write_results(self, batch: Batch, progress: Progress) -> None:
        output, errors, billed = [], [], []
        created = int(progress.ended_at or self.state.now())
        for index, item in enumerate(batch.items):
            if index >= progress.done:
                errors.append(lines.dumps(lines.not_run_line(batch.id, item.custom_id, progress.status)))
            elif item.error_kind is not None:
                errors.append(lines.dumps(lines.http_error_line(batch.id, item.custom_id, item.error_kind)))
            else:
                line, usage = lines.success_line(
                    batch.id, batch.endpoint, item.custom_id, item.body, item.invalid_output, created
                )
                text = lines.dumps(line)
                output.append(text[: len(text) // 2] if item.malformed_line else text)
                batch.usage.input_tokens += usage.input_tokens
                batch.usage.output_tokens += usage.output_tokens
                billed.append(item.custom_id)
        if output:
            batch.output_file_id = self._result_file(batch, "output", output).id
        if errors:
            batch.error_file_id = self._result_file(batch, "error", errors).id
        self.state.ledger.record_billed(PROVIDER, batch.id, job_key_from_tags(batch.metadata), billed)

    def _result_file(self, batch: Batch, kind: str, rows: list[str]) -> StoredFile:
        content = ("\n".join(rows) + "\n").encode()
        return self._store(f"{batch.id}_{kind}.jsonl", "batch_output", content, batch.output_expiry)


def _plan_items(
    scenario: Scenario, requests: list[tuple[str, dict[str, Any]]], occurrences: list[int]
) -> list[BatchItem]:
    """Each request with its fate, in the shuffled order the batch processes and reports them."""
    items = [
        BatchItem(
            custom_id,
            body,
            scenario.item_error(custom_id, seen),
            scenario.has_invalid_output(custom_id, seen),
            scenario.has_malformed_line(custom_id, seen),
        )
        for (custom_id, body), seen in zip(requests, occurrences, strict=True)
    ]
    items.sort(key=lambda item: scenario.order_key(item.custom_id))
    return items


def _page(data: list[dict[str, Any]], after: str | None, limit: int) -> dict[str, Any]:
    """One page of a cursor list: the items after ``after`` (an id), ``limit`` of them."""
    start = 0
    if after is not None:
        ids = [row["id"] for row in data]
        if after not in ids:
            raise OpenAIError(
                400, f"Invalid 'after': no object with id {after!r}.", param="after", code="invalid_value"
            )
        start = ids.index(after) + 1
    page = data[start : start + limit]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": start + limit < len(data),
    }


def _seconds(moment: float | None) -> int | None:
    return None if moment is None else int(moment)
