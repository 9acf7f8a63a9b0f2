"""Progress lines for the task log while batches run: done/total, failed, elapsed, time left.

At most one line per batch per poll, and only when something changed, so a 24-hour wait does
not flood the log. Plain Python, shared by the trigger and the sensor's poke mode.
"""

from __future__ import annotations

import time
from datetime import timedelta

from airflow_llm_batch.batch.records import BatchStatus


def _duration(seconds: float) -> str:
    return str(timedelta(seconds=max(0, round(seconds))))


class ProgressTracker:
    def __init__(self, batch_ids: list[str], submitted_at: float, totals: dict[str, int] | None = None) -> None:
        self.submitted_at = submitted_at
        self._last: dict[str, tuple[str, int, int]] = {}
        self._counts: dict[str, tuple[int, int, int]] = {b: ((totals or {}).get(b, 0), 0, 0) for b in batch_ids}

    def update(self, status: BatchStatus, now: float | None = None) -> list[str]:
        """Record a status; return the log lines it deserves (none when nothing changed)."""
        now = time.time() if now is None else now
        total = status.total or self._counts.get(status.batch_id, (0, 0, 0))[0]
        self._counts[status.batch_id] = (total, status.done, status.failed)
        key = (status.state, status.done, status.failed)
        if self._last.get(status.batch_id) == key:
            return []
        self._last[status.batch_id] = key
        return [
            f"Batch {status.batch_id}: {status.state}, {status.done}/{total} done, {status.failed} failed, "
            f"elapsed {_duration(now - self.submitted_at)}{self._eta(status.done, total, now, status.ended)}"
        ]

    def total_line(self, now: float | None = None) -> str:
        now = time.time() if now is None else now
        total = sum(c[0] for c in self._counts.values())
        done = sum(c[1] for c in self._counts.values())
        failed = sum(c[2] for c in self._counts.values())
        return (
            f"All batches: {done}/{total} done, {failed} failed, elapsed {_duration(now - self.submitted_at)}"
            f"{self._eta(done, total, now, False)}"
        )

    def _eta(self, done: int, total: int, now: float, ended: bool) -> str:
        elapsed = now - self.submitted_at
        if ended or done <= 0 or total <= done or elapsed <= 0:
            return ""
        return f", about {_duration(elapsed / done * (total - done))} left"
