"""The reuse store: earlier answers, keyed by the fingerprint of the request that got them (``docs/reuse.md``).

An append-only folder of Parquet *segments* in the work dir (``{work_dir}/_reuse/{dag_id}/{task_id}/``),
one per attempt that stored answers. A segment is written under a temporary name and then renamed,
so a reader never sees half of one; its name comes from the run and attempt that wrote it, so a
retried Results task replaces its own segment and two runs never write the same file. Readers list
the folder, skip names that are not finished segments, and read only what they need: the lookup
the ``key`` column, the materialization the ``row`` column of the rows it found.

A segment that cannot be read (damaged, cut short, of a newer format) is reported in the log and
left out: its answers are asked again, never lost. A store that cannot be listed is empty.

Columns: ``key`` (uint64, the first 8 bytes of the fingerprint, what the lookup compares),
``fingerprint`` (the full 16 bytes) and ``row`` (the result row as its JSONL line). The schema
metadata holds when it was stored and which run and attempt answered (``reused_from``).
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from airflow_llm_batch.batch.storage import StoragePath, uri_of

log = logging.getLogger(__name__)

SEGMENT_PREFIX = "segment-"
SEGMENT_SUFFIX = ".parquet"
FORMAT_VERSION = "1"
_ROWS_PER_GROUP = 16_384


@dataclass(frozen=True)
class Segment:
    """One readable segment: where it is, when its answers were stored, who answered, how many.

    :param reader: reads a column of a segment kept elsewhere (``reuse_table.py``: one attempt's
        rows of a BigQuery table); ``None``: ``path`` is a Parquet file.
    """

    path: Any
    stored_at: float
    reused_from: str
    rows: int
    reader: Callable[[Segment, str], Iterator[Any]] | None = field(default=None, compare=False)


def segment_name(reused_from: str) -> str:
    """The segment an attempt writes: the same name on every try of that attempt's Results task."""
    return f"{SEGMENT_PREFIX}{hashlib.blake2b(reused_from.encode(), digest_size=12).hexdigest()}{SEGMENT_SUFFIX}"


def list_segments(root: StoragePath, max_age_seconds: float | None, now: float | None = None) -> list[Segment]:
    """The readable segments younger than ``max_age_seconds``, newest first. Unreadable ones are
    logged as warnings and left out (their items are simply asked again)."""
    now = time.time() if now is None else now
    try:
        _forget_listings(root)  # a listing cached earlier in this process may miss new segments
        if not root.exists():
            return []
        names = sorted(path for path in root.iterdir() if is_segment(path))  # type: ignore[attr-defined]
        _forget_listings(root)  # and this one must not hide a file another worker writes later
    except Exception as err:  # an object store's listing can fail in many ways; none may lose the run
        log.warning("The reuse store %s cannot be listed (%s); treating it as empty", uri_of(root), err)
        return []
    segments = []
    for path in names:
        segment = _read_footer(path)
        if segment is None:
            continue
        if max_age_seconds is not None and now - segment.stored_at > max_age_seconds:
            continue
        segments.append(segment)
    segments.sort(key=lambda s: s.stored_at, reverse=True)
    return segments


def _forget_listings(root: Any) -> None:
    """Drop the object store's cached listings (``ObjectStoragePath.fs``; a local path has none).

    The store's folder is the one folder of the work dir this package lists (the segments of other
    runs have names no manifest carries). fsspec caches a listing per filesystem instance, and a
    file written after it looks absent to ``exists()`` and ``open()`` in this process
    (``work_dir.py``), so no listing is kept.
    """
    fs = getattr(root, "fs", None)
    if fs is not None:
        fs.invalidate_cache()


def is_segment(path: Any) -> bool:
    name = path.name
    return name.startswith(SEGMENT_PREFIX) and name.endswith(SEGMENT_SUFFIX)


def _read_footer(path: Any) -> Segment | None:
    import pyarrow.parquet as pq

    try:
        with path.open("rb") as stream:
            parquet = pq.ParquetFile(stream)
            metadata = parquet.schema_arrow.metadata or {}
            version = metadata.get(b"llm_batch_reuse", b"").decode()
            if version != FORMAT_VERSION:
                raise ValueError(f"format {version or 'unknown'!r}, this package reads {FORMAT_VERSION!r}")
            return Segment(
                path,
                float(metadata[b"stored_at"].decode()),
                metadata[b"reused_from"].decode(),
                parquet.metadata.num_rows,
            )
    except Exception as err:
        warn_unreadable(path, err)
        return None


def segment_stored_at(path: Any) -> float:
    """When a segment's answers were stored: its metadata's time, or, for a segment that cannot be
    read (reported as :func:`list_segments` reports it), the file's own time (housekeeping,
    ``maintenance.purge_reuse_segments``)."""
    segment = _read_footer(path)
    return segment.stored_at if segment is not None else float(path.stat().st_mtime)


def warn_unreadable(path: Any, err: BaseException) -> None:
    log.warning(
        "Reuse store segment %s cannot be read (%s: %s); its answers are not reused and those items are "
        "submitted again. Delete the file (or the table's rows) to silence this warning.",
        uri_of(path),
        type(err).__name__,
        err,
    )


def iter_column(segment: Segment, column: str) -> Iterator[Any]:
    """The segment's ``column`` as Arrow arrays, a row group at a time (raises when it is damaged)."""
    if segment.reader is not None:
        yield from segment.reader(segment, column)
        return
    import pyarrow.parquet as pq

    with segment.path.open("rb") as stream:
        parquet = pq.ParquetFile(stream)
        for group in range(parquet.num_row_groups):
            yield parquet.read_row_group(group, columns=[column], use_threads=False).column(0).combine_chunks()


def write_segment(
    root: StoragePath, reused_from: str, answers: Iterable[tuple[bytes, bytes]], now: float | None = None
) -> int:
    """Append one segment of ``(fingerprint, row line)`` answers; return how many were stored.

    Written under a temporary name in the store's folder, then renamed to :func:`segment_name`:
    readers skip the temporary name, and a rename replaces an earlier try's segment whole.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [("key", pa.uint64()), ("fingerprint", pa.binary(16)), ("row", pa.large_binary())],
        metadata={
            "llm_batch_reuse": FORMAT_VERSION,
            "stored_at": repr(time.time() if now is None else now),
            "reused_from": reused_from,
        },
    )
    root.mkdir(parents=True, exist_ok=True)
    temporary: Any = root / f".tmp-{uuid.uuid4().hex}{SEGMENT_SUFFIX}"
    stored = 0
    try:
        with temporary.open("wb") as stream, pq.ParquetWriter(stream, schema, use_dictionary=False) as writer:
            for block in _blocks(answers):
                writer.write_batch(block.to_batch(schema))
                stored += block.count
        if stored:
            temporary.rename(root / segment_name(reused_from))
        else:
            temporary.unlink()
    except BaseException:
        if temporary.exists():
            temporary.unlink()
        raise
    return stored


class _Block:
    """A row group's answers, copied into flat buffers as they come: orjson returns each line in an
    allocation of 4 KiB or more, so a list of the lines themselves would take ten times their size."""

    def __init__(self) -> None:
        self.keys = array("Q")
        self.fingerprints = bytearray()
        self.rows = bytearray()
        self.offsets = array("q", [0])
        self.count = 0

    def add(self, fingerprint: bytes, row: bytes) -> None:
        self.keys.append(int.from_bytes(fingerprint[:8], "little"))
        self.fingerprints += fingerprint
        self.rows += row
        self.offsets.append(len(self.rows))
        self.count += 1

    def to_batch(self, schema: Any) -> Any:
        import pyarrow as pa

        n = self.count
        columns = [
            pa.Array.from_buffers(pa.uint64(), n, [None, pa.py_buffer(self.keys)]),
            pa.Array.from_buffers(pa.binary(16), n, [None, pa.py_buffer(self.fingerprints)]),
            pa.Array.from_buffers(pa.large_binary(), n, [None, pa.py_buffer(self.offsets), pa.py_buffer(self.rows)]),
        ]
        return pa.record_batch(columns, schema=schema)


def _blocks(answers: Iterable[tuple[bytes, bytes]]) -> Iterator[_Block]:
    block = _Block()
    for fingerprint, row in answers:
        block.add(fingerprint, row)
        if block.count == _ROWS_PER_GROUP:
            yield block
            block = _Block()
    if block.count:
        yield block
