"""LLMBatchResultsOperator: ended batches to a results file, one row per submitted item."""

from __future__ import annotations

from collections.abc import Sequence
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
    """

    template_fields: Sequence[str] = ("manifest", "output_format", "output_dir")
    ui_color = "#e6f4ea"

    def __init__(
        self,
        *,
        manifest: Any,
        output_format: str = "jsonl",
        output_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.manifest = manifest
        self.output_format = output_format
        self.output_dir = output_dir

    def execute(self, context: Any) -> dict[str, Any]:
        from airflow_llm_batch.batch import jsonl
        from airflow_llm_batch.batch.job import JobLayout
        from airflow_llm_batch.batch.manifest import Manifest
        from airflow_llm_batch.batch.results import collect_results
        from airflow_llm_batch.batch.schema import OutputValidator
        from airflow_llm_batch.hooks.llm_batch import LLMBatchHook
        from airflow_llm_batch.io.sinks import open_sink
        from airflow_llm_batch.operators._common import storage_path

        manifest = Manifest.from_dict(self.manifest)
        layout = JobLayout(storage_path(manifest.work_uri))
        validator = None
        if manifest.has_schema:
            with layout.schema_file.open("rb") as stream:
                validator = OutputValidator(jsonl.loads(stream.read()))
        out_dir = storage_path(self.output_dir) if self.output_dir else layout.results_dir
        sink = open_sink(out_dir, self.output_format)
        backend = LLMBatchHook(manifest.conn_id, manifest.provider).get_conn()
        try:
            summary = collect_results(manifest, backend, layout, sink, validator)
        finally:
            backend.close()
        self.log.info(
            "%d items: %d succeeded, %d failed (%d retryable, %d permanent) %s; tokens in %d / out %d; results at %s",
            summary["items"],
            summary["succeeded"],
            summary["failed"],
            summary["retryable"],
            summary["permanent"],
            summary["by_error_type"] or "",
            summary["input_tokens"],
            summary["output_tokens"],
            summary["output_uri"],
        )
        return summary
