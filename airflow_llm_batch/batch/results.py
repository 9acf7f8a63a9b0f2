"""Ended batches to result rows: normalize, validate structured output, reconcile, summarize.

Works one batch at a time, so memory holds one chunk's id map (at most a provider's batch size),
never the whole job. Every submitted id ends in exactly one row: a result line, or, when the
provider returned none for it, a ``missing`` (or ``expired`` / ``cancelled``) row.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from airflow_llm_batch.batch import jsonl
from airflow_llm_batch.batch.backends.base import BatchBackend
from airflow_llm_batch.batch.job import JobLayout
from airflow_llm_batch.batch.manifest import Manifest
from airflow_llm_batch.batch.pricing import PriceTable, cost_summary
from airflow_llm_batch.batch.records import (
    BatchOutcome,
    BatchStatus,
    ErrorType,
    ItemResult,
    ItemStatus,
    Kind,
    RawOutcome,
)
from airflow_llm_batch.batch.schema import OutputValidator
from airflow_llm_batch.batch.storage import uri_of
from airflow_llm_batch.exceptions import BatchFailedError

log = logging.getLogger(__name__)

# A download that drops (connection reset, 5xx mid-stream) is started again this many times; the
# rows already written are skipped on the next pass, so no item gets two rows.
MAX_DOWNLOAD_ATTEMPTS = 5
DOWNLOAD_BACKOFF_SECONDS = 2.0

_UNSEEN_BY_OUTCOME = {
    BatchOutcome.EXPIRED: (ErrorType.EXPIRED, "the batch expired before this item ran"),
    BatchOutcome.CANCELLED: (ErrorType.CANCELLED, "the batch was cancelled before this item ran"),
}


class RowSink(Protocol):
    uri: str

    def write(self, row: ItemResult) -> None: ...

    def close(self) -> None: ...


@dataclass
class ResultsSummary:
    """What the Results task returns through XCom: counts, tokens and where the files are."""

    items: int = 0
    succeeded: int = 0
    failed: int = 0
    retryable: int = 0
    permanent: int = 0
    by_error_type: Counter[str] = field(default_factory=Counter)
    input_tokens: int = 0
    output_tokens: int = 0

    def add(self, row: ItemResult) -> None:
        self.items += 1
        if row.status == ItemStatus.SUCCEEDED:
            self.succeeded += 1
        else:
            self.failed += 1
            self.by_error_type[row.error_type or "unknown"] += 1
            if row.retryable:
                self.retryable += 1
            else:
                self.permanent += 1
        self.input_tokens += row.input_tokens or 0
        self.output_tokens += row.output_tokens or 0


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
    layout.results_dir.mkdir(parents=True, exist_ok=True)
    failed_path = layout.results_dir / "failed_items.jsonl"
    with jsonl.JsonlWriter(failed_path) as failed_items:
        try:
            for entry in manifest.batches:
                status = backend.get_status(entry.batch_id)
                if on_batch is not None:
                    on_batch(entry.batch_id, status)
                _check_ended(status)
                rows = _batch_rows(manifest, backend, layout, entry.chunk, status, kind, validator)
                for row, custom_id in rows:
                    sink.write(row)
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
        "items": summary.items,
        "succeeded": summary.succeeded,
        "failed": summary.failed,
        "retryable": summary.retryable,
        "permanent": summary.permanent,
        "by_error_type": dict(sorted(summary.by_error_type.items())),
        "input_tokens": summary.input_tokens,
        "output_tokens": summary.output_tokens,
        "cost": cost_summary(manifest.provider, manifest.model, summary.input_tokens, summary.output_tokens, prices),
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
) -> Any:
    """Yield ``(row, custom_id)`` for every id of the chunk, result lines first, then the unseen."""
    ids: dict[str, str] = jsonl.read_pairs(layout.ids_file(chunk))
    seen: set[str] = set()
    common = {"provider": manifest.provider, "batch_id": status.batch_id, "attempt": manifest.attempt}
    for outcome in _outcomes_with_retry(backend, status, kind):
        custom_id = outcome.custom_id
        user_id = ids.get(custom_id)
        if user_id is None:
            if custom_id:
                log.warning("Batch %s returned a result line for an unknown id; ignored", status.batch_id)
            else:
                log.warning("Batch %s returned a malformed result line; ignored", status.batch_id)
            continue
        if custom_id in seen:
            continue  # a second line for the item, or a line already read before a download restarted
        seen.add(custom_id)
        yield to_item_result(user_id, outcome, validator, manifest.model, common), custom_id
    unseen_type, unseen_message = _UNSEEN_BY_OUTCOME.get(
        status.outcome or BatchOutcome.COMPLETED,
        (ErrorType.MISSING, "the provider returned no result for this item"),
    )
    for custom_id, user_id in ids.items():
        if custom_id not in seen:
            yield (
                ItemResult.failure(user_id, unseen_type, unseen_message, model=manifest.model, **common),
                custom_id,
            )


def _outcomes_with_retry(backend: BatchBackend, status: BatchStatus, kind: Kind) -> Iterator[RawOutcome]:
    """The batch's outcomes; a transient failure mid-download restarts the stream after a pause."""
    for attempt in range(1, MAX_DOWNLOAD_ATTEMPTS + 1):
        try:
            yield from backend.iter_outcomes(status, kind)
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


def to_item_result(
    user_id: str,
    outcome: RawOutcome,
    validator: OutputValidator | None,
    model: str,
    common: dict[str, Any],
) -> ItemResult:
    reason = None
    if outcome.succeeded and validator is not None:
        parsed, reason = validator.parse(outcome.text)
        if reason is None:  # the usual line: one construction, nothing to change afterwards
            return ItemResult(
                id=user_id,
                status=ItemStatus.SUCCEEDED,
                text=outcome.text,
                json=parsed,
                embedding=outcome.embedding,
                model=outcome.model or model,
                input_tokens=outcome.input_tokens,
                output_tokens=outcome.output_tokens,
                finish_reason=outcome.finish_reason,
                **common,
            )
    row = ItemResult(
        id=user_id,
        status=ItemStatus.SUCCEEDED if outcome.succeeded else ItemStatus.FAILED,
        text=outcome.text,
        embedding=outcome.embedding,
        model=outcome.model or model,
        input_tokens=outcome.input_tokens,
        output_tokens=outcome.output_tokens,
        finish_reason=outcome.finish_reason,
        **common,
    )
    if not outcome.succeeded:
        error_type = outcome.error_type or ErrorType.SERVER_ERROR
        row.error_type = error_type.value
        row.error_message = outcome.error_message
        row.retryable = error_type.retryable
    elif reason is not None:  # the output did not validate
        row.status = ItemStatus.FAILED
        row.error_type = ErrorType.INVALID_OUTPUT.value
        row.error_message = f"output {reason}"
        row.retryable = True
    return row
