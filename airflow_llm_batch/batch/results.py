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
from typing import Any, Protocol, TypeVar, cast

from airflow_llm_batch.batch import jsonl
from airflow_llm_batch.batch.backends.base import BatchBackend
from airflow_llm_batch.batch.chunk_rows import ChunkRows
from airflow_llm_batch.batch.job import JobLayout
from airflow_llm_batch.batch.manifest import Manifest
from airflow_llm_batch.batch.pricing import PriceTable
from airflow_llm_batch.batch.records import (
    BatchOutcome,
    BatchStatus,
    ItemResult,
    ItemStatus,
    Kind,
)
from airflow_llm_batch.batch.row_blocks import RowBlock
from airflow_llm_batch.batch.schema import OutputValidator
from airflow_llm_batch.batch.storage import uri_of
from airflow_llm_batch.batch.summary import ResultsSummary
from airflow_llm_batch.exceptions import BatchFailedError

log = logging.getLogger(__name__)
T = TypeVar("T")

# A download that drops (connection reset, 5xx mid-stream) is started again this many times; the
# rows already written are skipped on the next pass, so no item gets two rows.
MAX_DOWNLOAD_ATTEMPTS = 5
DOWNLOAD_BACKOFF_SECONDS = 2.0


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
) -> dict[str, Any]:
    """Write one row per submitted item to ``sink`` and the failed ids to ``failed_items.jsonl``.

    :param prices: the batch prices for the summary's ``cost`` (default: the shipped table).
    """
    kind = Kind(manifest.kind)
    summary = ResultsSummary()
    # Sinks that write columns (Parquet) take blocks of rows from backends that read lines in blocks.
    columnar = callable(getattr(sink, "write_block", None))
    layout.results_dir.mkdir(parents=True, exist_ok=True)
    failed_path = layout.results_dir / "failed_items.jsonl"
    with jsonl.JsonlWriter(failed_path) as failed_items:
        try:
            for entry in manifest.batches:
                status = backend.get_status(entry.batch_id)
                if on_batch is not None:
                    on_batch(entry.batch_id, status)
                _check_ended(status)
                rows = _batch_rows(manifest, backend, layout, entry.chunk, status, kind, validator, columnar)
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
                                    "chunk": entry.chunk,
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
    }
    with (layout.results_dir / "summary.json").open("wb") as stream:
        stream.write(jsonl.dumps(result, option=jsonl.orjson.OPT_INDENT_2))
    return result


def _check_ended(status: BatchStatus) -> None:
    if not status.ended:
        raise BatchFailedError(
            f"batch {status.batch_id} is still {status.state}; wait for it with LLMBatchCompletionSensor "
            "before collecting results"
        )
    if status.outcome is BatchOutcome.FAILED:
        details = "; ".join(status.errors) or "the provider gave no reason"
        raise BatchFailedError(f"batch {status.batch_id} failed as a whole ({details})")


def _batch_rows(
    manifest: Manifest,
    backend: BatchBackend,
    layout: JobLayout,
    chunk: int,
    status: BatchStatus,
    kind: Kind,
    validator: OutputValidator | None,
    columnar: bool = False,
) -> Iterator[tuple[ItemResult, str] | RowBlock]:
    """Yield ``(row, custom_id)`` (or blocks of rows, with ``columnar``) for every id of the chunk,
    result lines first, then the unseen."""
    rows = ChunkRows(manifest, layout, chunk, status, validator)
    blocks = getattr(backend, "outcome_blocks", None) if columnar else None
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
    yield from rows.unseen_rows()


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
