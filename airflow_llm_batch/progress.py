"""Progress lines for the task log while batches run: done/total, failed, elapsed, time left.

At most one line per batch per poll, and only when something changed, so a 24-hour wait does
not flood the log; with several batches, a line for the whole job follows the batch lines of a
poll that changed something. Plain Python, shared by the trigger and the sensor's poke mode::

    Batch batch_abc: running [in_progress], 120/200 done (60%), 3 failed, elapsed 0:01:10, about 0:00:47 left
    All batches (2): 320/400 done (80%), 5 failed, elapsed 0:01:10, about 0:00:18 left

The phase is said in the same words for every provider (:func:`phase_of`); the provider's own
status word follows in brackets where it differs, for a reader who looks the batch up at the
provider. The time left assumes the rest goes as fast as what is done so far went (since the submit).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import timedelta

from airflow_llm_batch.batch.records import BatchStatus

# The providers' status words of a batch still running, by what they mean for the reader. Sources:
# OpenAI Batch object ``status`` (validating, in_progress, finalizing, cancelling); Anthropic Message
# Batch ``processing_status`` (in_progress, canceling); Gemini / Vertex AI ``JobState``
# (JOB_STATE_QUEUED, _PENDING, _RUNNING, _PAUSED, _UPDATING, _CANCELLING); Amazon Bedrock
# ``ModelInvocationJobStatus`` (Submitted, Validating, Scheduled, InProgress, Stopping). An ended batch is said
# with its outcome (``BatchOutcome``: completed, failed, expired, cancelled).
_STARTING = {"validating", "queued", "pending", "unspecified", "paused", "submitted", "scheduled"}
_FINISHING = {"finalizing"}
_CANCELLING = {"cancelling", "canceling", "stopping"}


def phase_of(status: BatchStatus) -> str:
    """The batch's phase in the package's words: waiting, running, finishing, cancelling, or its outcome."""
    if status.outcome is not None:
        return status.outcome.value
    word = status.state.lower().removeprefix("job_state_").removeprefix("batch_state_")
    if word in _STARTING:
        return "waiting"
    if word in _FINISHING:
        return "finishing"
    if word in _CANCELLING:
        return "cancelling"
    return "running"


def describe_state(status: BatchStatus) -> str:
    """``running [JOB_STATE_RUNNING]``: the phase, and the provider's word where it differs."""
    phase = phase_of(status)
    return phase if status.state.lower() == phase else f"{phase} [{status.state}]"


def _duration(seconds: float) -> str:
    return str(timedelta(seconds=max(0, round(seconds))))


def _share(done: int, total: int) -> str:
    return f" ({100 * done // total}%)" if total > 0 else ""


class ProgressTracker:
    """Remembers the last status of each batch of a job and turns new statuses into log lines.

    :param batch_ids: the job's batches.
    :param submitted_at: Unix seconds of the submit; elapsed time and estimates count from it.
    :param totals: requests per batch, for the line before the provider reports counts.
    """

    def __init__(self, batch_ids: list[str], submitted_at: float, totals: dict[str, int] | None = None) -> None:
        self.submitted_at = submitted_at
        self._last: dict[str, tuple[str, int, int]] = {}
        self._counts: dict[str, tuple[int, int, int]] = {b: ((totals or {}).get(b, 0), 0, 0) for b in batch_ids}
        self._ended: set[str] = set()

    def update(self, status: BatchStatus, now: float | None = None) -> list[str]:
        """Record a status; return the log lines it deserves (none when nothing changed)."""
        now = time.time() if now is None else now
        total = status.total or self._counts.get(status.batch_id, (0, 0, 0))[0]
        self._counts[status.batch_id] = (total, status.done, status.failed)
        if status.ended:
            self._ended.add(status.batch_id)
        key = (status.state, status.done, status.failed)
        if self._last.get(status.batch_id) == key:
            return []
        self._last[status.batch_id] = key
        return [
            f"Batch {status.batch_id}: {describe_state(status)}, "
            f"{status.done}/{total} done{_share(status.done, total)}, {status.failed} failed, "
            f"elapsed {_duration(now - self.submitted_at)}{self._eta(status.done, total, now, status.ended)}"
        ]

    def poll_lines(self, statuses: Iterable[BatchStatus], now: float | None = None) -> list[str]:
        """The lines of one poll round: changed batches, then the whole job if it has several batches."""
        now = time.time() if now is None else now
        lines = [line for status in statuses for line in self.update(status, now)]
        if lines and len(self._counts) > 1:
            lines.append(self.total_line(now))
        return lines

    def total_line(self, now: float | None = None) -> str:
        now = time.time() if now is None else now
        total = sum(c[0] for c in self._counts.values())
        done = sum(c[1] for c in self._counts.values())
        failed = sum(c[2] for c in self._counts.values())
        all_ended = len(self._ended) == len(self._counts)
        return (
            f"All batches ({len(self._counts)}): {done}/{total} done{_share(done, total)}, {failed} failed, "
            f"elapsed {_duration(now - self.submitted_at)}{self._eta(done, total, now, all_ended)}"
        )

    def _eta(self, done: int, total: int, now: float, ended: bool) -> str:
        elapsed = now - self.submitted_at
        if ended or done <= 0 or total <= done or elapsed <= 0:
            return ""
        return f", about {_duration(elapsed / done * (total - done))} left"


def age_warning(submitted_at: float, max_batch_age: float | None, now: float | None = None) -> str | None:
    """The warning for batches still running past ``max_batch_age`` seconds since the submit, else None."""
    now = time.time() if now is None else now
    if max_batch_age is None or now - submitted_at <= max_batch_age:
        return None
    return (
        f"The batches are still running {_duration(now - submitted_at)} after the submit, past "
        f"max_batch_age {_duration(max_batch_age)} (said once; the wait goes on until the deadline)"
    )
