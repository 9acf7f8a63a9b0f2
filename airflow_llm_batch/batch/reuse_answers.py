"""Reuse across a job's tasks: Submit looks up and records the reused rows, Results stores new answers.

Submit (``submit.py``) opens the lookup on the store's segments (pinned in ``reuse.json`` on the
first try, so a retry of the task leaves out exactly the items its first try left out), writes the
reused rows to ``reused.jsonl`` in the attempt folder and says so in the manifest's
``extra["reuse"]``. Results (``results.py``, ``finish.py``) writes those rows first, then stores
this attempt's succeeded answers (whose output passed the schema check: any other is a failed row)
as a new segment (or, with ``reuse={"table": ...}``, as the attempt's rows of a BigQuery table,
``reuse_table.py``). The Results summary carries ``reuse`` on, so a retry round stores its answers too.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from airflow_llm_batch.batch import jsonl
from airflow_llm_batch.batch.manifest import Manifest
from airflow_llm_batch.batch.records import ItemResult, ItemStatus, JobKey
from airflow_llm_batch.batch.reuse import Fingerprints, ReuseLookup, ReuseSettings
from airflow_llm_batch.batch.reuse_store import write_segment
from airflow_llm_batch.batch.reuse_table import ReuseTable
from airflow_llm_batch.batch.state import JobLayout
from airflow_llm_batch.batch.storage import StoragePath, uri_of

log = logging.getLogger(__name__)

REUSED_ROWS = "reused.jsonl"
PINNED_SEGMENTS = "reuse.json"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def store_of(work_dir: StoragePath, job_key: JobKey) -> StoragePath:
    """The task's store: ``{work_dir}/_reuse/{dag_id}/{task_id}/`` (mapped instances share it; the
    leading ``_`` keeps ``maintenance.purge_old_runs`` away from it)."""
    return work_dir / "_reuse" / _UNSAFE.sub("_", job_key.dag_id) / _UNSAFE.sub("_", job_key.task_id)


def reused_from_label(job_key: JobKey, attempt: int) -> str:
    """What a reused row's ``reused_from`` says: the run (and map index) and attempt that answered."""
    mapped = f"[{job_key.map_index}]" if job_key.map_index >= 0 else ""
    return f"{job_key.run_id}{mapped}/attempt-{attempt}"


def open_lookup(
    layout: JobLayout, store: StoragePath | ReuseTable, settings: ReuseSettings, key: bytes, pin: bool = True
) -> ReuseLookup:
    """The lookup over the segments this attempt's first try saw (recorded then in ``reuse.json``,
    unless ``pin`` is false: a dry run records nothing)."""
    pinned_file = layout.root / PINNED_SEGMENTS
    pinned: set[str] | None = None
    if pinned_file.exists():
        with pinned_file.open("rb") as stream:
            pinned = set(jsonl.loads(stream.read())["segments"])
    lookup = ReuseLookup(store, settings, key, pinned)
    if pinned is None and pin:
        layout.root.mkdir(parents=True, exist_ok=True)
        with pinned_file.open("wb") as stream:
            stream.write(jsonl.dumps({"segments": [s.path.name for s in lookup.index.segments]}))
    return lookup


def record_reused(lookup: ReuseLookup, layout: JobLayout, settings: ReuseSettings) -> dict[str, Any]:
    """Write the reused rows beside the requests; return the manifest's ``extra["reuse"]``."""
    path = layout.root / REUSED_ROWS
    try:
        written = lookup.write_reused(path)
    finally:
        if isinstance(lookup.store, ReuseTable):
            lookup.store.close()
    log.info("Wrote the %d reused row(s) to %s", written, uri_of(path))
    reuse: dict[str, Any] = {
        "store": str(lookup.store),
        "key": lookup.key.hex(),
        "max_age_seconds": settings.max_age_seconds,
        "items": written,
        "rows_uri": uri_of(path),
    }
    if isinstance(lookup.store, ReuseTable):  # what a Results task needs to open it again
        table = lookup.store
        reuse.update(table=table.table, conn_id=table.conn_id, scope=[table.dag_id, table.task_id])
    return reuse


def reused_rows(manifest: Manifest, layout: JobLayout) -> Iterator[ItemResult]:
    """The rows Submit took from the store for this attempt (none without ``reuse=``)."""
    reuse = manifest.extra.get("reuse")
    if not reuse or not reuse.get("items"):
        return
    for row in jsonl.read_jsonl(layout.root / REUSED_ROWS):
        yield ItemResult(**row)


def store_answers(
    manifest: Manifest,
    layout: JobLayout,
    results: StoragePath,
    store_path: Any,
    open_table: Callable[[Mapping[str, Any]], ReuseTable] | None = None,
) -> int:
    """Append this attempt's succeeded, newly answered rows to the store; return how many.

    :param open_table: opens the BigQuery table a manifest names (``extra["reuse"]["table"]``).

    Never fails the task: a store that cannot be written is reported, and the next run asks again.
    """
    reuse = manifest.extra.get("reuse")
    if not reuse:
        return 0
    label = reused_from_label(manifest.job_key, manifest.attempt)
    table: ReuseTable | None = None
    try:
        fingerprints = Fingerprints(bytes.fromhex(reuse["key"]))
        answers = _answers(manifest, layout, results, fingerprints)
        if reuse.get("table"):
            if open_table is None:
                raise RuntimeError("this task cannot open BigQuery tables")
            table = open_table(reuse)
            stored = table.write(label, answers)
        else:
            stored = write_segment(store_path(reuse["store"]), label, answers)
    except Exception as err:
        log.warning(
            "The answers of %s could not be stored in the reuse store %s (%s: %s); the results are "
            "written, and the next run asks these items again",
            label,
            reuse["store"],
            type(err).__name__,
            err,
        )
        return 0
    finally:
        if table is not None:
            table.close()
    log.info("Stored %d answer(s) in the reuse store %s", stored, reuse["store"])
    return stored


def _answers(
    manifest: Manifest, layout: JobLayout, results: StoragePath, fingerprints: Fingerprints
) -> Iterator[tuple[bytes, bytes]]:
    """``(fingerprint, row line)`` of each succeeded row answered by this attempt's batches.

    The rows of one batch follow each other in the results file, so one chunk's fingerprints are
    held at a time (computed again from its request lines: the bytes Submit looked up).
    """
    from airflow_llm_batch.batch.retry import iter_result_rows

    chunk_of = {entry.batch_id: entry.chunk for entry in manifest.batches}
    current: str | None = None
    by_id: dict[str, bytes] = {}
    for row in iter_result_rows(results):
        batch_id = row.get("batch_id")
        if row["status"] != ItemStatus.SUCCEEDED or row.get("reused_from") is not None or batch_id not in chunk_of:
            continue
        if batch_id != current:
            current, by_id = batch_id, _chunk_fingerprints(layout, chunk_of[batch_id], fingerprints)
        fingerprint = by_id.get(row["id"])
        if fingerprint is not None:
            yield fingerprint, jsonl.dumps(ItemResult(**row))


def _chunk_fingerprints(layout: JobLayout, chunk: int, fingerprints: Fingerprints) -> dict[str, bytes]:
    ids = [str(user_id) for _, user_id in jsonl.read_jsonl(layout.ids_file(chunk))]
    with layout.chunk_file(chunk).open("rb") as stream:
        prints = [fingerprints(line) for line in jsonl.iter_lines(stream)]
    return dict(zip(ids, prints, strict=True))


def reuse_of_summary(summary: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ``extra["reuse"]`` of a retry round's manifest: where to store, nothing reused."""
    reuse = summary.get("reuse")
    if not reuse:
        return None
    kept = {key: reuse[key] for key in ("table", "conn_id", "scope") if key in reuse}  # a BigQuery table store
    return {
        "store": reuse["store"],
        "key": reuse["key"],
        "max_age_seconds": reuse.get("max_age_seconds"),
        "items": 0,
        **kept,
    }
