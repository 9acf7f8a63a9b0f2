"""Duplicate ids in one pass over a job of any size, in memory that does not grow with the job.

A set of every id of a million-item job took about 80 MB. Here the first ``MEMORY_IDS`` ids are
kept in a set, so a repeat of any of them is caught at once. The ids after them are also checked
against that set at once, and written to hash partitions on local disk; :meth:`SeenIds.late_duplicates`
reads the partitions back one at a time at the end of the pass and finds the ids repeated among
them. A job of any size holds at most ``MEMORY_IDS`` ids and one partition in memory.
"""

from __future__ import annotations

import struct
import tempfile
from pathlib import Path

MEMORY_IDS = 100_000
PARTITIONS = 64
_FLUSH_BYTES = 1 << 16
# Each spilled id: its position in the input, the length of its UTF-8 bytes, the bytes.
_RECORD = struct.Struct("<qI")


class SeenIds:
    """The ids met so far in a pass over the items.

    :param memory_ids: how many ids to keep in memory before writing the others to disk.
    :param partitions: how many files the other ids are spread over (a power of two).
    """

    def __init__(self, memory_ids: int = MEMORY_IDS, partitions: int = PARTITIONS) -> None:
        if partitions < 1 or partitions & (partitions - 1):
            raise ValueError("partitions must be a power of two")
        self._memory: set[str] = set()
        self._memory_ids = memory_ids
        self._mask = partitions - 1
        self._buffers: list[bytearray] = []
        self._folder: tempfile.TemporaryDirectory[str] | None = None

    def add(self, user_id: str, position: int) -> bool:
        """Record an id; ``False`` when it repeats an id kept in memory (a duplicate found now)."""
        memory = self._memory
        if user_id in memory:
            return False
        if len(memory) < self._memory_ids:
            memory.add(user_id)
        else:
            self._spill(user_id, position)
        return True

    def _spill(self, user_id: str, position: int) -> None:
        if not self._buffers:
            self._folder = tempfile.TemporaryDirectory(prefix="llm-batch-ids-")
            self._buffers = [bytearray() for _ in range(self._mask + 1)]
        encoded = user_id.encode("utf-8", "surrogatepass")
        partition = hash(user_id) & self._mask
        buffer = self._buffers[partition]
        buffer += _RECORD.pack(position, len(encoded))
        buffer += encoded
        if len(buffer) >= _FLUSH_BYTES:
            with self._partition_path(partition).open("ab") as stream:
                stream.write(buffer)
            buffer.clear()

    def _partition_path(self, partition: int) -> Path:
        assert self._folder is not None
        return Path(self._folder.name) / f"{partition:03d}.ids"

    def late_duplicates(self) -> list[tuple[int, str]]:
        """``(position, id)`` of each written-out id that repeats an earlier one, by position.

        Reads each partition once and removes the files; call it once, after the pass.
        """
        found: list[tuple[int, str]] = []
        for partition, buffer in enumerate(self._buffers):
            path = self._partition_path(partition)
            data = (path.read_bytes() if path.exists() else b"") + buffer
            found.extend(_repeats(data))
            buffer.clear()
        self.close()
        return sorted(found)

    def close(self) -> None:
        if self._folder is not None:
            self._folder.cleanup()
            self._folder = None
        self._buffers = []


def _repeats(data: bytes) -> list[tuple[int, str]]:
    """The records of one partition whose id came before (records are in input order)."""
    seen: set[bytes] = set()
    repeats: list[tuple[int, str]] = []
    unpack, size, offset, end = _RECORD.unpack_from, _RECORD.size, 0, len(data)
    while offset < end:
        position, length = unpack(data, offset)
        offset += size
        key = data[offset : offset + length]
        offset += length
        if key in seen:
            repeats.append((position, key.decode("utf-8", "surrogatepass")))
        else:
            seen.add(key)
    return repeats
