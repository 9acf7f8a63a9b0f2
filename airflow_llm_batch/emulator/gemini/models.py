"""Gemini Developer API batches: the state machine behind the emulated API (no HTTP here).

A batch is a long-running Operation named ``batches/<id>`` (``reference/provider-apis.md`` 4.1).
Its state is never stored: it is computed from the time since creation against the scenario's
``completion_seconds`` (snapshotted at create). The first tenth is ``BATCH_STATE_PENDING``, then
``BATCH_STATE_RUNNING`` finishes items linearly, then ``BATCH_STATE_SUCCEEDED``. When a read
finds the batch ended for the first time, its output is built and its answered items are billed.

Ended batches, as far as the reference and the Gemini docs tell:

- ``failed``: no output; the Operation carries a top-level ``error`` (the SDK does not read it).
- ``expired``: the docs say an expired job has no results to retrieve, so there is no output
  (``batchStats`` still shows the half that ran); the results step marks every item expired.
- ``cancelled``: the reference is silent; the emulator returns the responses of the items done
  before the cancel and leaves the others out (the results step marks them cancelled).

Output order is request order (the SDK documents both inline responses and the responses file so).
``malformed_line_rate`` tears lines of responses files only; inline responses are one JSON document.
"""

from __future__ import annotations

import json
import math
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from airflow_llm_batch.emulator.gemini import lines
from airflow_llm_batch.emulator.gemini.files import FileStore, GeminiError, page, rfc3339
from airflow_llm_batch.emulator.gemini.inputs import Item, parse_file, parse_inline
from airflow_llm_batch.emulator.gemini.lines import field as proto_field
from airflow_llm_batch.emulator.gemini.quota import GEMINI_QUOTA_MESSAGE, batch_load, quota_exceeded
from airflow_llm_batch.emulator.gemini.strict import refuse_bad_requests
from airflow_llm_batch.emulator.ledger import BatchEntry, RefusedCreate, job_key_from_tags
from airflow_llm_batch.emulator.quotas import NO_LOAD, Load, RunningBatch, account_label, digest, first_refusal
from airflow_llm_batch.emulator.state import EmulatorState

PROVIDER = "gemini"
MAX_INLINE_BYTES = 20 * 1024 * 1024  # "the total request must stay under 20 MB"
MAX_REQUESTS = 1_000_000  # the Developer API documents sizes, not a count; this only guards memory
TYPE_PREFIX = "type.googleapis.com/google.ai.generativelanguage.v1main."
KINDS = {
    "generate": ("GenerateContentBatch", "GenerateContentBatchOutput"),
    "embed": ("EmbedContentBatch", "EmbedContentBatchOutput"),
}
_TAG = re.compile(r"(?:^|:)([A-Za-z_]+)=([^:]*)")


@dataclass(frozen=True)
class Progress:
    state: str
    done: int
    ended_at: float | None = None


@dataclass
class Batch:
    id: str
    kind: str
    model: str
    display_name: str | None
    created_at: float
    completion_seconds: float
    outcome: str
    items: list[Item]
    input_file: str | None
    failure: str | None = None
    cancel_at: float | None = None
    cancel_done: int = 0
    output: dict[str, Any] | None = None
    finished: bool = False
    failed_before: list[int] = field(default_factory=list)
    account: str = ""
    load: Load = NO_LOAD
    reads_after_end: int = 0

    def __post_init__(self) -> None:
        running = 0
        self.failed_before = [0]
        for item in self.items:
            running += item.problem is not None or item.error_kind not in (None, "content_filtered")
            self.failed_before.append(running)
        if self.outcome == "cancelled" and self.failure is None:
            self.cancel_at, self.cancel_done = self.created_at + self.completion_seconds / 2, len(self.items) // 2

    @property
    def name(self) -> str:
        return f"batches/{self.id}"

    def done_by(self, moment: float) -> int:
        total = len(self.items) // 2 if self.outcome == "expired" else len(self.items)
        if self.completion_seconds <= 0:
            return total
        fraction = (moment - self.created_at - 0.1 * self.completion_seconds) / (0.9 * self.completion_seconds)
        return min(total, max(0, math.floor(len(self.items) * fraction)))

    def progress(self, now: float) -> Progress:
        started, ends = self.created_at + 0.1 * self.completion_seconds, self.created_at + self.completion_seconds
        if self.failure is not None:
            return Progress("PENDING", 0) if now < started else Progress("FAILED", 0, started)
        if self.cancel_at is not None and now >= self.cancel_at:
            return Progress("CANCELLED", self.cancel_done, self.cancel_at)
        if now < started:
            return Progress("PENDING", 0)
        if now < ends:
            return Progress("RUNNING", self.done_by(now))
        if self.outcome == "expired":
            return Progress("EXPIRED", self.done_by(ends), ends)
        return Progress("SUCCEEDED", len(self.items), ends)

    def to_api(self, progress: Progress, now: float, output_late: bool = False) -> dict[str, Any]:
        """The Operation as ``batches.get`` returns it (and each entry of ``batches.list``).

        :param output_late: show the batch ended without its output yet (scenario
            ``gemini_late_output_*``; tidyverse/ellmer#926 saw SUCCEEDED before the output was set).
        """
        batch_type, output_type = KINDS[self.kind]
        failed = self.failed_before[progress.done]
        metadata: dict[str, Any] = {
            "@type": TYPE_PREFIX + batch_type,
            "model": f"models/{self.model}",
            "state": f"BATCH_STATE_{progress.state}",
            "createTime": rfc3339(self.created_at),
            "updateTime": rfc3339(progress.ended_at if progress.ended_at is not None else now),
            "batchStats": {  # int64 values travel as JSON strings
                "requestCount": str(len(self.items)),
                "successfulRequestCount": str(progress.done - failed),
                "failedRequestCount": str(failed),
                "pendingRequestCount": str(len(self.items) - progress.done if progress.ended_at is None else 0),
            },
        }
        if self.display_name is not None:
            metadata["displayName"] = self.display_name
        if self.input_file is not None:
            metadata["inputConfig"] = {"fileName": self.input_file}
        operation: dict[str, Any] = {"name": self.name, "metadata": metadata, "done": progress.ended_at is not None}
        if progress.ended_at is not None:
            metadata["endTime"] = rfc3339(progress.ended_at)
            if self.output is not None and not output_late:
                metadata["output"] = self.output
                operation["response"] = {"@type": TYPE_PREFIX + output_type, **self.output}
            if progress.state == "FAILED":
                operation["error"] = {"code": 3, "message": self.failure}
        return operation


class GeminiService:
    """Batches and files of the emulated Gemini account. Callers hold ``state.lock``."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state
        self.files = FileStore(state)
        self.batches: dict[str, Batch] = {}

    def reset(self) -> None:
        self.files.reset()
        self.batches.clear()

    def settle(self) -> None:
        for batch in self.batches.values():
            self._refresh(batch)

    # Batches -------------------------------------------------------------------------------

    # Long on purpose: one create call's checks in the order the real service applies them (which
    # refusal wins when several apply), then the accepted batch; split up, that order would be hidden.
    def create_batch(self, kind: str, model: str, body: Any, body_bytes: int, account: str = "") -> dict[str, Any]:
        """``batchGenerateContent`` (kind ``generate``) or ``asyncBatchEmbedContent`` (``embed``).

        :param account: the API key; queue quotas are counted per key.
        """
        batch_body = body.get("batch") if isinstance(body, dict) else None
        if not isinstance(batch_body, dict):
            raise GeminiError(400, "Invalid JSON payload: the field 'batch' is required.")
        input_config = proto_field(batch_body, "inputConfig")
        # asyncBatchEmbedContent arrives with a snake_case "file_name" from the SDK; accept both.
        file_name = proto_field(input_config, "fileName")
        inline = proto_field(input_config, "requests")
        if (file_name is None) == (inline is None):
            raise GeminiError(400, "batch.inputConfig must set exactly one of 'requests' and 'fileName'.")
        scenario = self.state.scenario
        if file_name is not None:
            source = self.files.get(str(file_name))
            size, items = len(source.content), parse_file(source.content)
            input_digest = digest(source.content)
        else:
            size, items = body_bytes, parse_inline(inline)
            if size > MAX_INLINE_BYTES:
                raise GeminiError(400, f"Request payload size exceeds the limit: {MAX_INLINE_BYTES} bytes.")
            input_digest = digest(json.dumps(inline, sort_keys=True, separators=(",", ":")).encode())
        check_limits(len(items), size, scenario.max_requests_per_batch, scenario.max_bytes_per_batch)
        if scenario.strict:
            refuse_bad_requests(
                items, kind, from_file=file_name is not None, camel_only=scenario.gemini_camel_case_file_lines
            )
        load = batch_load(kind, [item.request for item in items if item.problem is None])
        refusal = first_refusal(scenario.quotas_for(PROVIDER), PROVIDER, account, model, load, self._running())
        if refusal is not None:
            self.state.ledger.record_refused_create(
                RefusedCreate(PROVIDER, int(self.state.now()), model, refusal.measure, account_label(account))
            )
            raise quota_exceeded(refusal, "generativelanguage.googleapis.com", GEMINI_QUOTA_MESSAGE)
        batch_id = new_batch_id()
        display_name = proto_field(batch_body, "displayName")
        tags = display_name_tags(display_name)
        fate_keys = [item.key or f"#{index}" for index, item in enumerate(items)]
        entry = BatchEntry(
            PROVIDER,
            f"batches/{batch_id}",
            int(self.state.now()),
            model,
            len(items),
            job_key_from_tags(tags),
            tags,
            input_digest=input_digest,
            account=account_label(account),
            enqueued_tokens=load.tokens(True),
        )
        occurrences = self.state.ledger.record_batch(entry, fate_keys)
        batch = Batch(
            id=batch_id,
            kind=kind,
            model=model,
            display_name=display_name,
            created_at=self.state.now(),
            completion_seconds=scenario.completion_seconds,
            outcome=scenario.batch_outcome,
            items=[
                _with_fate(item, scenario, key, seen)
                for item, key, seen in zip(items, fate_keys, occurrences, strict=True)
            ],
            input_file=str(file_name) if file_name is not None else None,
            failure="The batch failed validation (emulated: batch_outcome=failed)."
            if scenario.batch_outcome == "failed"
            else None,
            account=account,
            load=load,
        )
        self.batches[batch_id] = batch
        return batch.to_api(self._refresh(batch), self.state.now())

    def get_batch(self, batch_id: str) -> dict[str, Any]:
        return self._read(self._batch(batch_id))

    def list_batches(self, page_size: int, page_token: str | None) -> dict[str, Any]:
        newest_first = [self._read(b) for b in reversed(self.batches.values())]
        return page(newest_first, "operations", page_size, page_token)

    def _read(self, batch: Batch) -> dict[str, Any]:
        """The batch as a read shows it; counts the reads after its end for late output."""
        progress, now = self._refresh(batch), self.state.now()
        late = False
        if progress.state == "SUCCEEDED" and progress.ended_at is not None:
            batch.reads_after_end += 1
            scenario = self.state.scenario
            late = batch.reads_after_end <= scenario.gemini_late_output_polls or (
                now < progress.ended_at + scenario.gemini_late_output_seconds
            )
        return batch.to_api(progress, now, output_late=late)

    def _running(self) -> list[RunningBatch]:
        now = self.state.now()
        return [
            RunningBatch(b.account, b.model, b.load)
            for b in self.batches.values()
            if b.failure is None and b.progress(now).ended_at is None
        ]

    def cancel_batch(self, batch_id: str) -> dict[str, Any]:
        batch = self._batch(batch_id)
        progress = self._refresh(batch)
        if progress.ended_at is not None:
            raise GeminiError(400, f"Batch {batch.name} has already ended.", "FAILED_PRECONDITION")
        now = self.state.now()
        batch.cancel_at, batch.cancel_done = now, batch.done_by(now)
        self._refresh(batch)
        return {}

    def delete_batch(self, batch_id: str) -> dict[str, Any]:
        """Forget the Operation; as with any Operation delete, a running batch is not cancelled."""
        del self.batches[self._batch(batch_id).id]
        return {}

    def _batch(self, batch_id: str) -> Batch:
        batch = self.batches.get(batch_id)
        if batch is None:
            raise GeminiError(404, f"Batch batches/{batch_id} not found.")
        return batch

    def _refresh(self, batch: Batch) -> Progress:
        progress = batch.progress(self.state.now())
        if progress.ended_at is not None and not batch.finished:
            batch.finished = True
            if progress.state in ("SUCCEEDED", "CANCELLED"):
                self._write_output(batch, progress)
        return progress

    def _write_output(self, batch: Batch, progress: Progress) -> None:
        entries, billed = [], []
        for index, item in enumerate(batch.items[: progress.done]):
            answer = _answer(batch, item)
            if answer.billed:
                billed.append(item.key or f"#{index}")
            entries.append((item, answer.entry))
        if batch.input_file is None:
            inlined = [{**entry, "metadata": item.metadata} if item.metadata else entry for item, entry in entries]
            batch.output = {"inlinedResponses": {"inlinedResponses": inlined} if inlined else {}}
        else:
            rows = []
            for item, entry in entries:
                text = lines.dumps({"key": item.key, **entry} if item.key is not None else entry)
                rows.append(text[: len(text) // 2] if item.malformed_line else text)
            content = "".join(row + "\n" for row in rows).encode()
            stored = self.files.store(
                content, f"{batch.name} responses", "application/jsonl", "GENERATED", f"batch-{batch.id}"
            )
            batch.output = {"responsesFile": stored.name}
        self.state.ledger.record_billed(
            PROVIDER, batch.name, job_key_from_tags(display_name_tags(batch.display_name)), billed
        )


def _answer(batch: Batch, item: Item) -> lines.Answer:
    if item.problem is not None:
        error = {"code": 400, "message": item.problem, "status": "INVALID_ARGUMENT"}
        return lines.Answer({"error": error}, billed=False, failed=True)
    if batch.kind == "embed":
        return lines.embed_answer(item.request, item.error_kind)
    return lines.generate_answer(item.request, item.key or "", batch.model, item.error_kind, item.invalid_output)


def _with_fate(item: Item, scenario: Any, key: str, seen: int) -> Item:
    if item.problem is not None:
        return item
    return Item(
        item.key,
        item.request,
        item.metadata,
        scenario.item_error(key, seen),
        scenario.has_invalid_output(key, seen),
        scenario.has_malformed_line(key, seen),
    )


def check_limits(count: int, size: int, max_requests: int | None, max_bytes: int | None) -> None:
    if count > (max_requests or MAX_REQUESTS):
        raise GeminiError(400, f"The batch has {count} requests; at most {max_requests or MAX_REQUESTS} are allowed.")
    if max_bytes is not None and size > max_bytes:
        raise GeminiError(400, f"The batch input is {size} bytes; at most {max_bytes} are allowed.")


def display_name_tags(display_name: str | None) -> dict[str, str]:
    """``name=value`` segments of a display name (``airflow:dag/task:job_key=abc:chunk=0``) as tags.

    The ledger takes the tag whose name ends in ``job_key`` as the job key.
    """
    return {name: value for name, value in _TAG.findall(display_name or "")}


def new_batch_id() -> str:
    """36 lowercase letters and digits, the length of the real ids (``batches/ncdlxnfztvvdy7lv52g4s7ge6l385vi46eyi``
    in python-genai#1759; ``batches/rt7u2rexj6qkyq3cjs0g98fuq5c15j01i6qq`` in js-genai#1227), so the
    output file ``files/batch-<id>`` is, as there, longer than a file delete accepts (``files.py``)."""
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(secrets.choice(alphabet) for _ in range(36))
