"""The finish use case: result rows into a file, then into a table if asked; a summary back.

Shared by ``LLMBatchResultsOperator`` (one attempt's ended batches, :func:`finish_results`) and
``LLMBatchConsolidateOperator`` (every attempt's results files, :func:`finish_consolidated`), so
both read the job's schema, check the table before writing anything, and load it from the
finished file the same way. The operators hand in how to open a file sink and how to turn a URI
into a path (``io/`` and Airflow's ``ObjectStoragePath`` stay above this layer).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from airflow_llm_batch.batch import jsonl
from airflow_llm_batch.batch.backends.base import BatchBackend
from airflow_llm_batch.batch.backends.storage_cleanup import check_cleanup_mode
from airflow_llm_batch.batch.gates import QualityGates, enforce_gates, record_gates
from airflow_llm_batch.batch.manifest import Manifest
from airflow_llm_batch.batch.pricing import PriceTable
from airflow_llm_batch.batch.records import BatchStatus, JobKey
from airflow_llm_batch.batch.results import (
    DEFAULT_LATE_OUTPUT_GRACE,
    RowSink,
    collect_results,
    raise_for_failed_batches,
)
from airflow_llm_batch.batch.retry import consolidate, iter_result_rows
from airflow_llm_batch.batch.reuse_answers import store_answers
from airflow_llm_batch.batch.schema import OutputValidator
from airflow_llm_batch.batch.state import JobLayout, check_job_files
from airflow_llm_batch.batch.storage import StoragePath
from airflow_llm_batch.batch.summary import ResultsSummary

log = logging.getLogger(__name__)
# Written once the provider's files are deleted: the Results summary, returned by a later try.
CLEANED_SUMMARY = "summary_after_cleanup.json"


class FileSink(RowSink, Protocol):
    """The results file being written (``io/sinks.py``)."""

    path: StoragePath


class TableSink(Protocol):
    """A table the rows also go to (``io/bigquery_sink.BigQuerySink``)."""

    uri: str

    def prepare(self, job_key: JobKey, schema: Mapping[str, Any] | None) -> None: ...

    def write(self, rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]: ...


def job_schema(layout: JobLayout, has_schema: bool) -> dict[str, Any] | None:
    """The response schema the Submit task stored beside its requests, if it had one."""
    if not has_schema:
        return None
    with layout.schema_file.open("rb") as stream:
        return dict(jsonl.loads(stream.read()))


def finish_results(
    manifest: Manifest,
    backend: BatchBackend,
    *,
    path_of: Callable[[str], StoragePath],
    open_rows: Callable[[StoragePath], FileSink],
    output_dir: str | None,
    table: TableSink | None,
    job_key: JobKey,
    prices: PriceTable | None,
    cleanup: str = "after_results",
    gates: QualityGates | None = None,
    allow_failed_batches: bool = False,
    late_output_grace: float = DEFAULT_LATE_OUTPUT_GRACE,
    open_reuse_table: Callable[[Mapping[str, Any]], Any] | None = None,
) -> dict[str, Any]:
    """One row per submitted item into ``results.<format>`` (and ``table``); the Results summary.

    :param backend: closed here once the results are read.
    :param cleanup: one of ``CLEANUP_MODES``: what to delete at the provider once every row is written.
    :param gates: judged once the rows are written (``gates.py``); a failing gate raises
        ``QualityGateError`` carrying the summary.
    :param allow_failed_batches: else, once every row is written, raise ``BatchFailedError`` naming
        the batches that failed as a whole (their items are permanent failed rows with the reason).
    :param late_output_grace: seconds to re-read a batch whose output is late or short.
    :param open_reuse_table: opens the BigQuery table of a ``reuse={"table": ...}`` job (``io/``).
    """
    check_cleanup_mode(cleanup)
    layout = JobLayout(path_of(manifest.work_uri))
    earlier = _summary_of_cleaned_job(layout)
    if earlier is not None:  # the provider's copies are gone; the results file is complete
        backend.close()
        if table is not None:
            table.prepare(job_key, job_schema(layout, manifest.has_schema))
            earlier["sink"] = _write_table(table, path_of(earlier["output_uri"]))
        if not allow_failed_batches:  # a cleared try fails as the first did: the batches still failed
            raise_for_failed_batches(earlier.get("failed_batches") or [], f"results at {earlier['output_uri']}")
        enforce_gates(record_gates(earlier, gates, log))
        return earlier
    check_job_files(layout, manifest.batch_ids)
    schema = job_schema(layout, manifest.has_schema)
    validator = OutputValidator(schema) if schema is not None else None
    if table is not None:  # checked before any result is read: a conflicting table writes nothing
        table.prepare(job_key, schema)
    rows = open_rows(path_of(output_dir) if output_dir else layout.results_dir)
    statuses: list[BatchStatus] = []
    try:
        summary = collect_results(
            manifest,
            backend,
            layout,
            rows,
            validator,
            on_batch=lambda _, status: statuses.append(status),
            prices=prices,
            late_output_grace=late_output_grace,
        )
        _log_summary(summary)
        if manifest.extra.get("reuse"):
            summary["reuse"] = {
                **summary["reuse"],
                "stored": store_answers(manifest, layout, rows.path, path_of, open_reuse_table),
            }
        if table is not None:
            summary["sink"] = _write_table(table, rows.path)
        if cleanup != "never":  # only now: the results file (and table) hold every row
            summary["provider_cleanup"] = _clean_up(backend, manifest, statuses, cleanup, layout, summary)
    finally:
        backend.close()
    if not allow_failed_batches:
        raise_for_failed_batches(summary["failed_batches"], f"results at {summary['output_uri']}")
    enforce_gates(record_gates(summary, gates, log))
    return summary


def _write_table(table: TableSink, results: StoragePath) -> dict[str, Any]:
    written = table.write(iter_result_rows(results))
    log.info("Wrote %d rows to %s (replacing this task's rows of this run)", written["rows"], table.uri)
    return written


def _log_summary(summary: Mapping[str, Any]) -> None:
    log.info(
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
    _log_cost(summary["cost"])


def _clean_up(
    backend: BatchBackend,
    manifest: Manifest,
    statuses: Sequence[BatchStatus],
    cleanup: str,
    layout: JobLayout,
    summary: dict[str, Any],
) -> dict[str, Any]:
    """Delete the job's files at the provider; then mark the job cleaned, with its summary.

    A later try of this task (cleared, or retried after a failure downstream of here) cannot read
    the deleted result files again, so it takes the finished results file and the summary kept
    here instead (and loads the table from that file again; see :func:`_summary_of_cleaned_job`).
    Nothing a retry round needs is at the provider: it reads its requests and the failed ids from
    the work dir.
    """
    report = backend.delete_stored(statuses, manifest.job_key, batches=cleanup == "after_results_and_batches")
    done = report.to_dict()
    log.info(
        "Deleted %d file(s)%s at %s now that the results are written%s",
        done["deleted"],
        " and batch(es)" if cleanup == "after_results_and_batches" else "",
        manifest.provider,
        f"; kept {len(done['kept'])}: {done['kept'][0]['reason']}" if done["kept"] else "",
    )
    with (layout.results_dir / CLEANED_SUMMARY).open("wb") as stream:
        stream.write(jsonl.dumps({**summary, "provider_cleanup": done}, option=jsonl.orjson.OPT_INDENT_2))
    return done


def _summary_of_cleaned_job(layout: JobLayout) -> dict[str, Any] | None:
    """The summary of an earlier try that wrote every result and then deleted the provider's files."""
    marker = layout.results_dir / CLEANED_SUMMARY
    if not marker.exists():
        return None
    with marker.open("rb") as stream:
        summary = dict(jsonl.loads(stream.read()))
    log.info(
        "An earlier try of this task wrote every result (%s) and deleted the job's files at the provider; "
        "using that results file and its summary. To collect from the provider again, run the step from Submit.",
        summary.get("output_uri"),
    )
    return summary


def finish_consolidated(
    summaries: Sequence[Mapping[str, Any] | None],
    *,
    task: str,
    path_of: Callable[[str], StoragePath],
    open_rows: Callable[[StoragePath], FileSink],
    output_dir: str | None,
    table: TableSink | None,
    job_key: JobKey,
    prices: PriceTable | None,
    gates: QualityGates | None = None,
    allow_failed_batches: bool = False,
) -> dict[str, Any]:
    """Every input id once, from its last attempt, into ``final.<format>`` (and ``table``).

    :param summaries: the Results summaries of every round; skipped rounds (``None``) are ignored.
    :param gates: judged on the final rows, recorded in ``summary.json`` too; a failing gate raises
        ``QualityGateError`` carrying the summary.
    :param allow_failed_batches: else, once the final output is written, raise naming every batch
        of any round that failed as a whole.
    """
    rounds = sorted((s for s in summaries or [] if s), key=lambda s: int(s["attempt"]))
    if not rounds:
        raise ValueError(f"{task}: no Results summary to consolidate; is the first round upstream?")
    first = rounds[0]
    first_layout = JobLayout(path_of(first["work_uri"]))
    out_dir = path_of(output_dir) if output_dir else first_layout.root.parent / "final"
    if table is not None:  # checked before anything is written: a conflicting table writes nothing
        table.prepare(job_key, job_schema(first_layout, bool(first.get("has_schema"))))
    rows = open_rows(out_dir)
    counted = ResultsSummary()
    result = consolidate([path_of(s["output_uri"]) for s in rounds], rows, counted)
    result.update(job_key=first["job_key"], provider=first["provider"], model=first["model"])
    result["cost"] = counted.cost(first["provider"], first["model"], prices)
    # The oldest round's age from submit to results (summaries of older versions have none).
    ages = [float(s["batch_age_seconds"]) for s in rounds if s.get("batch_age_seconds") is not None]
    if ages:
        result["batch_age_seconds"] = max(ages)
    if table is not None:
        result["sink"] = table.write(iter_result_rows(rows.path))
    record_gates(result, gates, log)
    with (out_dir / "summary.json").open("wb") as stream:
        stream.write(jsonl.dumps(result, option=jsonl.orjson.OPT_INDENT_2))
    log.info(
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
    _log_cost(result["cost"])
    if not allow_failed_batches:
        failed = [batch for summary in rounds for batch in summary.get("failed_batches") or []]
        raise_for_failed_batches(failed, f"final output at {result['output_uri']}")
    enforce_gates(result)
    return result


def _log_cost(cost: Mapping[str, Any]) -> None:
    if cost["batch"] is not None:
        log.info(
            "Cost: $%.4f at batch prices; the same tokens in real time: $%.4f (saved $%.4f); prices: %s",
            cost["batch"],
            cost["realtime"],
            cost["savings"],
            cost["price_source"],
        )
    else:
        log.info("Cost unknown: %s", cost["price_source"])
    discarded = cost["discarded"]
    if cost["per_succeeded_item"] is not None:
        log.info("Cost per succeeded item: $%.6f (%d items billed)", cost["per_succeeded_item"], cost["billed_items"])
    if discarded["items"]:
        log.info(
            "%d billed answer(s) were discarded (output that broke the schema, refusals): $%s at batch prices",
            discarded["items"],
            "unknown" if discarded["batch"] is None else f"{discarded['batch']:.4f}",
        )
