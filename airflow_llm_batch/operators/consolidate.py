"""LLMBatchConsolidateOperator: one final row per input id after retry rounds."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow.sdk import BaseOperator


class LLMBatchConsolidateOperator(BaseOperator):
    """Merge the results of every attempt into one output: each input id once, its last attempt.

    Rounds that were skipped (nothing left to retry) return no summary and are ignored. The
    ``attempt`` column tells how many attempts an item took; permanent failures keep the row of the
    attempt that found them.

    :param summaries: the Results tasks' return values, first attempt first.
    :param output_format: ``"jsonl"`` or ``"parquet"``.
    :param output_dir: where to write ``final.<format>``; default: the job's folder in the work dir.
    :param sink: also write the final rows to a table, e.g. ``BigQuerySink("project.dataset.labels")``;
        running this task again for the same DAG run replaces the rows it wrote before.
    :param prices: batch prices per model for the summary's ``cost`` (see ``LLMBatchResultsOperator``).

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
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("trigger_rule", "none_failed")
        super().__init__(**kwargs)
        self.summaries = summaries
        self.output_format = output_format
        self.output_dir = output_dir
        self.prices = dict(prices or {})
        self.sink = sink

    def execute(self, context: Any) -> dict[str, Any]:
        from airflow_llm_batch.batch import jsonl
        from airflow_llm_batch.batch.pricing import cost_summary
        from airflow_llm_batch.batch.retry import consolidate
        from airflow_llm_batch.config import price_table
        from airflow_llm_batch.io.sinks import open_sink
        from airflow_llm_batch.operators._common import job_key_of, storage_path

        summaries = sorted((s for s in self.summaries or [] if s), key=lambda s: int(s["attempt"]))
        if not summaries:
            raise ValueError(f"{self.task_id}: no Results summary to consolidate; is the first round upstream?")
        first = summaries[0]
        job_root = storage_path(first["work_uri"]).parent
        out_dir = storage_path(self.output_dir) if self.output_dir else job_root / "final"
        if self.sink is not None:  # checked before anything is written: a conflicting table writes nothing
            schema_file = storage_path(first["work_uri"]) / "schema.json"
            schema = jsonl.loads(schema_file.read_bytes()) if first.get("has_schema") else None
            self.sink.prepare(job_key_of(context), schema)
        sink = open_sink(out_dir, self.output_format, stem="final")
        result = consolidate([storage_path(s["output_uri"]) for s in summaries], sink)
        result.update(job_key=first["job_key"], provider=first["provider"], model=first["model"])
        result["cost"] = cost_summary(
            first["provider"], first["model"], result["input_tokens"], result["output_tokens"], price_table(self.prices)
        )
        if self.sink is not None:
            from airflow_llm_batch.batch.retry import iter_result_rows

            result["sink"] = self.sink.write(iter_result_rows(storage_path(result["output_uri"])))
        with (out_dir / "summary.json").open("wb") as stream:
            stream.write(jsonl.dumps(result, option=jsonl.orjson.OPT_INDENT_2))
        self.log.info(
            "%d items after %d attempt(s): %d succeeded, %d failed (%d permanent, %d retryable left) %s; at %s",
            result["items"],
            result["attempts"],
            result["succeeded"],
            result["failed"],
            result["permanent"],
            result["retryable"],
            result["by_error_type"] or "",
            result["output_uri"],
        )
        return result
