"""Result rows out: JSONL (one object per line) or Parquet, written as the rows stream in."""

from __future__ import annotations

import operator
from typing import Any

from airflow_llm_batch.batch import jsonl
from airflow_llm_batch.batch.records import ItemResult
from airflow_llm_batch.batch.storage import StoragePath, uri_of
from airflow_llm_batch.exceptions import ConfigurationError

OUTPUT_FORMATS = ("jsonl", "parquet")
PARQUET_ROW_GROUP = 10_000


class JsonlSink:
    def __init__(self, path: StoragePath) -> None:
        self.uri = uri_of(path)
        self._writer = jsonl.JsonlWriter(path)

    def write(self, row: ItemResult) -> None:
        # orjson writes a dataclass as its fields in order: the same bytes as ``row.to_row()``,
        # without copying the row into a dict first.
        self._writer.write(row)

    def close(self) -> None:
        self._writer.close()


def parquet_schema() -> Any:
    import pyarrow as pa

    return pa.schema(
        [
            ("id", pa.string()),
            ("status", pa.string()),
            ("text", pa.string()),
            ("json", pa.string()),  # the structured output, JSON-encoded (its shape is the user's schema)
            ("embedding", pa.list_(pa.float32())),
            ("error_type", pa.string()),
            ("error_message", pa.string()),
            ("retryable", pa.bool_()),
            ("provider", pa.string()),
            ("model", pa.string()),
            ("batch_id", pa.string()),
            ("attempt", pa.int32()),
            ("input_tokens", pa.int64()),
            ("output_tokens", pa.int64()),
            ("finish_reason", pa.string()),
        ]
    )


class ParquetSink:
    """Buffers rows into row groups of ``PARQUET_ROW_GROUP`` so memory stays flat."""

    def __init__(self, path: StoragePath) -> None:
        import pyarrow.parquet as pq

        self.uri = uri_of(path)
        self._schema = parquet_schema()
        self._stream = path.open("wb")
        self._writer = pq.ParquetWriter(self._stream, self._schema, compression="zstd")
        # Rows are kept as tuples of the columns' values and turned into columns once per row
        # group: a dict per row (``to_row``) cost more than everything else a results line needs.
        # The tuples hold only strings and numbers, which the garbage collector stops tracking;
        # the structured output (encoded at once) and the status (an enum member) are kept in
        # lists of their own. Tuples holding them were walked by every collection until flushed.
        names = self._schema.names
        self._apart = (names.index("status"), names.index("json"))
        self._values_of = operator.attrgetter(*(name for name in names if name not in ("status", "json")))
        self._rows: list[tuple[Any, ...]] = []
        self._status: list[str] = []
        self._json: list[str | None] = []

    def write(self, row: ItemResult) -> None:
        self._rows.append(self._values_of(row))
        self._status.append(row.status)
        value = row.json
        self._json.append(None if value is None else jsonl.dumps(value).decode())
        if len(self._rows) >= PARQUET_ROW_GROUP:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        if self._rows:
            columns: list[Any] = list(zip(*self._rows, strict=True))
            for index, values in sorted(zip(self._apart, (self._status, self._json), strict=True)):
                columns.insert(index, values)
            arrays = [pa.array(values, type=field.type) for values, field in zip(columns, self._schema, strict=True)]
            # (Not in a worker thread: pyarrow takes the GIL back for every write to the Python file
            # object, and the contention cost the reading thread more than the encoding took.)
            self._writer.write_table(pa.Table.from_arrays(arrays, schema=self._schema))
            self._rows.clear()
            self._status = []
            self._json = []

    def close(self) -> None:
        self._flush()
        self._writer.close()
        self._stream.close()


def open_sink(directory: StoragePath, output_format: str, stem: str = "results") -> JsonlSink | ParquetSink:
    if output_format not in OUTPUT_FORMATS:
        raise ConfigurationError(f"output_format must be one of {OUTPUT_FORMATS}, not {output_format!r}")
    directory.mkdir(parents=True, exist_ok=True)
    if output_format == "parquet":
        return ParquetSink(directory / f"{stem}.parquet")
    return JsonlSink(directory / f"{stem}.jsonl")
