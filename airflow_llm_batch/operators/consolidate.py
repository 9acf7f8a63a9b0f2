"""LLMBatchConsolidateOperator: one final row per input id after retry rounds."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow.sdk import BaseOperator


class LLMBatchConsolidateOperator(BaseOperator):
    """Merge the results of every attempt into one output: each input id once, its last attempt.

    Rounds that were skipped (nothing left to retry) return no summary and are ignored; when every
    round was skipped (a dry run of the first Submit), this task is skipped too. The
    ``attempt`` column tells how many attempts an item took; permanent failures keep the row of the
    attempt that found them.

    :param summaries: the Results tasks' return values, first attempt first.
    :param output_format: ``"jsonl"`` or ``"parquet"``.
    :param output_dir: where to write ``final.<format>``; default: the job's folder in the work dir.
    :param sink: also write the final rows to a table, e.g. ``BigQuerySink("project.dataset.labels")``;
        running this task again for the same DAG run replaces the rows it wrote before.
    :param prices: batch prices per model for the summary's ``cost`` (see ``LLMBatchResultsOperator``).
    :param min_success_rate: a quality gate: the share of input ids (0..1, e.g. ``0.95``) that must
        succeed. Below it the task fails without retries (``on_gate_breach="fail"``) or logs a
        warning and succeeds (``"warn"``); either way the summary's ``gates`` says which gate
        tripped and why, with the top error types (``docs/quality-gates.md``).
    :param max_batch_age: seconds or a ``timedelta`` from a round's submit to its results; a round that
        took longer is reported in the summary's ``gates`` and the log (never a failure).
    :param on_gate_breach: ``"fail"`` (default) or ``"warn"``, for ``min_success_rate``.
    :param allow_failed_batches: ``False`` (default): after writing the final output, fail naming
        every batch of any round that failed as a whole (their items are permanent failed rows).

    The summary's ``cost`` covers the tokens of every attempt, retried items included: each was paid.
    """

    template_fields: Sequence[str] = ("summaries", "output_format", "output_dir", "sink")
    ui_color = "#d2e3fc"

    def __init__(
        self,
        *,
        summaries: Any,
        output_format: str = "jsonl",
        output_dir: str | None = None,
        prices: Mapping[str, Any] | None = None,
        sink: Any = None,
        min_success_rate: float | None = None,
        max_batch_age: Any = None,
        on_gate_breach: str = "fail",
        allow_failed_batches: bool = False,
        **kwargs: Any,
    ) -> None:
        from airflow_llm_batch.operators._common import gates_of

        self.gates = gates_of(min_success_rate, max_batch_age, on_gate_breach)
        kwargs.setdefault("trigger_rule", "none_failed")
        super().__init__(**kwargs)
        self.summaries = summaries
        self.output_format = output_format
        self.output_dir = output_dir
        self.prices = dict(prices or {})
        self.sink = sink
        self.allow_failed_batches = allow_failed_batches

    def execute(self, context: Any) -> dict[str, Any]:
        from airflow_llm_batch.batch.finish import finish_consolidated
        from airflow_llm_batch.config import price_table
        from airflow_llm_batch.io.sinks import open_sink
        from airflow_llm_batch.operators._common import job_key_of, run_gated, skip, storage_path

        if not any(self.summaries or []):
            skip("no round produced results (the first Submit was skipped, e.g. a dry run): nothing to consolidate")
        return run_gated(
            context,
            lambda: finish_consolidated(
                self.summaries,
                task=self.task_id,
                path_of=storage_path,
                open_rows=lambda directory: open_sink(directory, self.output_format, stem="final"),
                output_dir=self.output_dir,
                table=self.sink,
                job_key=job_key_of(context),
                prices=price_table(self.prices),
                gates=self.gates,
                allow_failed_batches=self.allow_failed_batches,
            ),
            step=True,
        )
