"""One OpenAI batch and its timeline: the status, counts and timestamps at any moment (no HTTP here).

A batch's status is never stored: it is computed from the time elapsed since creation against the
scenario's ``completion_seconds`` (snapshotted at create). The first tenth is ``validating``,
``in_progress`` finishes items linearly in a fixed shuffled order, the last tenth is ``finalizing``
(longer by the scenario's ``finalizing_seconds``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from airflow_llm_batch.emulator.openai import lines
from airflow_llm_batch.emulator.openai.strict import LineRefusal
from airflow_llm_batch.emulator.quotas import NO_LOAD, Load

DAY = 86_400
# The API takes up to 10 minutes to cancel; the emulator compresses that like everything else.
MAX_CANCELLING_SECONDS = 1.0


@dataclass(frozen=True)
class BatchItem:
    """One request of a batch and its fate, fixed at create from the scenario."""

    custom_id: str
    body: dict[str, Any]
    error_kind: str | None
    invalid_output: bool
    malformed_line: bool
    refusal: LineRefusal | None = None  # strict mode: how the endpoint refuses this body


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
    account: str = ""
    load: Load = NO_LOAD
    finalizing_extra: float = 0.0
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
            running += item.error_kind is not None or item.refusal is not None
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
        if self.outcome != "expired":  # scenario finalizing_seconds: a long finalizing (curator#287)
            ends += self.finalizing_extra
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


def _seconds(moment: float | None) -> int | None:
    return None if moment is None else int(moment)
