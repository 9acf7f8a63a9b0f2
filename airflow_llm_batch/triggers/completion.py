"""LLMBatchCompletionTrigger: waits in the triggerer until every batch of a job has ended.

Polls with the SDK's *async* client and an async connection lookup, so thousands of waiting
batches share one event loop without blocking it. The deadline is wall-clock Unix time fixed at
submit time, not a duration: the trigger is serialized into the database and may resume in
another triggerer process after a restart, and a duration would start counting again there.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_llm_batch.progress import ProgressTracker

# Status polls that fail in a row (429, 5xx, dropped connections) before the task is failed.
MAX_CONSECUTIVE_POLL_ERRORS = 10
MAX_BACKOFF_SECONDS = 300.0


class LLMBatchCompletionTrigger(BaseTrigger):
    """Fires once all batches have ended, the deadline has passed, or polling kept failing.

    :param conn_id: the connection the batches were submitted with.
    :param provider: the provider named in the manifest.
    :param batch_ids: the batches to wait for.
    :param deadline: Unix seconds after which the trigger stops waiting (fixed at submit time).
    :param poll_interval: seconds between poll rounds.
    :param submitted_at: Unix seconds of the submit, for elapsed time and estimates in the log.
    :param totals: requests per batch, for progress before the provider reports counts.
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
    ) -> None:
        super().__init__()
        self.conn_id = conn_id
        self.provider = provider
        self.batch_ids = list(batch_ids)
        self.deadline = float(deadline)
        self.poll_interval = float(poll_interval)
        self.submitted_at = float(submitted_at)
        self.totals = dict(totals or {})

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
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow_llm_batch.hooks.llm_batch import LLMBatchHook

        backend = await LLMBatchHook.aget_backend(self.conn_id, self.provider)
        progress = ProgressTracker(self.batch_ids, self.submitted_at, self.totals)
        statuses: dict[str, dict[str, Any]] = {}
        errors_in_a_row = 0
        try:
            while True:
                pending = [b for b in self.batch_ids if not (statuses.get(b) or {}).get("outcome")]
                results = await asyncio.gather(*(backend.aget_status(b) for b in pending), return_exceptions=True)
                failures = [r for r in results if isinstance(r, BaseException)]
                for result in results:
                    if not isinstance(result, BaseException):
                        statuses[result.batch_id] = result.summary()
                        for line in progress.update(result):
                            self.log.info(line)
                if failures:
                    errors_in_a_row += 1
                    if errors_in_a_row >= MAX_CONSECUTIVE_POLL_ERRORS:
                        yield TriggerEvent(_event("error", statuses, _describe(failures[0], errors_in_a_row)))
                        return
                    self.log.warning("Status poll failed (%s); retrying", _describe(failures[0], errors_in_a_row))
                else:
                    errors_in_a_row = 0
                if all((statuses.get(b) or {}).get("outcome") for b in self.batch_ids):
                    self.log.info(progress.total_line())
                    yield TriggerEvent(_event("success", statuses, "all batches have ended"))
                    return
                if time.time() >= self.deadline:
                    yield TriggerEvent(_event("timeout", statuses, "the deadline fixed at submit time has passed"))
                    return
                await asyncio.sleep(self._next_sleep(errors_in_a_row))
        finally:
            await backend.aclose()

    def _next_sleep(self, errors_in_a_row: int) -> float:
        delay = self.poll_interval * (2**errors_in_a_row if errors_in_a_row else 1)
        delay = min(delay, max(self.poll_interval, MAX_BACKOFF_SECONDS))
        return max(0.0, min(delay, self.deadline - time.time()))


def _event(status: str, statuses: dict[str, dict[str, Any]], message: str) -> dict[str, Any]:
    return {"status": status, "batches": statuses, "message": message}


def _describe(error: BaseException, attempts: int) -> str:
    # The SDK's exception text names status and request id, never the key.
    return f"{type(error).__name__}: {error} ({attempts} failed poll round(s) in a row)"
