"""JSON Lines in and out, through orjson (several times faster than ``json`` on the hot paths).

Request and result files can hold a million lines: everything here streams.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import IO, Any

import orjson

from airflow_llm_batch.batch.storage import StoragePath

dumps = orjson.dumps
loads = orjson.loads
JSONDecodeError = orjson.JSONDecodeError

_BUFFER = 1 << 20


def iter_lines(stream: IO[bytes]) -> Iterator[bytes]:
    """Non-empty lines of a binary stream, without their line endings."""
    for raw in stream:
        line = raw.strip()
        if line:
            yield line


def read_jsonl(path: StoragePath) -> Iterator[Any]:
    with path.open("rb") as stream:
        for line in iter_lines(stream):
            yield loads(line)


class JsonlWriter:
    """Appends objects (or ready bytes) as lines, buffering writes to the underlying file."""

    def __init__(self, path: StoragePath) -> None:
        self.path = path
        self._file = path.open("wb")
        self._buffer: list[bytes] = []
        self._buffered = 0
        self.count = 0
        self.bytes = 0

    def write(self, obj: Any) -> int:
        return self.write_bytes(dumps(obj))

    def write_bytes(self, line: bytes) -> int:
        self._buffer.append(line)
        self._buffer.append(b"\n")
        size = len(line) + 1
        self._buffered += size
        self.count += 1
        self.bytes += size
        if self._buffered >= _BUFFER:
            self.flush()
        return size

    def write_all(self, objs: Iterable[Any]) -> None:
        for obj in objs:
            self.write(obj)

    def flush(self) -> None:
        if self._buffer:
            self._file.write(b"".join(self._buffer))
            self._buffer.clear()
            self._buffered = 0

    def close(self) -> None:
        self.flush()
        self._file.close()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
