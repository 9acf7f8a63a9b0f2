"""Retry rounds: resubmit only the items that failed with a retryable error, then consolidate.

Attempt ``n+1`` reuses attempt ``n``'s request lines byte for byte (read from its chunk files by
``custom_id``): nothing is rendered again, so a retried item asks exactly what it asked before.
Items that failed permanently (``invalid_request``, ``content_filtered``, ``context_length``,
``auth``) are never resubmitted.

Consolidation keeps, for every input id, the row of its last attempt. Attempt ``k``'s rows are
written unless the id was resubmitted in attempt ``k+1``; memory holds one attempt's resubmitted
ids at a time, never the whole job.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

from airflow_llm_batch.batch import jsonl
from airflow_llm_batch.batch.backends.base import BatchBackend
from airflow_llm_batch.batch.prepare import ChunkWriter, PreparedJob
from airflow_llm_batch.batch.records import ItemResult
from airflow_llm_batch.batch.state import JobLayout
from airflow_llm_batch.batch.storage import StoragePath, uri_of
from airflow_llm_batch.batch.summary import ResultsSummary

log = logging.getLogger(__name__)


def retryable_ids(failed_items: StoragePath) -> dict[int, set[str]]:
    """The ``custom_id``s to resubmit, per chunk of the previous attempt."""
    chunks: dict[int, set[str]] = {}
    for row in jsonl.read_jsonl(failed_items):
        if row.get("retryable"):
            chunks.setdefault(int(row["chunk"]), set()).add(str(row["custom_id"]))
    return chunks


def prepare_retry(
    previous: JobLayout, failed_items: StoragePath, model: str, backend: BatchBackend, out_dir: StoragePath
) -> PreparedJob:
    """Copy the request lines of the retryable items into new chunk files for the next attempt."""
    wanted = retryable_ids(failed_items)
    out_dir.mkdir(parents=True, exist_ok=True)
    writer = ChunkWriter(out_dir, backend)
    count = 0
    for chunk, custom_ids in sorted(wanted.items()):
        user_ids = {cid: uid for cid, uid in jsonl.read_jsonl(previous.ids_file(chunk)) if cid in custom_ids}
        with previous.chunk_file(chunk).open("rb") as stream:
            for line in jsonl.iter_lines(stream):
                custom_id = _custom_id_of(line)
                if custom_id in user_ids:
                    writer.add(model, custom_id, user_ids[custom_id], line)
                    count += 1
    chunks, fingerprint = writer.finish()
    missing = sum(map(len, wanted.values())) - count
    if missing:
        # Not an error that would stop the round: those items keep their failed rows, and the
        # others are retried. But never silent: it means the previous attempt's files disagree.
        found = {_custom_id_of(line) for chunk in chunks for line in _lines_of(chunk.path)}
        some = sorted(cid for ids in wanted.values() for cid in ids if cid not in found)[:5]
        log.warning(
            "%d retryable item(s) have no request line in the previous attempt's chunk files (%s) and are "
            "not resubmitted; they keep their failed rows. Custom ids: %s",
            missing,
            uri_of(previous.root),
            ", ".join(some),
        )
    return PreparedJob(chunks=chunks, item_count=count, fingerprint=fingerprint)


def _lines_of(path: StoragePath) -> Iterator[bytes]:
    with path.open("rb") as stream:
        yield from jsonl.iter_lines(stream)


def _custom_id_of(line: bytes) -> str:
    record = jsonl.loads(line)
    # OpenAI and Anthropic lines carry "custom_id"; Gemini file lines "key"; Bedrock records "recordId".
    for name in ("custom_id", "key", "recordId"):
        if name in record:
            return str(record[name])
    return ""


def iter_result_rows(uri_path: StoragePath) -> Iterator[dict[str, Any]]:
    """Rows of a results file (JSONL or Parquet), with ``json`` decoded, streamed."""
    if uri_path.name.endswith(".parquet"):
        import pyarrow.parquet as pq

        with uri_path.open("rb") as stream:
            for batch in pq.ParquetFile(stream).iter_batches(batch_size=10_000):
                for row in batch.to_pylist():
                    if row.get("json") is not None:
                        row["json"] = jsonl.loads(row["json"])
                    yield row
    else:
        yield from jsonl.read_jsonl(uri_path)


def consolidate(
    attempt_results: Sequence[StoragePath], sink: Any, summary: ResultsSummary | None = None
) -> dict[str, Any]:
    """Write the final row of every id (its last attempt) to ``sink``; return counts.

    :param attempt_results: the results files of attempts 1..n, in order.
    :param summary: filled here: final rows counted, every attempt's tokens (all were billed).
    """
    summary = summary if summary is not None else ResultsSummary()
    for index, path in enumerate(attempt_results):
        resubmitted = _ids_of(attempt_results[index + 1]) if index + 1 < len(attempt_results) else set()
        for row in iter_result_rows(path):
            if row.get("reused_from") is not None:  # billed to the run that asked first
                summary.add_reused(row.get("input_tokens") or 0, row.get("output_tokens") or 0)
            else:
                summary.add_spent(row["status"], row.get("input_tokens") or 0, row.get("output_tokens") or 0)
            if row["id"] in resubmitted:
                continue
            item = ItemResult(**row)
            sink.write(item)
            summary.count(item)
    sink.close()
    return {
        **summary.counts(),
        "attempts": len(attempt_results),
        "input_tokens": summary.input_tokens,
        "output_tokens": summary.output_tokens,
        "output_uri": sink.uri,
        "attempt_results": [uri_of(p) for p in attempt_results],
    }


def _ids_of(path: StoragePath) -> set[str]:
    return {str(row["id"]) for row in iter_result_rows(path)}
