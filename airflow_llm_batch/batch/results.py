"""Ended batches to result rows: normalize, validate structured output, reconcile, summarize.

Works one batch at a time, so memory holds one chunk's id map (at most a provider's batch size),
never the whole job. Every submitted id ends in exactly one row: a result line, or, when the
provider returned none for it, a ``missing`` (or ``expired`` / ``cancelled``) row.

Two ways through, with the same rows (the rules of a row are in ``chunk_rows.py``): one line at a
time (``RawOutcome`` -> ``ItemResult`` -> ``sink.write``), and, when the backend reads lines in
blocks (``outcome_blocks``: OpenAI chat) and the sink writes columns (``write_block``: Parquet), a
block of a thousand lines at a time as columns. There the usual line (succeeded, known id, output
the typed check is sure of) costs no Python object of its own; every other line of the block is
built by ``to_item_result`` and put in its place. ``tests/unit/test_results_columnar.py``
compares the two on mixed files.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, cast

from airflow_llm_batch.batch import jsonl
from airflow_llm_batch.batch.backends.base import BatchBackend
from airflow_llm_batch.batch.chunk_rows import ChunkRows
from airflow_llm_batch.batch.manifest import Manifest
from airflow_llm_batch.batch.pricing import PriceTable
from airflow_llm_batch.batch.records import (
    BatchOutcome,
    BatchStatus,
    ErrorType,
    ItemResult,
    ItemStatus,
    Kind,
)
from airflow_llm_batch.batch.reuse_answers import reused_rows
from airflow_llm_batch.batch.row_blocks import RowBlock
from airflow_llm_batch.batch.schema import OutputValidator
from airflow_llm_batch.batch.state import JobLayout
from airflow_llm_batch.batch.storage import uri_of
from airflow_llm_batch.batch.summary import ResultsSummary
from airflow_llm_batch.exceptions import BatchFailedError, ConfigurationError

log = logging.getLogger(__name__)
T = TypeVar("T")

# A download that drops (connection reset, 5xx mid-stream) is started again this many times; the
# rows already written are skipped on the next pass, so no item gets two rows.
MAX_DOWNLOAD_ATTEMPTS = 5
DOWNLOAD_BACKOFF_SECONDS = 2.0
# An ended batch whose output is not all readable yet (Gemini SUCCEEDED before its output is set:
# tidyverse/ellmer#926; OpenAI completed with fewer lines than its counts or a null output file:
# openai-python#3071) is read again, waiting this long at first and doubling up to the cap, for
# ``late_output_grace`` seconds in all before its unread items become ``missing``.
LATE_OUTPUT_FIRST_DELAY = 2.0
LATE_OUTPUT_MAX_DELAY = 30.0
DEFAULT_LATE_OUTPUT_GRACE = 300.0
NEVER_SUBMITTED = (
    "never submitted: the provider's queue quota did not admit this chunk before the deadline; "
    "nothing was billed, and a retry round submits it"
)


class RowSink(Protocol):
    uri: str

    def write(self, row: ItemResult) -> None: ...

    def close(self) -> None: ...


class ColumnSink(RowSink, Protocol):
    """A sink that also takes rows as columns (:class:`RowBlock`), in order with single rows."""

    def write_block(self, block: RowBlock) -> None: ...


# Longer than most on purpose: one pass per batch writes each row, its failed-items line and its
# count together, for the row path and the columnar path alike (see the module docstring).
def collect_results(
    manifest: Manifest,
    backend: BatchBackend,
    layout: JobLayout,
    sink: RowSink,
    validator: OutputValidator | None,
    on_batch: Callable[[str, BatchStatus], None] | None = None,
    prices: PriceTable | None = None,
    late_output_grace: float = DEFAULT_LATE_OUTPUT_GRACE,
) -> dict[str, Any]:
    """Write one row per submitted item to ``sink`` and the failed ids to ``failed_items.jsonl``.

    A batch that failed as a whole does not stop the others: its items become permanent failed
    rows carrying the provider's reason, and the summary lists it under ``failed_batches``. A batch
    refused for capacity and chunks never submitted (``manifest.pending``) become retryable rows.

    :param prices: the batch prices for the summary's ``cost`` (default: the shipped table).
    :param late_output_grace: seconds to keep re-reading an ended batch whose output is shorter
        than its counts (or not set yet) before the unread items become ``missing``.
    """
    _check_waited(manifest)
    kind = Kind(manifest.kind)
    summary = ResultsSummary()
    failed_batches: list[dict[str, Any]] = []
    # Sinks that write columns (Parquet) take blocks of rows from backends that read lines in blocks.
    columnar = callable(getattr(sink, "write_block", None))
    layout.results_dir.mkdir(parents=True, exist_ok=True)
    failed_path = layout.results_dir / "failed_items.jsonl"
    with jsonl.JsonlWriter(failed_path) as failed_items:
        try:
            for reused in reused_rows(manifest, layout):  # answered from the reuse store, not submitted
                sink.write(reused)
                summary.add(reused)
            sources: list[tuple[int, str | None]] = [(entry.chunk, entry.batch_id) for entry in manifest.batches]
            sources += [(int(pending["chunk"]), None) for pending in manifest.pending]
            for chunk, batch_id in sources:
                if batch_id is None:
                    rows: Iterable[Any] = _never_submitted_rows(manifest, layout, chunk)
                else:
                    status = backend.get_status(batch_id)
                    if on_batch is not None:
                        on_batch(batch_id, status)
                    _check_ended(status)
                    if status.outcome is BatchOutcome.FAILED and not backend.refused_for_capacity(status.errors):
                        reason = "; ".join(status.errors) or "the provider gave no reason"
                        failed_batches.append({"batch_id": batch_id, "chunk": chunk, "reason": reason})
                    reader = _BatchReader(backend, kind, validator, columnar, late_output_grace)
                    rows = reader.rows(ChunkRows(manifest, layout, chunk, status, validator))
                for item in rows:
                    general_rows: Iterable[tuple[ItemResult, str]]
                    if type(item) is RowBlock:
                        cast(ColumnSink, sink).write_block(item)
                        summary.add_usual(item.usual, item.usual_input_tokens, item.usual_output_tokens)
                        general_rows = item.general_rows
                    else:
                        row_and_id = cast(tuple[ItemResult, str], item)
                        sink.write(row_and_id[0])
                        general_rows = (row_and_id,)
                    for row, custom_id in general_rows:
                        summary.add(row)
                        if row.status == ItemStatus.FAILED:
                            failed_items.write(
                                {
                                    "id": row.id,
                                    "custom_id": custom_id,
                                    "chunk": chunk,
                                    "error_type": row.error_type,
                                    "retryable": row.retryable,
                                }
                            )
        finally:
            sink.close()
    result = {
        "job_key": manifest.job_key.as_string(),
        "provider": manifest.provider,
        "conn_id": manifest.conn_id,
        "model": manifest.model,
        "kind": manifest.kind,
        "has_schema": manifest.has_schema,
        "attempt": manifest.attempt,
        **summary.counts(),
        # From the submit to these results: the batch age the max_batch_age gate and the metrics read.
        "submitted_at": manifest.submitted_at,
        "batch_age_seconds": round(time.time() - manifest.submitted_at, 1),
        "input_tokens": summary.input_tokens,
        "output_tokens": summary.output_tokens,
        "cost": summary.cost(manifest.provider, manifest.model, prices),
        "output_uri": sink.uri,
        "failed_items_uri": uri_of(failed_path),
        "work_uri": manifest.work_uri,
        "batch_ids": manifest.batch_ids,
        "failed_batches": failed_batches,
        "never_submitted": [int(pending["chunk"]) for pending in manifest.pending],
    }
    if manifest.extra.get("reuse"):
        result["reuse"] = manifest.extra["reuse"]
    with (layout.results_dir / "summary.json").open("wb") as stream:
        stream.write(jsonl.dumps(result, option=jsonl.orjson.OPT_INDENT_2))
    return result


def raise_for_failed_batches(failed_batches: list[dict[str, Any]], where: str) -> None:
    """Fail loudly, naming every batch that failed as a whole and why (called at the end of a step,
    once every other chunk's rows are written)."""
    if not failed_batches:
        return
    listed = "; ".join(f"batch {b['batch_id']} (chunk {b['chunk']}): {b['reason']}" for b in failed_batches)
    raise BatchFailedError(
        f"{len(failed_batches)} batch(es) failed as a whole at the provider: {listed}. Every other chunk's "
        f"rows are written ({where}); the failed batches' items are permanent failed rows carrying the "
        "provider's reason. Fix the cause and clear the run, or set allow_failed_batches=True to accept them."
    )


def _check_ended(status: BatchStatus) -> None:
    if not status.ended:
        raise BatchFailedError(
            f"batch {status.batch_id} is still {status.state}; wait for it with LLMBatchCompletionSensor "
            "before collecting results"
        )


def _check_waited(manifest: Manifest) -> None:
    """Chunks pending in the Submit task's manifest may since have gone out in later waves, which
    only the sensor's manifest names (``batch/wave_record.py``): reading Submit's would pay twice."""
    if manifest.pending and not manifest.waited:
        raise ConfigurationError(
            f"This manifest is the Submit task's: {len(manifest.pending)} chunk(s) were pending under the "
            "queue quota and the sensor creates their batches in later waves. Nothing was read. Pass the "
            "sensor's output to the Results task (manifest=wait.output, as llm_batch_step does): it names "
            "every wave's batches."
        )


def _never_submitted_rows(manifest: Manifest, layout: JobLayout, chunk: int) -> Iterator[tuple[ItemResult, str]]:
    """Retryable rows for a chunk the queue quota kept waiting until the deadline."""
    placeholder = BatchStatus(batch_id="", state="pending", outcome=None, total=0, done=0, failed=0)
    rows = ChunkRows(manifest, layout, chunk, placeholder, None)
    rows.common["batch_id"] = None
    return rows.rows_for_unseen(ErrorType.RATE_LIMITED, NEVER_SUBMITTED)


@dataclass
class _BatchReader:
    """Reads one ended batch's rows: result lines first, read again while the output is late or
    short (for ``grace`` seconds), then a row for every id with no line."""

    backend: BatchBackend
    kind: Kind
    validator: OutputValidator | None
    columnar: bool
    grace: float

    def rows(self, rows: ChunkRows) -> Iterator[tuple[ItemResult, str] | RowBlock]:
        status = rows.status
        if status.outcome is BatchOutcome.FAILED and self.backend.refused_for_capacity(status.errors):
            reason = "; ".join(status.errors)
            message = f"batch {status.batch_id} was refused by the queue quota ({reason}); nothing ran or was billed"
            yield from rows.rows_for_unseen(ErrorType.RATE_LIMITED, message)
            return
        if status.outcome is BatchOutcome.FAILED:  # nothing ran: no output to read (Vertex has no table)
            yield from rows.unseen_rows()
            return
        yield from self._lines(rows, status)
        give_up_at, delay = time.monotonic() + self.grace, LATE_OUTPUT_FIRST_DELAY
        while _output_short(rows, status) and time.monotonic() < give_up_at:
            log.warning(
                "Batch %s ended %s, but %s; reading it again in %.0fs (up to %.0fs in all before its "
                "unread items become 'missing')",
                status.batch_id,
                status.state,
                _shortfall(rows, status),
                delay,
                self.grace,
            )
            time.sleep(max(0.0, min(delay, give_up_at - time.monotonic())))
            delay = min(delay * 2, LATE_OUTPUT_MAX_DELAY)
            status = rows.status = self.backend.get_status(status.batch_id)
            yield from self._lines(rows, status)
        if _output_short(rows, status):
            log.warning(
                "Batch %s: %s after %.0fs; the unread items are 'missing'",
                status.batch_id,
                _shortfall(rows, status),
                self.grace,
            )
        yield from rows.unseen_rows()

    def _lines(self, rows: ChunkRows, status: BatchStatus) -> Iterator[tuple[ItemResult, str] | RowBlock]:
        """The rows of the batch's result lines not read before (a second read skips those)."""
        backend, kind = self.backend, self.kind
        blocks = getattr(backend, "outcome_blocks", None) if self.columnar else None
        if blocks is not None and blocks(status, kind) is not None:  # (cheap: creates a generator only)
            for block in _with_download_retry(lambda: blocks(status, kind), backend, status):
                row_block = rows.block(block)
                if row_block is not None:
                    yield row_block
        else:
            for outcome in _with_download_retry(lambda: backend.iter_outcomes(status, kind), backend, status):
                row = rows.row(outcome)
                if row is not None:
                    yield row


def _output_short(rows: ChunkRows, status: BatchStatus) -> bool:
    """Whether a completed batch's output is not all readable yet: the provider says it is not set
    (``output_pending``), or its counts name more answered items than the lines read."""
    if status.outcome is not BatchOutcome.COMPLETED:
        return False
    # A line that names no item of the chunk (malformed) is still a line the provider wrote: counted,
    # or a completed batch with one would be re-read for the whole grace for an answer never coming.
    return bool(status.details.get("output_pending")) or rows.seen + rows.unreadable < status.done


def _shortfall(rows: ChunkRows, status: BatchStatus) -> str:
    if status.details.get("output_pending"):
        return "its output is not set yet"
    return f"its output holds {rows.seen + rows.unreadable} of the {status.done} answered items"


def _with_download_retry(read: Callable[[], Iterator[T]], backend: BatchBackend, status: BatchStatus) -> Iterator[T]:
    """The batch's outcomes; a transient failure mid-download restarts the stream after a pause."""
    for attempt in range(1, MAX_DOWNLOAD_ATTEMPTS + 1):
        try:
            yield from read()
            return
        except Exception as err:
            if attempt == MAX_DOWNLOAD_ATTEMPTS or not backend.is_transient(err):
                raise
            delay = DOWNLOAD_BACKOFF_SECONDS * 2 ** (attempt - 1)
            log.warning(
                "Downloading the results of batch %s failed (%s: %s); starting again in %.0fs",
                status.batch_id,
                type(err).__name__,
                err,
                delay,
            )
            time.sleep(delay)
