"""Result rows out: JSONL (one object per line) or Parquet, written as the rows stream in."""

from __future__ import annotations

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
        self._writer.write(row.to_row())

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
        self._rows: list[dict[str, Any]] = []

    def write(self, row: ItemResult) -> None:
        data = row.to_row()
        if data["json"] is not None:
            data["json"] = jsonl.dumps(data["json"]).decode()
        self._rows.append(data)
        if len(self._rows) >= PARQUET_ROW_GROUP:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        if self._rows:
            self._writer.write_table(pa.Table.from_pylist(self._rows, schema=self._schema))
            self._rows.clear()

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
