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
    It polls once on the worker before deferring, so batches that have already ended (a cleared
    run) are finished without a trigger.
    The deadline comes from the manifest (fixed at submit time), so retries and triggerer restarts
    never extend it. Under a queue quota (``queue_quota`` of the Submit task) the job goes out in
    waves: each time capacity frees, the sensor resumes on a worker, creates the next wave from
    the pending chunks and defers again; a batch refused for capacity sends its chunk back to
    pending (nothing was billed). A batch that failed as a whole for another reason (validation,
    billing) does not fail this task: the Results task writes every other chunk's rows and fails
    at its end. Expired and cancelled batches: their finished items are collected by Results.
    When the deadline passes, the batches still running are cancelled (``cancel_on_timeout``) and,
    once they have ended, the sensor succeeds with a warning so the finished items are harvested
    and the rest become retryable ``cancelled`` rows.

    :param manifest: the Submit task's return value (``submit.output``). The sensor returns the
        manifest of every wave's batches with their statuses: pass *its* output to the Results task.
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
        if not manifest.batches and not manifest.pending:
            self.log.info("No batches to wait for (the input had no items)")
            return manifest.to_dict()
        if not self.deferrable:
            return super().execute(context)
        # One status round on this worker before deferring: batches that have already ended (a
        # cleared or re-run DAG run, a retry after they finished) are finished here. Deferring to
        # a trigger that fires at once races Airflow's bookkeeping of the deferring try: the stale
        # "success" of the deferring process can fail the resumed try (apache/airflow#72716).
        statuses = {status.batch_id: status.summary() for status in self._poll_waiting(context, manifest)}
        if manifest.pending or all(s.get("outcome") for s in statuses.values()):
            return self._advance(context, manifest, statuses)
        # Some still run and no wave waits: the trigger waits for all of them, as the statuses seen
        # here are kept only by a job with waves (a job without waves writes no wave record).
        return self._advance(context, manifest, {})

    def _advance(self, context: Any, manifest: Any, statuses: dict[str, Any]) -> Any:
        """Record what ended, create the next wave where capacity allows, then defer again or finish."""
        from airflow_llm_batch.triggers.completion import LLMBatchCompletionTrigger

        running = self._next_wave(context, manifest, statuses)
        if not running and (not manifest.pending or time.time() >= manifest.deadline):
            return self._finish(context, manifest, statuses)
        remaining = max(0.0, manifest.deadline - time.time())
        self.log.info(
            "Deferring until %d batch(es) end%s; deadline in %s",
            len(running),
            f" or capacity frees for {len(manifest.pending)} pending chunk(s)" if manifest.pending else "",
            timedelta(seconds=int(remaining)),
        )
        totals = {b.batch_id: b.count for b in manifest.batches}
        self.defer(
            trigger=LLMBatchCompletionTrigger(
                conn_id=manifest.conn_id,
                provider=manifest.provider,
                batch_ids=running,
                deadline=manifest.deadline,
                poll_interval=self.poll_interval,
                submitted_at=manifest.submitted_at,
                totals={batch_id: totals[batch_id] for batch_id in running},
                cancel_on_timeout=self.cancel_on_timeout,
                cancel_on_kill=self.cancel_on_kill,
                max_batch_age=self.max_batch_age,
                pending_chunks=len(manifest.pending),
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=remaining + self.poll_interval + DEFERRAL_GRACE_SECONDS),
        )

    def _next_wave(self, context: Any, manifest: Any, statuses: dict[str, Any]) -> list[str]:
        """Update ``manifest`` from this sensor's wave record (waves, refusals); return the batches
        still running.

        Batches refused for capacity send their chunks back to pending; before the deadline, the
        pending chunks that fit under the quota become the next wave (``batch/wave_record.py``).
        """
        from airflow_llm_batch.batch.wave_record import advance_waves, recorded_statuses, refresh_manifest
        from airflow_llm_batch.hooks.llm_batch import LLMBatchHook
        from airflow_llm_batch.operators._common import storage_path

        records, layout = self._wave_records(context, manifest)
        if not records.pending() and not any((s or {}).get("outcome") for s in statuses.values()):
            refresh_manifest(manifest, records)  # nothing to create or to learn from: no provider call
        else:
            backend = LLMBatchHook(manifest.conn_id, manifest.provider).get_conn()
            try:
                report = advance_waves(
                    manifest, records, statuses, backend, path_of=storage_path, lease_file=layout.lease_file
                )
            finally:
                backend.close()
            if report.created or manifest.pending:
                self.log.info(report.line())
            if report.created or report.refused or manifest.pending:
                from airflow_llm_batch.metrics import emit_wave

                emit_wave(report, manifest, context)
        ended = recorded_statuses(records)
        return [batch_id for batch_id in manifest.batch_ids if batch_id not in ended]

    def _wave_records(self, context: Any, manifest: Any) -> Any:
        """This sensor's record of later waves (its own: the Submit task's record is Submit's) and the
        job's layout. On Airflow 3.3+ the record is in this task instance's Task State Store."""
        from airflow_llm_batch.batch.state import JobLayout
        from airflow_llm_batch.batch.wave_record import load_wave_record
        from airflow_llm_batch.operators._common import storage_path
        from airflow_llm_batch.state_store import wave_records

        layout = JobLayout(storage_path(manifest.work_uri))
        self._waves_store = wave_records(context, layout.waves_file)  # on_kill has no context
        return load_wave_record(self._waves_store, manifest), layout

    def poke(self, context: Any) -> bool | PokeReturnValue:
        from airflow_llm_batch.hooks.llm_batch import LLMBatchHook
        from airflow_llm_batch.progress import age_warning

        manifest = self._manifest()
        polled = self._poll_waiting(context, manifest)
        statuses = {status.batch_id: status.summary() for status in polled}
        running = self._next_wave(context, manifest, statuses)
        if running and not self._age_warned and (warning := age_warning(manifest.submitted_at, self.max_batch_age)):
            self.log.warning(warning)
            self._age_warned = True
        if not running and (not manifest.pending or time.time() >= manifest.deadline):
            if manifest.pending and not self.cancel_on_timeout:
                self._raise_timeout([], len(manifest.pending))
            return PokeReturnValue(is_done=True, xcom_value=self._finish(context, manifest, statuses))
        if time.time() >= manifest.deadline:
            if not self.cancel_on_timeout:
                self._raise_timeout(running, len(manifest.pending))
            backend = LLMBatchHook(manifest.conn_id, manifest.provider).get_conn()
            try:
                for batch_id in running:  # then keep poking until the cancellations have ended
                    self.log.warning("Deadline passed: cancelling batch %s to harvest what finished", batch_id)
                    backend.cancel(batch_id)
            finally:
                backend.close()
        return False

    def _poll_waiting(self, context: Any, manifest: Any) -> list[Any]:
        """One status round of the batches not yet recorded as ended (every wave's: ``manifest`` is
        refreshed from this sensor's wave record), logged as the trigger logs its rounds."""
        from airflow_llm_batch.batch.wave_record import recorded_statuses, refresh_manifest
        from airflow_llm_batch.hooks.llm_batch import LLMBatchHook
        from airflow_llm_batch.progress import ProgressTracker

        records, _ = self._wave_records(context, manifest)
        refresh_manifest(manifest, records)  # every wave's batches, not only Submit's first
        ended = recorded_statuses(records)
        waiting = [entry for entry in manifest.batches if entry.batch_id not in ended]
        if not waiting:
            return []
        backend = LLMBatchHook(manifest.conn_id, manifest.provider).get_conn()
        try:
            polled = [self._status(backend, manifest, entry.batch_id) for entry in waiting]
        finally:
            backend.close()
        progress = ProgressTracker(
            [e.batch_id for e in waiting], manifest.submitted_at, {e.batch_id: e.count for e in waiting}
        )
        for line in progress.poll_lines(polled):
            self.log.info(line)
        return polled

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        manifest = self._manifest()
        statuses = event.get("batches") or {}
        if event.get("status") in ("success", "capacity"):
            return self._advance(context, manifest, statuses)
        if event.get("status") == "timeout":
            running = self._next_wave(context, manifest, statuses)
            if running or (manifest.pending and not self.cancel_on_timeout):
                self._raise_timeout(running, len(manifest.pending))
            self.log.warning(
                "The deadline passed; the batches were cancelled and %d chunk(s) were never submitted. "
                "Harvesting what finished.",
                len(manifest.pending),
            )
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
        # ``manifest`` names every wave's batches (``_next_wave`` ran first), with the statuses this
        # sensor recorded; the Results task reads this manifest, not a record it cannot reach.
        for entry in manifest.batches:
            entry.status = statuses.get(entry.batch_id) or entry.status
        manifest.waited = True
        failed = [e for e in manifest.batches if (e.status or {}).get("outcome") == "failed"]
        for entry in failed:
            # Not raised here: the Results task writes every other chunk's rows first, then fails.
            reasons = ", ".join(entry.status["errors"]) or "no reason given"
            self.log.warning("Batch %s (chunk %d) failed as a whole: %s", entry.batch_id, entry.chunk, reasons)
        push_console_url(context, manifest.provider, manifest.batch_ids)
        outcomes = sorted({(e.status or {}).get("outcome") or "?" for e in manifest.batches})
        failed_items = sum(int((e.status or {}).get("failed") or 0) for e in manifest.batches)
        # The provider counts only the items it could not answer; an answer that breaks the output
        # schema is found by the Results task, so its failed count can be higher than this one.
        self.log.info(
            "All %d batch(es) ended: %s; %d item(s) failed at the provider (the results task also counts "
            "answers that break the output schema, so its failed count can be higher)%s",
            len(manifest.batches),
            ", ".join(outcomes),
            failed_items,
            f"; {len(manifest.pending)} chunk(s) never submitted (retryable rows)" if manifest.pending else "",
        )
        return manifest.to_dict()

    def _raise_timeout(self, running: list[str], pending: int = 0) -> None:
        from airflow_llm_batch.exceptions import BatchTimeoutError

        raise BatchTimeoutError(
            f"the deadline fixed at submit time passed with {len(running)} batch(es) still running: {running}"
            + (f" and {pending} chunk(s) never submitted (the queue quota kept them waiting)" if pending else "")
            + ("" if self.cancel_on_timeout else "; they keep running (cancel_on_timeout=False)")
            + (". Clear the run to submit the waiting chunks with a new deadline" if pending else "")
        )

    def on_kill(self) -> None:
        """Poke mode: a user killed the task; cancel the batches if configured."""
        if not self.cancel_on_kill:
            return
        from airflow_llm_batch.batch.wave_record import load_wave_record, refresh_manifest
        from airflow_llm_batch.hooks.llm_batch import LLMBatchHook

        manifest = self._manifest()
        store = getattr(self, "_waves_store", None)
        if store is not None:  # every wave's batches, as the pokes before the kill recorded them
            refresh_manifest(manifest, load_wave_record(store, manifest))
        backend = LLMBatchHook(manifest.conn_id, manifest.provider).get_conn()
        for batch_id in manifest.batch_ids:
            status = backend.get_status(batch_id)
            if not status.ended:
                self.log.warning("The task was killed: cancelling batch %s", batch_id)
                backend.cancel(batch_id)
