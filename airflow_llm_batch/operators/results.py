"""LLMBatchResultsOperator: ended batches to a results file, one row per submitted item."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow.sdk import BaseOperator


class LLMBatchResultsOperator(BaseOperator):
    """Stream every batch's results into a JSONL or Parquet file and return a summary.

    Each submitted id gets exactly one row: its result, or ``missing`` (retryable) when the
    provider returned none. Structured output is validated against the response schema; output
    that does not parse or validate becomes an ``invalid_output`` row with the raw text kept.
    The ids that failed go to ``failed_items.jsonl`` beside the results, for a retry round.

    Columns: ``id, status, text, json, embedding, error_type, error_message, retryable, provider,
    model, batch_id, attempt, input_tokens, output_tokens, finish_reason``.

    :param manifest: the Submit (or Sensor) task's return value.
    :param output_format: ``"jsonl"`` (default) or ``"parquet"``.
    :param output_dir: where to write ``results.<format>``; default: the job's folder in the work dir.
    :param sink: also write the rows to a table, e.g. ``BigQuerySink("project.dataset.labels")``
        (``airflow_llm_batch.io.bigquery_sink``). The table is checked before any result is read
        and loaded after the results file is complete; running this task again for the same DAG
        run replaces the rows it wrote before. The file is still written (retry rounds read it).
    :param prices: batch prices per model for the summary's ``cost``, overriding the shipped table
        and ``[llm_batch] price_table``: ``{"my-model": {"input": 0.2, "output": 0.8}}`` (USD per 1M
        tokens).
    :param allow_failed_batches: a batch that failed as a whole (validation, billing) makes its
        items permanent failed rows with the provider's reason; every other chunk's rows are written
        first. ``False`` (default): the task then fails, naming the batches. ``True``: it succeeds,
        and the summary's ``failed_batches`` lists them.
    :param late_output_grace: seconds to keep re-reading a batch that ended with its output not
        all readable yet (Gemini's output set after ``SUCCEEDED``; an OpenAI output file shorter than
        its counts) before the unread items become ``missing``; default 300.
    :param output_asset: an Airflow asset (an ``Asset`` or its URI) this task updates when it
        succeeds, so that other DAGs can be scheduled on fresh results. It is added to ``outlets``;
        the asset event's ``extra`` carries the summary's ``output_uri``, counts and cost. Asset
        URIs are fixed when the DAG is parsed: name the dataset ("results of the nightly triage"),
        not one run's file, e.g. ``"file:///data/triage/results"`` or ``"llm-batch://triage"``.
    :param cleanup: what to delete at the provider once every row is written (and loaded into
        ``sink``): ``"after_results"`` (default) deletes the job's input and result files (OpenAI,
        Gemini; Gemini refuses to delete batch output files today, which then expire after 48 h),
        ``"after_results_and_batches"`` also deletes the batches where the provider allows it
        (Anthropic), ``"never"`` keeps everything until the provider expires it. A retry round
        needs nothing at the provider; a later try of this task uses the results file it wrote.
    :param min_success_rate: a quality gate: the share of items (0..1, e.g. ``0.95``) that must
        succeed. Below it the task fails without retries (``on_gate_breach="fail"``) or logs a
        warning and succeeds (``"warn"``); either way the summary's ``gates`` says which gate
        tripped and why, with the top error types (``docs/quality-gates.md``).
    :param max_batch_age: seconds or a ``timedelta`` from the submit to the results; a step that
        took longer is reported in the summary's ``gates`` and the log (never a failure).
    :param on_gate_breach: ``"fail"`` (default) or ``"warn"``, for ``min_success_rate``.

    The summary (the task's XCom) holds the counts, the tokens, the ``cost`` (``batch``: what the
    tokens cost at batch prices; ``realtime``: what the same tokens would cost through the
    real-time API; ``savings``; ``price_source``) and the URIs of the results and failed items.
    """

    template_fields: Sequence[str] = ("manifest", "output_format", "output_dir", "sink")
    ui_color = "#e6f4ea"

    def __init__(
        self,
        *,
        manifest: Any,
        output_format: str = "jsonl",
        output_dir: str | None = None,
        prices: Mapping[str, Any] | None = None,
        output_asset: Any = None,
        sink: Any = None,
        cleanup: str = "after_results",
        min_success_rate: float | None = None,
        max_batch_age: Any = None,
        on_gate_breach: str = "fail",
        allow_failed_batches: bool = False,
        late_output_grace: float | None = None,
        **kwargs: Any,
    ) -> None:
        from airflow_llm_batch.batch.backends.storage_cleanup import check_cleanup_mode
        from airflow_llm_batch.operators._common import gates_of

        self.gates = gates_of(min_success_rate, max_batch_age, on_gate_breach)
        if output_asset is not None:
            kwargs["outlets"] = [*(kwargs.get("outlets") or []), _as_asset(output_asset)]
        super().__init__(**kwargs)
        self.manifest = manifest
        self.output_format = output_format
        self.output_dir = output_dir
        self.prices = dict(prices or {})
        self.sink = sink
        self.cleanup = check_cleanup_mode(cleanup)
        self.allow_failed_batches = allow_failed_batches
        self.late_output_grace = late_output_grace
        self._output_uri: str | None = None

    def execute(self, context: Any) -> dict[str, Any]:
        from airflow_llm_batch.batch.finish import finish_results
        from airflow_llm_batch.batch.manifest import Manifest
        from airflow_llm_batch.config import price_table
        from airflow_llm_batch.hooks.llm_batch import LLMBatchHook
        from airflow_llm_batch.io.bigquery_reuse import reopen_reuse_table
        from airflow_llm_batch.io.sinks import open_sink
        from airflow_llm_batch.operators._common import job_key_of, run_gated, storage_path

        manifest = Manifest.from_dict(self.manifest)
        summary = run_gated(
            context,
            lambda: finish_results(
                manifest,
                LLMBatchHook(manifest.conn_id, manifest.provider).get_conn(),
                path_of=storage_path,
                open_rows=lambda directory: open_sink(directory, self.output_format),
                output_dir=self.output_dir,
                table=self.sink,
                job_key=job_key_of(context),
                prices=price_table(self.prices),
                cleanup=self.cleanup,
                gates=self.gates,
                allow_failed_batches=self.allow_failed_batches,
                open_reuse_table=reopen_reuse_table,
                **({} if self.late_output_grace is None else {"late_output_grace": float(self.late_output_grace)}),
            ),
        )
        self._output_uri = summary["output_uri"]
        self._record_asset_events(context, summary)
        return summary

    def _record_asset_events(self, context: Any, summary: dict[str, Any]) -> None:
        """Attach where the results are (and what they cost) to the events of this task's asset outlets."""
        from airflow.sdk import Asset

        extra = {key: summary[key] for key in ("output_uri", "items", "succeeded", "failed", "job_key")}
        extra["cost_batch"] = summary["cost"]["batch"]
        for outlet in self.outlets or []:
            if isinstance(outlet, Asset):
                context["outlet_events"][outlet].extra.update(extra)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage: the results file this task wrote (called by the OpenLineage provider)."""
        from airflow_llm_batch.lineage import dataset_id, operator_lineage

        return operator_lineage(outputs=[dataset_id(self._output_uri)] if self._output_uri else [])


def _as_asset(value: Any) -> Any:
    from airflow.sdk import Asset

    return value if isinstance(value, Asset) else Asset(str(value))
