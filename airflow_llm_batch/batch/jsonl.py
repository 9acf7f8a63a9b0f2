"""JSON Lines in and out, through orjson (several times faster than ``json`` on the hot paths).

Request and result files can hold a million lines: everything here streams.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Iterator
from typing import IO, Any

import msgspec
import orjson

from airflow_llm_batch.batch.storage import StoragePath

dumps = orjson.dumps
loads = orjson.loads
JSONDecodeError = orjson.JSONDecodeError

_BUFFER = 1 << 20
_strip = operator.methodcaller("strip")
_decode_string_pairs = msgspec.json.Decoder(tuple[str, str]).decode_lines


def iter_lines(stream: IO[bytes]) -> Iterator[bytes]:
    """Non-empty lines of a binary stream, without their line endings.

    Built from C-level ``map`` and ``filter``: no Python frame per line of a million-line file.
    """
    return filter(None, map(_strip, stream))


def line_blocks(chunks: Iterable[bytes], lines_per_block: int = 1024) -> Iterator[list[bytes]]:
    """The non-empty lines of a byte stream read in chunks, stripped, in lists of about
    ``lines_per_block`` (a line ends at ``\\n`` only: JSON text holds no other line break)."""
    block: list[bytes] = []
    tail = b""
    for chunk in chunks:
        lines = (tail + chunk if tail else chunk).split(b"\n")
        tail = lines.pop()
        block += filter(None, map(_strip, lines))
        if len(block) >= lines_per_block:
            yield block
            block = []
    tail = tail.strip()
    if tail:
        block.append(tail)
    if block:
        yield block


def read_jsonl(path: StoragePath) -> Iterator[Any]:
    with path.open("rb") as stream:
        for line in iter_lines(stream):
            yield loads(line)


def read_pairs(path: StoragePath) -> dict[Any, Any]:
    """A JSONL file of ``[key, value]`` lines (one chunk's id map) as a dict, read in C-level loops.

    Pairs of strings are decoded as tuples, which the garbage collector stops tracking at its next
    pass: as lists, fifty thousand of them per chunk got promoted and walked by full collections.
    """
    with path.open("rb") as stream:
        data = stream.read()
    try:
        # The usual id map (Submit writes ``[custom_id, user_id]``, both strings) in one C call.
        return dict(_decode_string_pairs(data))
    except (msgspec.DecodeError, RecursionError):
        return dict(map(loads, filter(None, map(_strip, data.split(b"\n")))))


class JsonlWriter:
    """Appends objects (or ready bytes) as lines, buffering writes to the underlying file."""

    def __init__(self, path: StoragePath) -> None:
        self.path = path
        self._file = path.open("wb")
        # A bytearray, not a list of the lines: orjson returns each line in an allocation of
        # 4 KiB or more, so a megabyte of short lines held as objects took over 100 MB.
        self._buffer = bytearray()
        self.count = 0
        self.bytes = 0

    def write(self, obj: Any) -> int:
        return self.write_bytes(dumps(obj))

    def write_bytes(self, line: bytes) -> int:
        buffer = self._buffer
        buffer += line
        buffer += b"\n"
        size = len(line) + 1
        self.count += 1
        self.bytes += size
        if len(buffer) >= _BUFFER:
            self.flush()
        return size

    def write_lines(self, lines: list[bytes]) -> None:
        """Ready lines, as :meth:`write_bytes` one by one would write them."""
        if not lines:
            return
        data = b"\n".join(lines)
        self.count += len(lines)
        self.bytes += len(data) + 1
        if len(data) < _BUFFER // 4:
            buffer = self._buffer
            buffer += data
            buffer += b"\n"
            if len(buffer) >= _BUFFER:
                self.flush()
            return
        # A big block goes to the file as it is, without a copy into the buffer (bytes: a file
        # object that keeps what it is given keeps it unchanged).
        self.flush()
        self._file.write(data)
        self._file.write(b"\n")

    def write_all(self, objs: Iterable[Any]) -> None:
        for obj in objs:
            self.write(obj)

    def flush(self) -> None:
        if self._buffer:
            # A copy: a file object may keep what it is given (object-store uploads buffer parts).
            self._file.write(bytes(self._buffer))
            self._buffer.clear()

    def close(self) -> None:
        self.flush()
        self._file.close()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
