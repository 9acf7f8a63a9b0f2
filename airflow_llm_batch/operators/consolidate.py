"""LLMBatchConsolidateOperator: one final row per input id after retry rounds."""

from __future__ import annotations

from collections.abc import Sequence
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
    """

    template_fields: Sequence[str] = ("summaries", "output_format", "output_dir")
    ui_color = "#d2e3fc"

    def __init__(
        self,
        *,
        summaries: Any,
        output_format: str = "jsonl",
        output_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("trigger_rule", "none_failed")
        super().__init__(**kwargs)
        self.summaries = summaries
        self.output_format = output_format
        self.output_dir = output_dir

    def execute(self, context: Any) -> dict[str, Any]:
        from airflow_llm_batch.batch import jsonl
        from airflow_llm_batch.batch.retry import consolidate
        from airflow_llm_batch.io.sinks import open_sink
        from airflow_llm_batch.operators._common import storage_path

        summaries = sorted((s for s in self.summaries or [] if s), key=lambda s: int(s["attempt"]))
        if not summaries:
            raise ValueError(f"{self.task_id}: no Results summary to consolidate; is the first round upstream?")
        first = summaries[0]
        job_root = storage_path(first["work_uri"]).parent
        out_dir = storage_path(self.output_dir) if self.output_dir else job_root / "final"
        sink = open_sink(out_dir, self.output_format, stem="final")
        result = consolidate([storage_path(s["output_uri"]) for s in summaries], sink)
        result.update(job_key=first["job_key"], provider=first["provider"], model=first["model"])
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
