"""Reuse of earlier answers across runs, opt in with ``reuse=`` (issue #16, ``docs/reuse.md``).

Every request line the Submit task would send is fingerprinted: blake2b (16 bytes) of the line's
bytes, keyed by the provider, the kind of request and the response schema. The line holds the
item's ``custom_id``, the model and the whole body (prompt, system prompt, parameters, and the
schema where the provider takes it in the body), so an answer is reused only for the same item
asking exactly the same thing of the same provider. A hit is not written to any chunk: the item
is answered from the store; a miss goes out as always.

The lookup holds 12 bytes per stored answer (a 64-bit key and a row number, sorted within 256
buckets by the keys' top 8 bits: ``ReuseIndex``) and a bitmap of the rows found; the rows
themselves are read afterwards a row group at a time. Memory stays small and does not hold any
item or answer (``docs/performance.md``). Two requests share a 64-bit key with a chance of about
n*m / 2**64 per run of n items against m stored answers (1e6 by 1e6: 5e-8).
"""

from __future__ import annotations

import hashlib
import logging
import sys
from array import array
from bisect import bisect_left
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from airflow_llm_batch.batch import jsonl
from airflow_llm_batch.batch.reuse_store import Segment, iter_column, list_segments, warn_unreadable
from airflow_llm_batch.batch.reuse_table import ReuseTable
from airflow_llm_batch.batch.storage import StoragePath, uri_of
from airflow_llm_batch.exceptions import ConfigurationError

log = logging.getLogger(__name__)

_BUCKETS = 1 << 8  # the top 8 bits of a key pick its bucket while the index is built
_NULL_REUSED_FROM = b'"reused_from":null}'
_blake2b = hashlib.blake2b


@dataclass(frozen=True)
class ReuseSettings:
    """What ``reuse=`` asked for.

    :param max_age_seconds: answers older than this are asked again; ``None``: any age.
    :param table: keep the answers in this BigQuery table (``reuse_table.py``) instead of the work
        dir; only with a BigQuery sink, whose connection it uses.
    """

    max_age_seconds: float | None = None
    table: str | None = None

    @classmethod
    def coerce(cls, value: Any, task: str = "") -> ReuseSettings | None:
        """``None``/``False``: off; ``True``: any age; a ``timedelta`` or ``{"max_age": timedelta}``."""
        where = f"{task}: " if task else ""
        if value is None or value is False:
            return None
        if value is True:
            return cls()
        if isinstance(value, timedelta):
            return cls(_seconds(value, where))
        if isinstance(value, Mapping):
            unknown = sorted(set(value) - {"max_age", "table"})
            if unknown:
                raise ConfigurationError(
                    f"{where}reuse= takes only 'max_age' and 'table', not {', '.join(map(repr, unknown))}"
                )
            age, table = value.get("max_age"), value.get("table")
            if table is not None and (not isinstance(table, str) or not table.strip()):
                raise ConfigurationError(f"{where}reuse 'table' must be a BigQuery table name, not {table!r}")
            return cls(None if age is None else _seconds(age, where), table)
        raise ConfigurationError(
            f"{where}reuse= must be True, a timedelta (the oldest answer to reuse) or {{'max_age': timedelta}}, "
            f"not {value!r}"
        )


def _seconds(age: Any, where: str) -> float:
    seconds = age.total_seconds() if isinstance(age, timedelta) else age
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds <= 0:
        raise ConfigurationError(f"{where}reuse max_age must be a positive timedelta (or seconds), not {age!r}")
    return float(seconds)


def request_key(provider: str, kind: str, schema: Mapping[str, Any] | None) -> bytes:
    """The blake2b key every fingerprint of a job is made with: what the line alone may not show."""
    identity = {"provider": provider, "kind": kind, "schema": schema}
    return hashlib.blake2b(jsonl.dumps(identity, option=jsonl.orjson.OPT_SORT_KEYS), digest_size=32).digest()


class Fingerprints:
    """The fingerprint of one request line: ``blake2b(line, digest_size=16, key=request_key)``."""

    def __init__(self, key: bytes) -> None:
        # A keyed hash's state after the key, copied per line: cheaper than keying a new one.
        self._keyed = _blake2b(digest_size=16, key=key)

    def __call__(self, line: bytes) -> bytes:
        hasher = self._keyed.copy()
        hasher.update(line)
        return hasher.digest()


class ReuseIndex:
    """The keys of the stored answers, in memory as two arrays, and the rows a run took from them.

    ``keys`` holds every key, sorted; ``rows`` the row number of each (counted over the segments
    in order, newest first, so among equal keys the newest answer comes first). Built in passes of
    Arrow calls and copies of whole runs of keys, no Python step per stored answer: each row group's
    keys sorted and copied, run by run, into 256 buckets by their top 8 bits, then each bucket
    sorted. ``directory[b]:directory[b + 1]`` then holds the keys whose bits above ``shift`` are ``b``
    (about ten keys each), so a lookup compares a handful of keys.
    """

    def __init__(self, segments: list[Segment]) -> None:
        self.segments = [segment for segment in segments if _readable(segment)]
        self.directory: array[int] = array("Q", [0]) * (_BUCKETS + 1)
        self.shift = 64 - 8
        self.keys: array[int] = array("Q")
        self.rows: array[int] = array("I")
        self.total_rows = 0
        self._build()
        self.taken = bytearray((self.total_rows + 7) // 8)
        self.hits = 0

    def _key_arrays(self) -> Iterator[tuple[int, Any]]:
        """``(first global row, uint64 keys)`` per row group of every readable segment."""
        offset = 0
        for segment in self.segments:
            for keys in iter_column(segment, "key"):
                yield offset, keys
                offset += len(keys)

    def _build(self) -> None:
        counts = [0] * _BUCKETS
        for _, keys in self._key_arrays():
            for bucket, many in _runs(keys):
                counts[bucket] += many
        directory, total = self.directory, 0
        for bucket in range(_BUCKETS):
            directory[bucket] = total
            total += counts[bucket]
        directory[_BUCKETS] = total
        self.total_rows = total
        self.keys = _zeroed("Q", total)
        self.rows = _zeroed("I", total)
        self._place()
        self._sort_buckets()

    def _place(self) -> None:
        """Each row group's keys sorted, then copied run by run to the end of their buckets."""
        import pyarrow as pa
        import pyarrow.compute as pc

        cursor = list(self.directory)
        keys_out, rows_out = memoryview(self.keys), memoryview(self.rows)
        for offset, keys in self._key_arrays():
            order = pc.sort_indices(keys)
            ordered = keys.take(order)
            rows = pc.add(order, pa.scalar(offset, pa.uint64())).cast(pa.uint32())
            ordered_keys, ordered_rows, start = _words(ordered, "Q", 8), _words(rows, "I", 4), 0
            for bucket, many in _runs(ordered):
                at = cursor[bucket]
                keys_out[at : at + many] = ordered_keys[start : start + many]
                rows_out[at : at + many] = ordered_rows[start : start + many]
                cursor[bucket] = at + many
                start += many

    def _sort_buckets(self) -> None:
        """Each bucket sorted by key (Arrow's sort is stable: equal keys keep the newest first), and
        the directory refined to as many top bits as give about ten keys a bucket (8 to 16 bits),
        one bucket at a time so that nothing as big as the keys is made on the side."""
        import pyarrow as pa
        import pyarrow.compute as pc

        bits = min(max(self.total_rows.bit_length() - 4, 8), 16)
        shift, coarse = 64 - bits, self.directory
        directory, filled = _zeroed("Q", (1 << bits) + 1), 0
        keys_view, rows_view = memoryview(self.keys), memoryview(self.rows)
        for bucket in range(_BUCKETS):
            low, high = coarse[bucket], coarse[bucket + 1]
            if high == low:
                continue
            keys = pa.Array.from_buffers(pa.uint64(), high - low, [None, pa.py_buffer(keys_view[low:high])])
            if high - low > 1:
                rows = pa.Array.from_buffers(pa.uint32(), high - low, [None, pa.py_buffer(rows_view[low:high])])
                order = pc.sort_indices(keys)
                keys, sorted_rows = keys.take(order), rows.take(order)
                keys_view[low:high] = _words(keys, "Q", 8)
                rows_view[low:high] = _words(sorted_rows, "I", 4)
            total = low
            for fine, many in _runs(keys, shift):
                for empty in range(filled, fine + 1):
                    directory[empty] = total
                total += many
                filled = fine + 1
        for empty in range(filled, (1 << bits) + 1):
            directory[empty] = self.total_rows
        self.directory, self.shift = directory, shift


def _zeroed(code: Literal["Q", "I"], count: int) -> array[int]:
    """``count`` zeroed words, allocated once, without a temporary of their size.

    ``array(code, bytes(n))`` first made an ``n``-byte ``bytes`` and let it go. Freeing a block of
    megabytes that ``malloc`` had mapped raises glibc's threshold for mapping blocks (``mallopt(3)``:
    M_MMAP_THRESHOLD is dynamic), and every later block below that size then came from the heap,
    which fragments and is not given back: the Submit task's peak grew with the store's size well
    beyond the index itself (1M answers: 16 MB more than 200,000, of which 10 MB was the index).
    """
    return array(code, [0]) * count


def _runs(keys: Any, shift: int = 64 - 8) -> list[tuple[int, int]]:
    """``(bucket, how many keys)`` of an Arrow array of keys, by bucket (the bits above ``shift``)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    tally = pc.value_counts(pc.shift_right(keys, pa.scalar(shift, pa.uint64())))
    return sorted(zip(tally.field(0).to_pylist(), tally.field(1).to_pylist(), strict=True))


def _readable(segment: Segment) -> bool:
    """Whether every row group's keys can be read (a damaged segment is left out whole)."""
    try:
        rows = sum(len(keys) for keys in iter_column(segment, "key"))
        if rows != segment.rows:
            raise ValueError(f"{rows} keys for {segment.rows} rows")
        return True
    except Exception as err:
        warn_unreadable(segment.path, err)
        return False


def _words(values: Any, code: Literal["Q", "I"], size: int) -> memoryview:
    """An Arrow array of fixed-width integers as a memoryview of its values (no copy)."""
    start = values.offset * size
    return memoryview(values.buffers()[1]).cast("B")[start : start + len(values) * size].cast(code)


class ReuseLookup:
    """A run's lookup: fingerprints each request line, and takes the stored answer when there is one.

    :param store: the store's folder (or its BigQuery table, ``reuse_table.py``); its segments
        younger than ``settings.max_age_seconds`` count.
    :param key: :func:`request_key` of the job.
    :param pinned: only the segments of these names (those an earlier try of the task saw).
    """

    def __init__(
        self, store: StoragePath | ReuseTable, settings: ReuseSettings, key: bytes, pinned: set[str] | None = None
    ) -> None:
        self.store: Any = store  # a folder or a ``ReuseTable``; ``uri_of`` names either
        self.settings = settings
        self.key = key
        self._keyed = _blake2b(digest_size=16, key=key)
        self.closed = False
        if isinstance(store, ReuseTable):  # the store's own listing reads the (pinned) segments only
            segments = store.list_segments(settings.max_age_seconds, pinned)
        else:
            segments = list_segments(store, settings.max_age_seconds)
            if pinned is not None:
                segments = [segment for segment in segments if segment.path.name in pinned]
        self.index = ReuseIndex(segments)
        log.info(
            "Reuse store %s: %d answer(s) in %d segment(s) to look requests up in",
            str(self.store),
            self.index.total_rows,
            len(self.index.segments),
        )

    def reused(self, line: bytes) -> bool:
        """Whether this request line is answered from the store (then it is not to be sent)."""
        return self.reused_all([line])[0]

    def reused_all(self, lines: list[bytes]) -> list[bool]:
        """For each of a block of lines, in order: whether it is answered from the store (its stored
        answer is then taken: one answer serves one item)."""
        if self.closed:
            raise RuntimeError("this reuse lookup ended when its reused rows were written")
        index, keyed = self.index, self._keyed
        directory, shift, keys, rows, taken = index.directory, index.shift, index.keys, index.rows, index.taken
        digests = []
        for line in lines:
            hasher = keyed.copy()
            hasher.update(line)
            digests.append(hasher.digest())
        # Each 16-byte digest is two little-endian words; its key is the first (one C call for all).
        words = array("Q", b"".join(digests))
        if sys.byteorder != "little":
            words.byteswap()
        answered = []
        for key in words[::2]:
            bucket = key >> shift
            high = directory[bucket + 1]
            at = bisect_left(keys, key, directory[bucket], high)
            if at < high and keys[at] == key:
                row = rows[at]
                byte, bit = row >> 3, 1 << (row & 7)
                if not taken[byte] & bit:
                    taken[byte] |= bit
                    answered.append(True)
                    continue
            answered.append(False)
        index.hits += answered.count(True)
        return answered

    @property
    def hits(self) -> int:
        return self.index.hits

    def write_reused(self, path: StoragePath) -> int:
        """The rows taken, each marked ``reused_from``, as JSONL at ``path``; return how many.

        Reads the ``row`` column of each segment a row group at a time, keeping the rows the bitmap
        marks taken (Arrow filters by the bitmap itself: a boolean array's buffer is one). Ends the
        lookup: the keys are let go first, so the rows read never share the memory with them.
        """
        import pyarrow as pa

        index, written, offset = self.index, 0, 0
        self.closed = True
        index.keys, index.rows = array("Q"), array("I")
        with jsonl.JsonlWriter(path) as out:
            for segment in index.segments:
                label = jsonl.dumps(segment.reused_from)
                for rows in iter_column(segment, "row"):
                    mask = pa.Array.from_buffers(
                        pa.bool_(), len(rows), [None, pa.py_buffer(index.taken)], null_count=0, offset=offset
                    )
                    offset += len(rows)
                    for row in rows.filter(mask).to_pylist():
                        out.write_bytes(_marked(row, label))
                        written += 1
        if written != index.hits:
            raise RuntimeError(
                f"the reuse store {uri_of(self.store)} changed while it was read ({written} answers for "
                f"{index.hits} hits); run the task again"
            )
        return written


def _marked(row: bytes, label: bytes) -> bytes:
    """A stored row line with ``reused_from`` set (the last field of ``ItemResult``: a byte splice)."""
    if row.endswith(_NULL_REUSED_FROM):
        return row[: -len(_NULL_REUSED_FROM)] + b'"reused_from":' + label + b"}"
    data = jsonl.loads(row)
    data["reused_from"] = jsonl.loads(label)
    return jsonl.dumps(data)
