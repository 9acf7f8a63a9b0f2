"""LLMBatchCompletionTrigger: waits in the triggerer until every batch of a job has ended.

Polls with the SDK's *async* client and an async connection lookup, so thousands of waiting
batches share one event loop without blocking it. The deadline is wall-clock Unix time fixed at
submit time, not a duration: the trigger is serialized into the database and may resume in
another triggerer process after a restart, and a duration would start counting again there.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_llm_batch.progress import ProgressTracker, age_warning

# Status polls that fail in a row (429, 5xx, dropped connections) before the task is failed.
MAX_CONSECUTIVE_POLL_ERRORS = 10
MAX_BACKOFF_SECONDS = 300.0
# After cancelling at the deadline, how long to wait for the batches to reach a final state so
# that their finished items can be harvested (OpenAI documents up to 10 minutes of "cancelling").
CANCEL_GRACE_SECONDS = 900.0


class LLMBatchCompletionTrigger(BaseTrigger):
    """Fires once all batches have ended, the deadline has passed, or polling kept failing.

    A status call refused for good (the key rejected, 401/403; the batch unknown, 404) fires an
    ``error`` event at once with a ``refusal`` (``auth`` or ``not_found``), naming the connection
    and the batch: no number of backoff rounds can change that answer.

    :param conn_id: the connection the batches were submitted with.
    :param provider: the provider named in the manifest.
    :param batch_ids: the batches to wait for.
    :param deadline: Unix seconds after which the trigger stops waiting (fixed at submit time).
    :param poll_interval: seconds between poll rounds.
    :param submitted_at: Unix seconds of the submit, for elapsed time and estimates in the log.
    :param totals: requests per batch, for progress before the provider reports counts.
    :param cancel_on_timeout: at the deadline, cancel what still runs and wait (up to
        ``CANCEL_GRACE_SECONDS``) for it to end, so finished items can still be collected.
    :param cancel_on_kill: cancel the batches when a user marks the waiting task failed or clears
        it (Airflow 3.3+ calls ``on_kill``; a triggerer restart does not).
    :param max_batch_age: seconds after the submit; past it, one warning in the task log (once per
        run of the trigger: a triggerer restart may say it again).
    :param pending_chunks: chunks of the job a queue quota keeps waiting (``batch/waves.py``). Then
        the trigger fires (``"capacity"``) as soon as one of the batches ends, so that the sensor
        creates the next wave; with no batch running it fires after one poll interval.
    """

    def __init__(
        self,
        conn_id: str,
        provider: str,
        batch_ids: list[str],
        deadline: float,
        poll_interval: float,
        submitted_at: float,
        totals: dict[str, int] | None = None,
        cancel_on_timeout: bool = True,
        cancel_on_kill: bool = True,
        max_batch_age: float | None = None,
        pending_chunks: int = 0,
    ) -> None:
        super().__init__()
        self.max_batch_age = None if max_batch_age is None else float(max_batch_age)
        self.conn_id = conn_id
        self.provider = provider
        self.batch_ids = list(batch_ids)
        self.deadline = float(deadline)
        self.poll_interval = float(poll_interval)
        self.submitted_at = float(submitted_at)
        self.totals = dict(totals or {})
        self.cancel_on_timeout = cancel_on_timeout
        self.cancel_on_kill = cancel_on_kill
        self.pending_chunks = int(pending_chunks)
        self._ended: set[str] = set()

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "conn_id": self.conn_id,
                "provider": self.provider,
                "batch_ids": self.batch_ids,
                "deadline": self.deadline,
                "poll_interval": self.poll_interval,
                "submitted_at": self.submitted_at,
                "totals": self.totals,
                "cancel_on_timeout": self.cancel_on_timeout,
                "cancel_on_kill": self.cancel_on_kill,
                "max_batch_age": self.max_batch_age,
                "pending_chunks": self.pending_chunks,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow_llm_batch.triggers.shared_backends import SHARED_BACKENDS

        # Shared with the other triggers of this loop polling through the same connection: one
        # client and one connection pool for all of them (see ``shared_backends``).
        backend = await SHARED_BACKENDS.acquire(self.conn_id, self.provider)
        progress = ProgressTracker(self.batch_ids, self.submitted_at, self.totals)
        statuses: dict[str, dict[str, Any]] = {}
        errors_in_a_row = 0
        cancelled_at: float | None = None
        age_warned = False
        try:
            if self.pending_chunks and not self.batch_ids:
                # Nothing runs (the quota refused every create): try again after one interval.
                await asyncio.sleep(self._next_sleep(0, False))
                yield TriggerEvent(_event("capacity", statuses, "time to try the pending chunks again"))
                return
            await asyncio.sleep(self._first_delay())
            while True:
                failed = await self._poll_round(backend, progress, statuses)
                refusal = failed and backend.status_refusal(failed[1])
                if failed and refusal:  # a rejected key or a vanished batch: no round can change that
                    message = refusal.message(self.provider, self.conn_id, failed[0])
                    yield TriggerEvent({**_event("error", statuses, message), "refusal": refusal.kind})
                    return
                failure = failed[1] if failed else None
                errors_in_a_row = errors_in_a_row + 1 if failure else 0
                if failure:
                    if errors_in_a_row >= MAX_CONSECUTIVE_POLL_ERRORS:
                        yield TriggerEvent(_event("error", statuses, _describe(failure, errors_in_a_row)))
                        return
                    self.log.warning("Status poll failed (%s); retrying", _describe(failure, errors_in_a_row))
                pending = [b for b in self.batch_ids if b not in self._ended]
                if pending and not age_warned and (warning := age_warning(self.submitted_at, self.max_batch_age)):
                    self.log.warning(warning)
                    age_warned = True
                if self.pending_chunks and self._ended and pending and cancelled_at is None:
                    message = f"{len(self._ended)} batch(es) ended; {self.pending_chunks} chunk(s) wait for capacity"
                    yield TriggerEvent(_event("capacity", statuses, message))
                    return
                if not pending:
                    self.log.info(progress.total_line())
                    message = "all batches have ended"
                    if cancelled_at is not None:
                        message = "the deadline passed; the batches were cancelled and have ended"
                    yield TriggerEvent(_event("timeout" if cancelled_at else "success", statuses, message))
                    return
                now = time.time()
                if now >= self.deadline and cancelled_at is None:
                    if not self.cancel_on_timeout:
                        yield TriggerEvent(_event("timeout", statuses, "the deadline fixed at submit time has passed"))
                        return
                    self.log.warning("Deadline passed: cancelling %s to harvest what finished", pending)
                    await self._cancel(backend, pending)
                    cancelled_at = now
                elif cancelled_at is not None and now - cancelled_at > CANCEL_GRACE_SECONDS:
                    message = f"the deadline passed and {pending} did not end within {CANCEL_GRACE_SECONDS:.0f}s"
                    yield TriggerEvent(_event("timeout", statuses, message))
                    return
                await asyncio.sleep(self._next_sleep(errors_in_a_row, cancelled_at is not None))
        finally:
            await SHARED_BACKENDS.release(backend)

    async def _poll_round(
        self, backend: Any, progress: ProgressTracker, statuses: dict[str, dict[str, Any]]
    ) -> tuple[str, BaseException] | None:
        """One status request per batch still running, all at once; returns a failed batch and its
        error, one the provider refused for good (``status_refusal``) before any other."""
        pending = [b for b in self.batch_ids if b not in self._ended]
        results = await asyncio.gather(*(backend.aget_status(b) for b in pending), return_exceptions=True)
        failure: tuple[str, BaseException] | None = None
        polled = []
        for batch_id, result in zip(pending, results, strict=True):
            if isinstance(result, BaseException):
                if failure is None or backend.status_refusal(result):
                    failure = (batch_id, result)
                continue
            statuses[result.batch_id] = result.summary()
            if result.ended:
                self._ended.add(result.batch_id)
            polled.append(result)
        for line in progress.poll_lines(polled):
            self.log.info(line)
        return failure

    async def _cancel(self, backend: Any, batch_ids: list[str]) -> None:
        results = await asyncio.gather(*(backend.acancel(b) for b in batch_ids), return_exceptions=True)
        for batch_id, result in zip(batch_ids, results, strict=True):
            if isinstance(result, BaseException):
                self.log.warning("Cancelling %s failed: %s", batch_id, _describe(result, 1))

    async def on_kill(self) -> None:
        """A user killed the waiting task (Airflow 3.3+): cancel the batches if configured."""
        if not self.cancel_on_kill:
            return
        from airflow_llm_batch.hooks.llm_batch import LLMBatchHook

        pending = [b for b in self.batch_ids if b not in self._ended]
        if not pending:
            return
        backend = await LLMBatchHook.aget_backend(self.conn_id, self.provider)
        try:
            self.log.warning("The task was killed: cancelling %s", pending)
            await self._cancel(backend, pending)
        finally:
            await backend.aclose()

    def _first_delay(self) -> float:
        """Where in the poll interval this trigger polls: a fixed share of it, drawn from the batch ids.

        Triggers that start together (a mapped task's sensors deferring at once, a triggerer
        taking over another's triggers) would otherwise poll together every round: each round's
        status calls, answers and log lines would reach the event loop at once and hold it for
        tens of milliseconds, and the provider would see a burst instead of a steady rate. Drawn
        from the ids, not at random, so the share is the same after a restart; never past the deadline.
        """
        share = zlib.crc32("\x1f".join(self.batch_ids).encode()) / 2**32
        return max(0.0, min(share * self.poll_interval, self.deadline - time.time()))

    def _next_sleep(self, errors_in_a_row: int, past_deadline: bool) -> float:
        """The poll interval, doubled per failed round in a row (capped), never sleeping past the deadline."""
        delay = self.poll_interval * (2**errors_in_a_row if errors_in_a_row else 1)
        delay = min(delay, max(self.poll_interval, MAX_BACKOFF_SECONDS))
        if past_deadline:
            return delay
        return max(0.0, min(delay, self.deadline - time.time()))


def _event(status: str, statuses: dict[str, dict[str, Any]], message: str) -> dict[str, Any]:
    return {"status": status, "batches": statuses, "message": message}


def _describe(error: BaseException, attempts: int) -> str:
    # The SDK's exception text names status and request id, never the key.
    return f"{type(error).__name__}: {error} ({attempts} failed poll round(s) in a row)"
