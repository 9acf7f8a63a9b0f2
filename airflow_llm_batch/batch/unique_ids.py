"""Duplicate ids in one pass over a job of any size, in memory that does not grow with the job.

A set of every id of a million-item job took about 80 MB. Here the first ``MEMORY_IDS`` ids are
kept in a set, so a repeat of any of them is caught at once. The ids after them are also checked
against that set at once, and written to hash partitions on local disk; :meth:`SeenIds.late_duplicates`
reads the partitions back one at a time at the end of the pass and finds the ids repeated among
them. A job of any size holds at most ``MEMORY_IDS`` ids and one partition in memory.
"""

from __future__ import annotations

import tempfile
from array import array
from pathlib import Path

MEMORY_IDS = 100_000
PARTITIONS = 64
_FLUSH_BYTES = 1 << 16
# Ids are written as UTF-8 (surrogates passed through), which never holds the byte 0xFF: it ends
# each id, so a partition splits into its ids in one C call. Their positions go to a file beside.
_END = b"\xff"


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
        self._ids: list[bytearray] = []
        self._positions: list[array[int]] = []
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

    def all_new(self, user_ids: list[str]) -> bool:
        """Whether :meth:`add` would return ``True`` for each of a block of ids in turn (none
        repeats another of the block or one kept in memory). Changes nothing."""
        return len(set(user_ids)) == len(user_ids) and self._memory.isdisjoint(user_ids)

    def add_all(self, user_ids: list[str], first_position: int) -> None:
        """Record a block of ids for which :meth:`all_new` said yes, as :meth:`add` one by one would."""
        room = max(self._memory_ids - len(self._memory), 0)
        self._memory.update(user_ids[:room])
        if room >= len(user_ids):
            return
        if not self._ids:
            self._spill(user_ids[room], first_position + room)
            room += 1
        # ``_spill`` inline: this loop is most of a big job's per-item work here.
        mask, all_ids, all_positions = self._mask, self._ids, self._positions
        for offset in range(room, len(user_ids)):
            user_id = user_ids[offset]
            partition = hash(user_id) & mask
            ids = all_ids[partition]
            ids += user_id.encode("utf-8", "surrogatepass")
            ids += _END
            all_positions[partition].append(first_position + offset)
            if len(ids) >= _FLUSH_BYTES:
                self._flush(partition)

    def _spill(self, user_id: str, position: int) -> None:
        if not self._ids:
            self._folder = tempfile.TemporaryDirectory(prefix="llm-batch-ids-")
            self._ids = [bytearray() for _ in range(self._mask + 1)]
            self._positions = [array("q") for _ in range(self._mask + 1)]
        partition = hash(user_id) & self._mask
        ids = self._ids[partition]
        ids += user_id.encode("utf-8", "surrogatepass")
        ids += _END
        self._positions[partition].append(position)
        if len(ids) >= _FLUSH_BYTES:
            self._flush(partition)

    def _flush(self, partition: int) -> None:
        ids_path, positions_path = self._paths(partition)
        with ids_path.open("ab") as stream:
            stream.write(self._ids[partition])
        with positions_path.open("ab") as stream:
            self._positions[partition].tofile(stream)
        self._ids[partition].clear()
        del self._positions[partition][:]

    def _paths(self, partition: int) -> tuple[Path, Path]:
        assert self._folder is not None
        folder = Path(self._folder.name)
        return folder / f"{partition:03d}.ids", folder / f"{partition:03d}.positions"

    def late_duplicates(self) -> list[tuple[int, str]]:
        """``(position, id)`` of each written-out id that repeats an earlier one, by position.

        Reads each partition once and removes the files; call it once, after the pass.
        """
        found: list[tuple[int, str]] = []
        for partition in range(len(self._ids)):
            ids_path, positions_path = self._paths(partition)
            data = (ids_path.read_bytes() if ids_path.exists() else b"") + self._ids[partition]
            keys = data.split(_END)[:-1]
            if len(set(keys)) == len(keys):  # the usual partition: no repeat, decided in C
                continue
            positions = array("q", positions_path.read_bytes() if positions_path.exists() else b"")
            positions.extend(self._positions[partition])
            seen: set[bytes] = set()
            for key, position in zip(keys, positions, strict=True):
                if key in seen:
                    found.append((position, key.decode("utf-8", "surrogatepass")))
                seen.add(key)
        self.close()
        return sorted(found)

    def close(self) -> None:
        if self._folder is not None:
            self._folder.cleanup()
            self._folder = None
        self._ids, self._positions = [], []
