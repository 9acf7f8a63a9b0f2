"""LLMBatchCompletionSensor: waits for the batches of a manifest, deferrable by default."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue

from airflow_llm_batch.links import LLMBatchConsoleLink, LLMBatchListLink, push_console_url

# Extra seconds Airflow allows the deferral beyond the manifest's deadline, so the trigger's own
# timeout event (which can cancel the batches) wins over Airflow's blunt TaskDeferralTimeout.
DEFERRAL_GRACE_SECONDS = 600


class LLMBatchCompletionSensor(BaseSensorOperator):
    """Wait until every batch in ``manifest`` has ended; return the manifest with their statuses.

    While deferred it holds no worker slot: the triggerer polls with the provider's async client.
    The deadline comes from the manifest (fixed at submit time), so retries and triggerer restarts
    never extend it. A batch that failed as a whole (input validation, billing) fails the task;
    expired and cancelled batches do not: their finished items are collected by the Results task.
    When the deadline passes, the batches still running are cancelled (``cancel_on_timeout``) and,
    once they have ended, the sensor succeeds with a warning so the finished items are harvested
    and the rest become retryable ``cancelled`` rows.

    :param manifest: the Submit task's return value (``submit.output``).
    :param deferrable: wait in the triggerer (default). ``False`` uses ``mode`` (poke or reschedule).
    :param poll_interval: seconds between status polls; default ``[llm_batch] poll_interval`` (60).
    :param cancel_on_timeout: cancel batches still running when the deadline passes, then harvest.
        With ``False`` the task fails at the deadline and the batches keep running.
    :param cancel_on_kill: cancel the batches when a user marks the waiting task failed or clears it
        (deferred tasks: Airflow 3.3+; poke mode: any version).
    :param max_batch_age: seconds or a ``timedelta`` after the submit: past it while batches still
        run, one warning in the task log (a quality gate that never fails the task; the deadline
        still decides when to stop waiting). In reschedule mode each poke is a new process and may
        say it again.
    """

    template_fields: Sequence[str] = ("manifest",)
    operator_extra_links = (LLMBatchConsoleLink(), LLMBatchListLink())
    ui_color = "#fdf3e1"

    def __init__(
        self,
        *,
        manifest: Any,
        deferrable: bool = True,
        poll_interval: float | None = None,
        cancel_on_timeout: bool = True,
        cancel_on_kill: bool = True,
        max_batch_age: Any = None,
        **kwargs: Any,
    ) -> None:
        if poll_interval is None:
            from airflow_llm_batch.config import default_poll_interval

            poll_interval = default_poll_interval()
        kwargs.setdefault("poke_interval", poll_interval)
        super().__init__(**kwargs)
        self.manifest = manifest
        self.deferrable = deferrable
        self.poll_interval = float(poll_interval)
        self.cancel_on_timeout = cancel_on_timeout
        self.cancel_on_kill = cancel_on_kill
        self.max_batch_age: float | None = None
        if max_batch_age is not None:
            from airflow_llm_batch.batch.gates import seconds_of

            self.max_batch_age = seconds_of(max_batch_age)
        self._age_warned = False

    def _manifest(self) -> Any:
        from airflow_llm_batch.batch.manifest import Manifest

        return Manifest.from_dict(self.manifest)

    def execute(self, context: Any) -> Any:
        manifest = self._manifest()
        if not manifest.batches:
            self.log.info("No batches to wait for (the input had no items)")
            return manifest.to_dict()
        if not self.deferrable:
            return super().execute(context)
        from airflow_llm_batch.triggers.completion import LLMBatchCompletionTrigger

        remaining = max(0.0, manifest.deadline - time.time())
        self.log.info(
            "Deferring until %d batch(es) end; deadline in %s", len(manifest.batches), timedelta(seconds=int(remaining))
        )
        self.defer(
            trigger=LLMBatchCompletionTrigger(
                conn_id=manifest.conn_id,
                provider=manifest.provider,
                batch_ids=manifest.batch_ids,
                deadline=manifest.deadline,
                poll_interval=self.poll_interval,
                submitted_at=manifest.submitted_at,
                totals={b.batch_id: b.count for b in manifest.batches},
                cancel_on_timeout=self.cancel_on_timeout,
                cancel_on_kill=self.cancel_on_kill,
                max_batch_age=self.max_batch_age,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=remaining + self.poll_interval + DEFERRAL_GRACE_SECONDS),
        )

    def poke(self, context: Any) -> bool | PokeReturnValue:
        from airflow_llm_batch.hooks.llm_batch import LLMBatchHook
        from airflow_llm_batch.progress import ProgressTracker, age_warning

        manifest = self._manifest()
        backend = LLMBatchHook(manifest.conn_id, manifest.provider).get_conn()
        progress = ProgressTracker(
            manifest.batch_ids, manifest.submitted_at, {b.batch_id: b.count for b in manifest.batches}
        )
        polled = [self._status(backend, manifest, entry.batch_id) for entry in manifest.batches]
        statuses = {status.batch_id: status.summary() for status in polled}
        for line in progress.poll_lines(polled):
            self.log.info(line)
        all_ended = all(s["outcome"] for s in statuses.values())
        if (
            not all_ended
            and not self._age_warned
            and (warning := age_warning(manifest.submitted_at, self.max_batch_age))
        ):
            self.log.warning(warning)
            self._age_warned = True
        if all_ended:
            return PokeReturnValue(is_done=True, xcom_value=self._finish(context, manifest, statuses))
        if time.time() >= manifest.deadline:
            running = [b for b, s in statuses.items() if not s["outcome"]]
            if not self.cancel_on_timeout:
                self._raise_timeout(running)
            for batch_id in running:  # then keep poking until the cancellations have ended
                self.log.warning("Deadline passed: cancelling batch %s to harvest what finished", batch_id)
                backend.cancel(batch_id)
        return False

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        manifest = self._manifest()
        statuses = event.get("batches") or {}
        if event.get("status") == "success":
            return self._finish(context, manifest, statuses)
        if event.get("status") == "timeout":
            running = [b for b in manifest.batch_ids if not (statuses.get(b) or {}).get("outcome")]
            if running:
                self._raise_timeout(running)
            self.log.warning("The deadline passed; the batches were cancelled. Harvesting what finished.")
            return self._finish(context, manifest, statuses)
        if event.get("refusal"):
            self._raise_refused(str(event.get("refusal")), str(event.get("message")))
        from airflow_llm_batch.exceptions import LLMBatchError

        raise LLMBatchError(f"waiting for batches {manifest.batch_ids} failed: {event.get('message')}")

    def _status(self, backend: Any, manifest: Any, batch_id: str) -> Any:
        """Poke mode's status call: a refusal for good fails the task as the trigger's event does."""
        try:
            return backend.get_status(batch_id)
        except Exception as error:
            refusal = backend.status_refusal(error)
            if refusal is None:
                raise
            self._raise_refused(refusal.kind, refusal.message(manifest.provider, manifest.conn_id, batch_id))

    @staticmethod
    def _raise_refused(kind: str, message: str) -> None:
        """A rejected key fails the try (a retry reads the connection again, so a fixed key recovers);
        a batch the provider does not know fails the task without retries: none can bring it back."""
        if kind == "not_found":
            try:
                from airflow.sdk.exceptions import AirflowFailException  # type: ignore[attr-defined,unused-ignore]  # 3.2+
            except ImportError:  # Airflow 3.1
                from airflow.exceptions import AirflowFailException  # type: ignore[no-redef,unused-ignore]
            raise AirflowFailException(message)
        from airflow_llm_batch.exceptions import BatchRefusedError

        raise BatchRefusedError(message)

    def _finish(self, context: Any, manifest: Any, statuses: dict[str, dict[str, Any]]) -> dict[str, Any]:
        from airflow_llm_batch.exceptions import BatchFailedError

        for entry in manifest.batches:
            entry.status = statuses.get(entry.batch_id)
        failed = [e for e in manifest.batches if (e.status or {}).get("outcome") == "failed"]
        if failed:
            reasons = "; ".join(f"{e.batch_id}: {', '.join(e.status['errors']) or 'no reason given'}" for e in failed)
            raise BatchFailedError(f"{len(failed)} batch(es) failed as a whole at {manifest.provider}: {reasons}")
        push_console_url(context, manifest.provider, manifest.batch_ids)
        outcomes = sorted({(e.status or {}).get("outcome") or "?" for e in manifest.batches})
        failed_items = sum(int((e.status or {}).get("failed") or 0) for e in manifest.batches)
        # The provider counts only the items it could not answer; an answer that breaks the output
        # schema is found by the Results task, so its failed count can be higher than this one.
        self.log.info(
            "All %d batch(es) ended: %s; %d item(s) failed at the provider (the results task also counts "
            "answers that break the output schema, so its failed count can be higher)",
            len(manifest.batches),
            ", ".join(outcomes),
            failed_items,
        )
        return manifest.to_dict()

    def _raise_timeout(self, running: list[str]) -> None:
        from airflow_llm_batch.exceptions import BatchTimeoutError

        raise BatchTimeoutError(
            f"the deadline fixed at submit time passed with {len(running)} batch(es) still running: {running}"
            + ("" if self.cancel_on_timeout else "; they keep running (cancel_on_timeout=False)")
        )

    def on_kill(self) -> None:
        """Poke mode: a user killed the task; cancel the batches if configured."""
        if not self.cancel_on_kill:
            return
        from airflow_llm_batch.hooks.llm_batch import LLMBatchHook

        manifest = self._manifest()
        backend = LLMBatchHook(manifest.conn_id, manifest.provider).get_conn()
        for batch_id in manifest.batch_ids:
            status = backend.get_status(batch_id)
            if not status.ended:
                self.log.warning("The task was killed: cancelling batch %s", batch_id)
                backend.cancel(batch_id)
