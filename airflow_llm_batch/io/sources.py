"""Items in: a list (literal or from XCom) or a file in the work dir's storage, streamed."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from airflow_llm_batch.batch import jsonl
from airflow_llm_batch.batch.storage import StoragePath
from airflow_llm_batch.exceptions import ConfigurationError, InvalidInputError

FILE_FORMATS = ("jsonl", "parquet", "csv")
PARQUET_BATCH_ROWS = 10_000


def format_of(path: StoragePath, declared: str | None = None) -> str:
    if declared:
        if declared not in FILE_FORMATS:
            raise ConfigurationError(f"items_format must be one of {FILE_FORMATS}, not {declared!r}")
        return declared
    name = path.name.lower()
    for suffix, fmt in ((".jsonl", "jsonl"), (".ndjson", "jsonl"), (".parquet", "parquet"), (".csv", "csv")):
        if name.endswith(suffix):
            return fmt
    raise ConfigurationError(
        f"cannot tell the format of {name!r} from its name; name it *.jsonl, *.parquet or *.csv, or pass items_format"
    )


def iter_file_items(path: StoragePath, declared_format: str | None = None) -> Iterator[Mapping[str, Any]]:
    """Stream the items of a JSONL, Parquet or CSV file (never the whole file in memory)."""
    fmt = format_of(path, declared_format)
    if not path.exists():
        raise ConfigurationError(f"items file {path} does not exist")
    if fmt == "jsonl":
        yield from _iter_jsonl(path)
    elif fmt == "parquet":
        yield from _iter_parquet(path)
    else:
        yield from _iter_csv(path)


def _iter_jsonl(path: StoragePath) -> Iterator[Mapping[str, Any]]:
    with path.open("rb") as stream:
        for number, line in enumerate(jsonl.iter_lines(stream), start=1):
            try:
                yield jsonl.loads(line)
            except jsonl.JSONDecodeError as err:
                raise InvalidInputError([_bad_line(path.name, number, line, err)]) from None


def _bad_line(name: str, number: int, line: bytes | str, err: jsonl.JSONDecodeError) -> str:
    """Why line ``number`` of a JSONL file cannot be read, with positions in that line only.

    The decoder's own message counts lines and characters of the one line it was given ("line 1
    column 5 (char 4)"), which reads as a second, different line number next to the file's.
    """
    if isinstance(line, bytes):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as bad:
            return (
                f"{name} line {number}: not UTF-8 text (byte 0x{line[bad.start]:02x} at column {bad.start + 1}); "
                "save the file as UTF-8"
            )
    return f"{name} line {number}: not valid JSON ({err.msg} at column {err.colno})"


def _iter_parquet(path: StoragePath) -> Iterator[Mapping[str, Any]]:
    import pyarrow.parquet as pq

    with path.open("rb") as stream:
        parquet = pq.ParquetFile(stream)
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS):
            yield from batch.to_pylist()


def _iter_csv(path: StoragePath) -> Iterator[Mapping[str, Any]]:
    with path.open("rb") as stream:
        text = io.TextIOWrapper(stream, encoding="utf-8", newline="")
        yield from csv.DictReader(text)


def iter_list_items(items: Iterable[Any]) -> Iterator[Any]:
    if isinstance(items, str | bytes | Mapping):
        raise ConfigurationError(f"items must be a list of mappings or a file URI string, not a {type(items).__name__}")
    yield from items
