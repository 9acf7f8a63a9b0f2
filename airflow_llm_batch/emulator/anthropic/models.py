"""Anthropic Message Batches: the state machine behind the emulated API (no HTTP here).

A batch's status is computed, never stored, from the time since creation against the scenario's
``completion_seconds`` (snapshotted at create). Anthropic has no validating phase: a batch is
``in_progress`` from creation until it ``ended``; a cancel makes it ``canceling`` for a moment and
then ``ended`` with the unprocessed requests ``canceled``. Items are processed linearly in a fixed
shuffled order, but, as the API documents, ``request_counts`` show everything as ``processing``
until the whole batch ends. The ``expired`` scenario compresses the 24 h window into
``completion_seconds``: half the requests run, the rest come back ``expired``.

When a read first finds a batch ended, its results file is written and its succeeded items are
billed in the ledger, exactly once. Anthropic batches carry no tags, so ledger entries have no
job key (``ledger.py`` then leaves them out of the duplicate checks).
"""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from airflow_llm_batch.emulator import fake_llm
from airflow_llm_batch.emulator.anthropic import lines
from airflow_llm_batch.emulator.anthropic.strict import params_problem
from airflow_llm_batch.emulator.anthropic.validation import (
    MAX_BYTES,
    MAX_REQUESTS,
    AnthropicError,
    BatchRequest,
    check_create_body,
)
from airflow_llm_batch.emulator.ledger import BatchEntry, RefusedCreate
from airflow_llm_batch.emulator.quotas import NO_LOAD, Load, Refusal, RunningBatch, account_label, digest, first_refusal
from airflow_llm_batch.emulator.scenario import Scenario
from airflow_llm_batch.emulator.state import EmulatorState
from airflow_llm_batch.emulator.web import RETRY_AFTER_SECONDS

PROVIDER = "anthropic"
DAY = 86_400
# Cancellation is not instant at the API either; compressed like everything else.
MAX_CANCELING_SECONDS = 1.0
RESULT_TYPES = ("succeeded", "errored", "canceled", "expired")
# What the queue quota meters, in the words of Anthropic's rate-limit docs ("Message Batches API":
# batch requests in the processing queue) and, for the measures the docs do not name, the emulator's.
QUOTA_WORDS = {
    "enqueued_requests": "batch requests in the processing queue",
    "enqueued_tokens": "tokens of batch requests in the processing queue",
    "concurrent_batches": "message batches in progress",
}


@dataclass(frozen=True)
class BatchItem:
    """One request of a batch and its fate, fixed at create from the scenario."""

    custom_id: str
    params: dict[str, Any]
    error_kind: str | None
    invalid_output: bool
    malformed_line: bool
    problem: str | None = None  # strict mode: why the Messages endpoint refuses these params


@dataclass(frozen=True)
class Progress:
    """Where a batch stands: ``status`` is the ``processing_status``; the first ``done`` items ran."""

    status: str
    done: int
    ended_at: float | None = None


@dataclass
class Batch:
    """A created batch; ``items`` are in processing order, which is also the results order."""

    id: str
    created_at: float
    completion_seconds: float
    outcome: str
    items: list[BatchItem]
    account: str = ""
    model: str | None = None
    load: Load = NO_LOAD
    cancel_at: float | None = None
    cancel_done: int = 0
    results: bytes | None = None
    counts: dict[str, int] | None = None

    def __post_init__(self) -> None:
        if self.outcome == "cancelled":  # cancelled by someone else, halfway through
            self.cancel_at = self.created_at + self.completion_seconds / 2
            self.cancel_done = len(self.items) // 2

    @property
    def ends_at(self) -> float:
        return self.created_at + self.completion_seconds

    @property
    def expires_at(self) -> float:
        return self.ends_at if self.outcome == "expired" else self.created_at + DAY

    def done_by(self, moment: float) -> int:
        """Requests processed by ``moment``, linear over the batch's time; half of them if it expires."""
        total = len(self.items)
        # Compared, not divided, at the end: (created + s - created) / s can fall just short of 1.0.
        if self.completion_seconds <= 0 or moment >= self.ends_at:
            fraction = 1.0
        else:
            fraction = (moment - self.created_at) / self.completion_seconds
        done = min(total, max(0, math.floor(total * fraction)))
        return min(done, total // 2) if self.outcome == "expired" else done

    def progress(self, now: float) -> Progress:
        if self.cancel_at is not None and now >= self.cancel_at:
            canceled_at = self.cancel_at + min(MAX_CANCELING_SECONDS, self.completion_seconds / 4)
            if now < canceled_at:
                return Progress("canceling", self.cancel_done)
            return Progress("ended", self.cancel_done, canceled_at)
        if now < self.ends_at:
            return Progress("in_progress", self.done_by(now))
        return Progress("ended", self.done_by(self.ends_at), self.ends_at)

    def to_api(self, progress: Progress, results_base: str | None) -> dict[str, Any]:
        """The MessageBatch object (``types/messages/message_batch.py``).

        :param results_base: where the SDK reaches the emulator (``http://host:port/anthropic``);
            the SDK follows ``results_url`` literally, so it must point back here. None gives a
            relative URL, which the SDK merges onto its base URL.
        """
        ended = progress.status == "ended"
        counts = {name: 0 for name in RESULT_TYPES}
        if ended and self.counts is not None:
            counts.update(self.counts)
        results_path = f"/v1/messages/batches/{self.id}/results"
        return {
            "id": self.id,
            "type": "message_batch",
            "processing_status": progress.status,
            "request_counts": {"processing": 0 if ended else len(self.items), **counts},
            "created_at": rfc3339(self.created_at),
            "expires_at": rfc3339(self.expires_at),
            "ended_at": rfc3339(progress.ended_at),
            "cancel_initiated_at": rfc3339(self.cancel_at) if progress.status != "in_progress" else None,
            "archived_at": None,
            "results_url": (f"{results_base or ''}{results_path}") if ended else None,
        }


class AnthropicService:
    """The batches of the emulated Anthropic workspace. Callers hold ``state.lock``."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state
        self.batches: dict[str, Batch] = {}

    def reset(self) -> None:
        self.batches.clear()

    def settle(self) -> None:
        for batch in self.batches.values():
            self._refresh(batch)

    def create_batch(self, body: Any, size_bytes: int, results_base: str | None, account: str = "") -> dict[str, Any]:
        """Create a batch for ``account`` (the API key), or refuse it (400, 413, or 429 over a queue quota)."""
        scenario = self.state.scenario
        requests = check_create_body(
            body,
            size_bytes,
            scenario.max_requests_per_batch or MAX_REQUESTS,
            scenario.max_bytes_per_batch or MAX_BYTES,
        )
        if scenario.batch_outcome == "failed":
            raise AnthropicError(
                400, "The batch failed validation and was not created (emulated: batch_outcome=failed)."
            )
        now = self.state.now()
        models = {str(request.params["model"]) for request in requests if request.params.get("model") is not None}
        model = models.pop() if len(models) == 1 else None
        load = batch_load(requests)
        # The queue is per model where one model fills the batch, else per account (docs: limits
        # apply per model class; the emulator keeps a mixed batch under the account's quota).
        refusal = first_refusal(scenario.quotas_for(PROVIDER), PROVIDER, account, model, load, self._running())
        if refusal is not None:
            self.state.ledger.record_refused_create(
                RefusedCreate(PROVIDER, int(now), model, refusal.measure, account_label(account))
            )
            raise AnthropicError(429, quota_message(refusal), headers={"retry-after": RETRY_AFTER_SECONDS})
        batch_id = f"msgbatch_{uuid.uuid4().hex[:24]}"
        canonical = json.dumps(body.get("requests"), sort_keys=True, separators=(",", ":")).encode()
        entry = BatchEntry(
            PROVIDER,
            batch_id,
            int(now),
            model,
            len(requests),
            None,
            input_digest=digest(canonical),
            account=account_label(account),
            enqueued_tokens=load.tokens(True),
        )
        occurrences = self.state.ledger.record_batch(entry, [request.custom_id for request in requests])
        batch = Batch(
            id=batch_id,
            created_at=now,
            completion_seconds=scenario.completion_seconds,
            outcome=scenario.batch_outcome,
            items=_plan_items(scenario, requests, occurrences),
            account=account,
            model=model,
            load=load,
        )
        self.batches[batch_id] = batch
        return batch.to_api(self._refresh(batch), results_base)

    def retrieve_batch(self, batch_id: str, results_base: str | None) -> dict[str, Any]:
        batch = self._batch(batch_id)
        return batch.to_api(self._refresh(batch), results_base)

    def list_batches(
        self, after_id: str | None, before_id: str | None, limit: int, results_base: str | None
    ) -> dict[str, Any]:
        """One page, most recently created first; ``after_id`` pages on, ``before_id`` pages back."""
        newest_first = list(reversed(self.batches.values()))
        ids = [batch.id for batch in newest_first]
        start, end = 0, len(ids)
        for name, cursor in (("after_id", after_id), ("before_id", before_id)):
            if cursor is not None and cursor not in ids:
                raise AnthropicError(400, f"{name}: no message batch with id {cursor!r}.")
        if after_id is not None:
            start = ids.index(after_id) + 1
            end = min(len(ids), start + limit)
            has_more = end < len(ids)
        elif before_id is not None:
            end = ids.index(before_id)
            start = max(0, end - limit)
            has_more = start > 0
        else:
            end = min(len(ids), limit)
            has_more = end < len(ids)
        page = [batch.to_api(self._refresh(batch), results_base) for batch in newest_first[start:end]]
        return {
            "data": page,
            "has_more": has_more,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
        }

    def cancel_batch(self, batch_id: str, results_base: str | None) -> dict[str, Any]:
        batch = self._batch(batch_id)
        now = self.state.now()
        progress = self._refresh(batch)
        if progress.status == "ended":
            raise AnthropicError(400, f"Message batch {batch_id} has already ended and cannot be canceled.")
        if progress.status == "in_progress":
            batch.cancel_at, batch.cancel_done = now, batch.done_by(now)
        return batch.to_api(self._refresh(batch), results_base)

    def delete_batch(self, batch_id: str) -> dict[str, Any]:
        """Allowed only once processing ended ("cancel first"), as the API requires."""
        batch = self._batch(batch_id)
        if self._refresh(batch).status != "ended":
            raise AnthropicError(
                400,
                f"Message batch {batch_id} is still processing; cancel it and wait until it has ended to delete it.",
            )
        del self.batches[batch_id]
        return {"id": batch_id, "type": "message_batch_deleted"}

    def results(self, batch_id: str) -> bytes:
        batch = self._batch(batch_id)
        self._refresh(batch)
        if batch.results is None:
            raise AnthropicError(400, f"Message batch {batch_id} has not finished processing; results are not ready.")
        return batch.results

    def _running(self) -> list[RunningBatch]:
        now = self.state.now()
        return [
            RunningBatch(b.account, b.model, b.load) for b in self.batches.values() if b.progress(now).status != "ended"
        ]

    def _batch(self, batch_id: str) -> Batch:
        batch = self.batches.get(batch_id)
        if batch is None:
            raise AnthropicError(404, f"message batch not found: {batch_id}")
        return batch

    def _refresh(self, batch: Batch) -> Progress:
        """The batch's progress now; the first time it has ended, write its results and bill."""
        progress = batch.progress(self.state.now())
        if progress.ended_at is not None and batch.results is None:
            self._write_results(batch, progress)
        return progress

    def _write_results(self, batch: Batch, progress: Progress) -> None:
        rows: list[str] = []
        billed: list[str] = []
        counts = dict.fromkeys(RESULT_TYPES, 0)
        not_run = "canceled" if batch.cancel_at is not None else "expired"
        for index, item in enumerate(batch.items):
            if index >= progress.done:
                line = lines.not_run_line(item.custom_id, not_run)
            elif item.problem is not None:
                line = lines.invalid_request_line(batch.id, item.custom_id, item.problem)
            elif item.error_kind is not None and item.error_kind in lines.ITEM_ERRORS:
                line = lines.errored_line(batch.id, item.custom_id, item.error_kind)
            else:
                refused = item.error_kind == "content_filtered"
                line = lines.succeeded_line(batch.id, item.custom_id, item.params, item.invalid_output, refused)
                billed.append(item.custom_id)
            counts[line["result"]["type"]] += 1
            text = lines.dumps(line)
            rows.append(text[: len(text) // 2] if item.malformed_line else text)
        batch.counts = counts
        batch.results = ("\n".join(rows) + "\n").encode()
        self.state.ledger.record_billed(PROVIDER, batch.id, None, billed)


def batch_load(requests: list[BatchRequest]) -> Load:
    """Requests, input tokens (the emulator's tokenizer) and ``max_tokens`` allowances of a batch."""
    input_tokens = allowance = 0
    for request in requests:
        system, user = lines.chat_texts(request.params)
        input_tokens += fake_llm.count_tokens((system or "") + user)
        max_tokens = request.params.get("max_tokens")
        allowance += max_tokens if isinstance(max_tokens, int) and not isinstance(max_tokens, bool) else 0
    return Load(len(requests), input_tokens, allowance)


def quota_message(refusal: Refusal) -> str:
    """The 429 message of a create over a queue quota (the emulator's wording; the type is Anthropic's)."""
    what = QUOTA_WORDS[refusal.measure]
    model = f" for {refusal.model}" if refusal.model else ""
    return (
        f"This request would exceed your organization's rate limit of {refusal.limit:,} {what}{model} "
        f"({refusal.enqueued:,} already queued). Wait for in-progress batches to end, then try again."
    )


def _plan_items(scenario: Scenario, requests: list[BatchRequest], occurrences: list[int]) -> list[BatchItem]:
    """Each request with its fate, in the shuffled order the batch processes and reports them."""
    items = []
    for request, seen in zip(requests, occurrences, strict=True):
        problem = params_problem(request.params) if scenario.strict else None
        items.append(
            BatchItem(
                request.custom_id,
                request.params,
                None if problem else scenario.item_error(request.custom_id, seen),
                scenario.has_invalid_output(request.custom_id, seen),
                scenario.has_malformed_line(request.custom_id, seen),
                problem,
            )
        )
    items.sort(key=lambda item: scenario.order_key(item.custom_id))
    return items


def rfc3339(moment: float | None) -> str | None:
    """``2024-08-20T18:37:24.100435Z``, the API's timestamp form."""
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, tz=UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
