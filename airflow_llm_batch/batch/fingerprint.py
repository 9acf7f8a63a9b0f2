"""The fingerprint of a job's request lines, hashed on a second core while the next lines are built.

Hashing was a third of the Submit task's per-item work: request lines are about a kilobyte and
blake2b runs at about 750 MB/s. ``hashlib`` releases the GIL for updates above 2 KiB, so the lines
are joined into blocks of 1 MiB that one worker thread hashes, in the order they were given; the
digest is exactly that of hashing line by line.
"""

from __future__ import annotations

import hashlib
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor

BLOCK_BYTES = 1 << 20
# Lines held before a block is handed over however short they are: orjson returns each line in an
# allocation of 4 KiB or more, so a megabyte of short lines held as objects would take far more.
BLOCK_LINES = 2048

_executor: tuple[int, ThreadPoolExecutor] | None = None
_executor_lock = threading.Lock()


def _hashing_thread() -> ThreadPoolExecutor:
    """One worker for the process: its queue keeps each digest's blocks in order."""
    global _executor
    with _executor_lock:
        # A forked child (Airflow's task runner forks) inherits the object but not the thread.
        if _executor is None or _executor[0] != os.getpid():
            _executor = (os.getpid(), ThreadPoolExecutor(max_workers=1, thread_name_prefix="llm-batch-fingerprint"))
        return _executor[1]


class LineDigest:
    """``hashlib.blake2b(digest_size=16)`` over the lines given to :meth:`update`, in order."""

    def __init__(self) -> None:
        self._hash = hashlib.blake2b(digest_size=16)
        # The lines themselves until a block is full, joined once then (one copy of each line).
        self._lines: list[bytes] = []
        self._size = 0
        self._pending: Future[None] | None = None

    def update(self, line: bytes) -> None:
        self._lines.append(line)
        self._size += len(line)
        if self._size >= BLOCK_BYTES or len(self._lines) >= BLOCK_LINES:
            self._hand_over()

    def update_lines(self, lines: list[bytes]) -> None:
        """As :meth:`update` for each line of ``lines`` in turn (blocks may break elsewhere: the
        digest is that of the lines' bytes in order either way)."""
        self._lines += lines
        self._size += sum(map(len, lines))
        if self._size >= BLOCK_BYTES or len(self._lines) >= BLOCK_LINES:
            self._hand_over()

    def _hand_over(self) -> None:
        if self._pending is not None:
            # At most one block waits: on a single core the lines must not pile up in memory.
            self._pending.result()
        block = b"".join(self._lines)
        self._lines.clear()
        self._size = 0
        self._pending = _hashing_thread().submit(self._hash.update, block)

    def hexdigest(self) -> str:
        if self._lines:
            self._hand_over()
        if self._pending is not None:
            self._pending.result()
            self._pending = None
        return self._hash.hexdigest()
