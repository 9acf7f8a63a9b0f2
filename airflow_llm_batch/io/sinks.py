"""Result rows out: JSONL (one object per line) or Parquet, written as the rows stream in."""

from __future__ import annotations

import operator
from typing import Any

from airflow_llm_batch.batch import jsonl
from airflow_llm_batch.batch.records import RESULT_COLUMNS, ItemResult
from airflow_llm_batch.batch.row_blocks import RowBlock, Same
from airflow_llm_batch.batch.storage import StoragePath, uri_of
from airflow_llm_batch.exceptions import ConfigurationError

OUTPUT_FORMATS = ("jsonl", "parquet")
PARQUET_ROW_GROUP = 10_000
_UNIQUE_PER_ROW = frozenset({"id", "text", "json"})


class JsonlSink:
    def __init__(self, path: StoragePath) -> None:
        self.path = path
        self.uri = uri_of(path)
        self._writer = jsonl.JsonlWriter(path)

    def write(self, row: ItemResult) -> None:
        # orjson writes a dataclass as its fields in order: the same bytes as ``row.to_row()``,
        # without copying the row into a dict first.
        self._writer.write(row)

    def close(self) -> None:
        self._writer.close()


def parquet_schema() -> Any:
    """The results file's Parquet schema, from the result columns (``records.RESULT_COLUMNS``)."""
    import pyarrow as pa

    types = {
        "string": pa.string(),
        "json": pa.string(),  # the structured output, JSON-encoded (its shape is the user's schema)
        "float_list": pa.list_(pa.float32()),
        "bool": pa.bool_(),
        "int32": pa.int32(),
        "int64": pa.int64(),
    }
    return pa.schema([(name, types[kind]) for name, kind in RESULT_COLUMNS])


class ParquetSink:
    """Buffers rows into row groups of ``PARQUET_ROW_GROUP`` so memory stays flat.

    Rows come one by one (:meth:`write`) or as blocks of columns (:meth:`write_block`, the Results
    task's columnar path), in any mix: the file holds them in the order given, in the same row
    groups either way.
    """

    def __init__(self, path: StoragePath) -> None:
        import pyarrow.parquet as pq

        self.path = path
        self.uri = uri_of(path)
        self._schema = parquet_schema()
        self._stream = path.open("wb")
        # Dictionary encoding only where values repeat: for the per-row text (id, text, json) it
        # hashed every value to build dictionaries as big as the data, and made the file bigger.
        repeating = [name for name in self._schema.names if name not in _UNIQUE_PER_ROW]
        self._writer = pq.ParquetWriter(self._stream, self._schema, compression="zstd", use_dictionary=repeating)
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
        # Rows already in Arrow form (blocks, and the single rows written before a block), in order.
        self._batches: list[Any] = []
        self._batched = 0

    def write(self, row: ItemResult) -> None:
        self._rows.append(self._values_of(row))
        self._status.append(row.status)
        value = row.json
        self._json.append(None if value is None else jsonl.dumps(value).decode())
        if len(self._rows) + self._batched >= PARQUET_ROW_GROUP:
            self._flush()

    def write_block(self, block: RowBlock) -> None:
        import pyarrow as pa

        self._batch_rows()
        length = block.length
        arrays = [_array(block.columns[field.name], field.type, length) for field in self._schema]
        self._batches.append(pa.RecordBatch.from_arrays(arrays, schema=self._schema))
        self._batched += length
        if self._batched >= PARQUET_ROW_GROUP:
            self._flush()

    def _batch_rows(self) -> None:
        """The single rows written since the last flush or block, as one record batch."""
        import pyarrow as pa

        if self._rows:
            columns: list[Any] = list(zip(*self._rows, strict=True))
            for index, values in sorted(zip(self._apart, (self._status, self._json), strict=True)):
                columns.insert(index, values)
            arrays = [pa.array(values, type=field.type) for values, field in zip(columns, self._schema, strict=True)]
            self._batches.append(pa.RecordBatch.from_arrays(arrays, schema=self._schema))
            self._batched += len(self._rows)
            self._rows.clear()
            self._status = []
            self._json = []

    def _flush(self, last: bool = False) -> None:
        """Write every full row group buffered (and, when ``last``, the rest)."""
        import pyarrow as pa

        self._batch_rows()
        if not self._batches:
            return
        table = pa.Table.from_batches(self._batches, schema=self._schema)
        full = table.num_rows if last else table.num_rows - table.num_rows % PARQUET_ROW_GROUP
        # (Not in a worker thread: pyarrow takes the GIL back for every write to the Python file
        # object, and the contention cost the reading thread more than the encoding took.)
        for offset in range(0, full, PARQUET_ROW_GROUP):
            self._writer.write_table(table.slice(offset, PARQUET_ROW_GROUP), row_group_size=PARQUET_ROW_GROUP)
        rest = table.slice(full)
        self._batches = rest.to_batches() if rest.num_rows else []
        self._batched = rest.num_rows

    def close(self) -> None:
        self._flush(last=True)
        self._writer.close()
        self._stream.close()


def _array(column: list[Any] | Same, arrow_type: Any, length: int) -> Any:
    import pyarrow as pa

    if type(column) is Same:
        if column.value is None:
            return pa.nulls(length, arrow_type)
        return pa.repeat(pa.scalar(column.value, arrow_type), length)
    return pa.array(column, type=arrow_type)


def open_sink(directory: StoragePath, output_format: str, stem: str = "results") -> JsonlSink | ParquetSink:
    if output_format not in OUTPUT_FORMATS:
        raise ConfigurationError(f"output_format must be one of {OUTPUT_FORMATS}, not {output_format!r}")
    directory.mkdir(parents=True, exist_ok=True)
    if output_format == "parquet":
        return ParquetSink(directory / f"{stem}.parquet")
    return JsonlSink(directory / f"{stem}.jsonl")
