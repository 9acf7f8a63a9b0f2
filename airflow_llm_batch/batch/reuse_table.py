"""The reuse store in a BigQuery table, for jobs with a BigQuery sink (``reuse={"table": ...}``, ``docs/reuse.md``).

One table serves many tasks: each row is one stored answer of one task (``dag_id``, ``task_id``).
The Parquet store's *segment* (one attempt's answers, ``reuse_store.py``) is here the set of rows
with the same ``reused_from`` label, and the lookup (``reuse.py``) reads them through the same
:class:`~airflow_llm_batch.batch.reuse_store.Segment`, so the index code is one for both stores.

- **Reading.** One query lists the task's attempts (label, newest ``stored_at``, row count); the
  ones younger than ``max_age`` (and pinned by a task retry) are the segments. One query reads the
  keys of all of them in one order, ``stored_at DESC, reused_from, position`` (the segments' order,
  then the order each attempt stored its rows), and one more reads the rows in that same order
  when the reused rows are written, streamed page by page. A table that cannot be read (missing,
  another schema, no permission) is reported as a warning and is empty: every item is submitted.
- **Writing** (Results): the attempt's answers go to a local Parquet file, a load job puts them in
  a staging table named after the attempt (``WRITE_TRUNCATE``: a retried Results task overwrites
  it), and one transaction deletes the rows of that attempt's label and inserts the staged ones:
  a retry replaces its own rows, never adds a second copy, and a failure before the commit leaves
  the table as it was. Rows of other attempts are never touched, so concurrent runs do not meet.

``google.cloud.bigquery`` is imported inside functions only (DAG files import the operators).
Columns: ``dag_id, task_id, reused_from STRING, stored_at TIMESTAMP, position INT64, key INT64``
(the lookup's uint64 key, as the signed integer of the same 64 bits), ``fingerprint BYTES`` (all
16 bytes) and ``row STRING`` (the result row as its JSON line).
"""

from __future__ import annotations

import hashlib
import logging
import random
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow_llm_batch.batch.google_settings import GoogleSettings
from airflow_llm_batch.batch.reuse_store import Segment

log = logging.getLogger(__name__)

# (name, BigQuery type); every column NULLABLE, as the sink's (a REQUIRED column refuses NULL loads).
COLUMNS: tuple[tuple[str, str], ...] = (
    ("dag_id", "STRING"),
    ("task_id", "STRING"),
    ("reused_from", "STRING"),
    ("stored_at", "TIMESTAMP"),
    ("position", "INTEGER"),
    ("key", "INTEGER"),
    ("fingerprint", "BYTES"),
    ("row", "STRING"),
)
_ROWS_PER_GROUP = 16_384
_PAGE_ROWS = 50_000
_CONFLICT_TRIES = 5  # a cancelled transaction is run again up to this many times in all
_CONFLICT_WAIT = 2.0  # seconds before the second try, doubling (with jitter) after that
_SAME = {"INT64": "INTEGER", "BOOL": "BOOLEAN", "FLOAT64": "FLOAT"}


@dataclass(frozen=True)
class TablePart:
    """Where a segment of the table is, for the log and ``reuse.json``: ``name`` is its label."""

    table: str
    name: str

    def __str__(self) -> str:
        return f"bq://{self.table} (reused_from {self.name!r})"


class ReuseTable:
    """The answers of one task (``dag_id``, ``task_id``) in a BigQuery table.

    :param settings: the BigQuery connection's settings (the sink's connection).
    :param table: ``project.dataset.table``; created on the first write if it is missing.
    :param dag_id: with ``task_id``, the task whose answers these are (its Submit task).
    :param conn_id: the connection ``settings`` came from, for the tasks that open it again.
    """

    def __init__(
        self, settings: GoogleSettings, table: str, dag_id: str, task_id: str, conn_id: str | None = None
    ) -> None:
        self.settings = settings
        self.conn_id = conn_id
        self.table = table
        self.dag_id = dag_id
        self.task_id = task_id
        self._client: Any = None
        self._labels: list[str] = []
        self._keys: Any = None
        self._starts: dict[str, tuple[int, int]] = {}
        self._rows: _RowStream | None = None

    def __str__(self) -> str:  # ``uri_of`` in the lookup's log and the manifest's ``store``
        return f"bq://{self.table}"

    def client(self) -> Any:
        if self._client is None:
            self._client = self.settings.bigquery_client()
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # Reading ---------------------------------------------------------------------------------
    def list_segments(
        self, max_age_seconds: float | None, pinned: set[str] | None = None, now: float | None = None
    ) -> list[Segment]:
        """The task's attempts younger than ``max_age_seconds`` (and among ``pinned``, when given),
        newest first as ``reuse_store.list_segments`` orders them; an unreadable table is empty.
        The key and row queries then read exactly these."""
        now = time.time() if now is None else now
        sql = (
            f"SELECT reused_from, MAX(stored_at) AS stored_at, COUNT(*) AS n FROM `{self.table}` "
            "WHERE dag_id = @dag_id AND task_id = @task_id GROUP BY reused_from"
        )
        try:
            found = [(row["reused_from"], row["stored_at"].timestamp(), int(row["n"])) for row in self._query(sql, [])]
        except Exception as err:  # missing, another schema, no permission: none may lose the run
            log.warning(
                "The reuse table %s cannot be read (%s: %s); treating it as empty: every item is submitted",
                self.table,
                type(err).__name__,
                _message(err),
            )
            found = []
        found = [f for f in found if max_age_seconds is None or now - f[1] <= max_age_seconds]
        found = [f for f in found if pinned is None or f[0] in pinned]
        found.sort(key=lambda f: (-f[1], f[0]))  # the queries' ORDER BY: stored_at DESC, reused_from
        self._labels = [label for label, _, _ in found]
        self._keys, self._rows = None, None
        return [
            Segment(TablePart(self.table, label), stored_at, label, rows, reader=self._column)
            for label, stored_at, rows in found
        ]

    def _column(self, segment: Segment, column: str) -> Iterator[Any]:
        """``key`` (uint64) or ``row`` (binary) of one segment as Arrow arrays (``reuse_store.iter_column``)."""
        if column == "key":
            yield self._segment_keys(segment)
        elif column == "row":
            if self._rows is None:
                self._rows = _RowStream(self._arrow(f"SELECT reused_from, `row` FROM {self._where()} {_ORDER}"))
            yield from self._rows.rows_of(segment.reused_from, segment.rows)
        else:
            raise ValueError(f"the reuse table has no column {column!r} to read")

    def _segment_keys(self, segment: Segment) -> Any:
        if isinstance(self._keys, Exception):  # one failed query, not one per segment
            raise self._keys
        if self._keys is None:  # every listed segment's keys at once, in the segments' order
            try:
                self._load_keys()
            except Exception as err:
                self._keys = err
                raise
        start, many = self._starts.get(segment.reused_from, (0, 0))
        return self._keys.slice(start, many)  # fewer than listed: ``_readable`` leaves it out

    def _load_keys(self) -> None:
        import pyarrow as pa

        chunks, at = [], 0
        starts: dict[str, tuple[int, int]] = {}
        for batch in self._arrow(f"SELECT reused_from, key FROM {self._where()} {_ORDER}"):
            for label, many in _label_runs(batch.column(0)):
                first, before = starts.get(label, (at, 0))
                starts[label] = (first, before + many)
                at += many
            chunks.append(batch.column(1).cast(pa.int64()).view(pa.uint64()))  # the same 64 bits
        self._keys = pa.concat_arrays(chunks) if chunks else pa.array([], pa.uint64())
        self._starts = starts

    def _where(self) -> str:
        chosen = ", ".join(f"@l{n}" for n in range(len(self._labels))) or "NULL"
        return f"`{self.table}` WHERE dag_id = @dag_id AND task_id = @task_id AND reused_from IN ({chosen})"

    def _parameters(self, labels: list[str]) -> list[Any]:
        from google.cloud import bigquery

        return [
            bigquery.ScalarQueryParameter("dag_id", "STRING", self.dag_id),
            bigquery.ScalarQueryParameter("task_id", "STRING", self.task_id),
            *(bigquery.ScalarQueryParameter(f"l{n}", "STRING", label) for n, label in enumerate(labels)),
        ]

    def _query(self, sql: str, labels: list[str]) -> Any:
        from google.cloud import bigquery

        config = bigquery.QueryJobConfig(use_legacy_sql=False, query_parameters=self._parameters(labels))
        return self.client().query(sql, job_config=config).result(page_size=_PAGE_ROWS)

    def _arrow(self, sql: str) -> Iterator[Any]:
        """The query's rows over the listed labels as Arrow record batches, a page at a time."""
        yield from self._query(sql, self._labels).to_arrow_iterable()

    # Writing ---------------------------------------------------------------------------------
    def write(self, reused_from: str, answers: Iterable[tuple[bytes, bytes]], now: float | None = None) -> int:
        """Replace the rows of attempt ``reused_from`` with ``(fingerprint, row line)`` answers."""
        from google.cloud import bigquery

        stored_at = time.time() if now is None else now
        target = self.table
        staging = f"{target}__llm_batch_reuse_{_digest(self.dag_id, self.task_id, reused_from)}"
        self._create_if_missing()
        with tempfile.TemporaryDirectory(prefix="llm-batch-reuse-") as folder:
            path = Path(folder) / "answers.parquet"
            stored = _write_file(path, self.dag_id, self.task_id, reused_from, stored_at, answers)
            config = bigquery.LoadJobConfig(
                schema=_schema(),
                source_format="PARQUET",
                write_disposition="WRITE_TRUNCATE",
                create_disposition="CREATE_IF_NEEDED",
            )
            with path.open("rb") as stream:
                self.client().load_table_from_file(stream, staging, job_config=config).result()
        names = ", ".join(f"`{name}`" for name, _ in COLUMNS)
        script = (
            "BEGIN TRANSACTION;\n"
            f"DELETE FROM `{target}` WHERE dag_id = @dag_id AND task_id = @task_id AND reused_from = @label;\n"
            f"INSERT INTO `{target}` ({names}) SELECT {names} FROM `{staging}`;\n"
            "COMMIT TRANSACTION;\n"
            f"DROP TABLE IF EXISTS `{staging}`;"
        )
        parameters = [*self._parameters([]), bigquery.ScalarQueryParameter("label", "STRING", reused_from)]
        self._run_replacing(script, bigquery.QueryJobConfig(query_parameters=parameters))
        return stored

    def _run_replacing(self, script: str, config: Any) -> None:
        """Run the delete-and-insert transaction, again after a short wait when BigQuery cancelled it
        for another writer's transaction on the table (two Results tasks finishing together):
        BigQuery lets one transaction at a time mutate a table's rows and cancels a conflicting
        one ("Could not serialize access to table ... due to concurrent update"); the staged rows
        are still there, so running the script again is safe."""
        for attempt in range(_CONFLICT_TRIES):
            try:
                self.client().query(script, job_config=config).result()
                return
            except Exception as err:
                if "concurrent update" not in str(err).lower() or attempt == _CONFLICT_TRIES - 1:
                    raise
                delay = _CONFLICT_WAIT * (2**attempt) * (0.5 + random.random())
                log.info(
                    "The reuse table %s is being written by another task; trying again in %.0f s", self.table, delay
                )
                time.sleep(delay)

    def _create_if_missing(self) -> None:
        """Create the table (clustered by ``dag_id, task_id``: a lookup reads one task's rows), or
        check that an existing one has the columns, naming what differs."""
        from google.api_core.exceptions import NotFound
        from google.cloud import bigquery

        try:
            existing = self.client().get_table(self.table)
        except NotFound:
            table = bigquery.Table(self.table, schema=_schema())
            table.clustering_fields = ["dag_id", "task_id"]
            self.client().create_table(table, exists_ok=True)
            return
        have = {f.name: _SAME.get(f.field_type, f.field_type) for f in existing.schema}
        wrong = [f"{name} {kind}" for name, kind in COLUMNS if have.get(name) != kind]
        if wrong:
            raise ValueError(f"the table needs the column(s) {', '.join(wrong)}; use a new table (it is created)")


_ORDER = "ORDER BY stored_at DESC, reused_from, position"


def _label_runs(labels: Any) -> list[tuple[str, int]]:
    """``(label, how many rows)`` of each run of equal labels in an Arrow array, in order."""
    runs: list[tuple[str, int]] = []
    for value in labels.to_pylist():  # one Python step per row of the label column only (a page)
        if runs and runs[-1][0] == value:
            runs[-1] = (value, runs[-1][1] + 1)
        else:
            runs.append((value, 1))
    return runs


class _RowStream:
    """The ``row`` query's pages, handed out segment by segment in the order the keys were read."""

    def __init__(self, batches: Iterator[Any]) -> None:
        self._batches = batches
        self._pending: tuple[Any, list[str]] | None = None

    def rows_of(self, label: str, rows: int) -> Iterator[Any]:
        import pyarrow as pa

        left = rows
        while left:
            if self._pending is None:
                batch = next(self._batches, None)
                if batch is None:
                    raise ValueError(f"{left} row(s) of {label!r} missing (the table changed while it was read)")
                self._pending = (batch, batch.column(0).to_pylist())
            batch, labels = self._pending
            skip = 0
            while skip < len(labels) and labels[skip] != label:  # a segment left out before this one
                skip += 1
            many = 0
            while skip + many < len(labels) and many < left and labels[skip + many] == label:
                many += 1
            rest = skip + many
            self._pending = (batch.slice(rest), labels[rest:]) if rest < len(labels) else None
            if many:
                left -= many
                yield batch.column(1).slice(skip, many).cast(pa.large_binary())


def _write_file(
    path: Path, dag_id: str, task_id: str, reused_from: str, stored_at: float, answers: Iterable[tuple[bytes, bytes]]
) -> int:
    """The answers as a Parquet load file, a row group at a time; return how many."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [
            ("dag_id", pa.string()),
            ("task_id", pa.string()),
            ("reused_from", pa.string()),
            ("stored_at", pa.timestamp("us", tz="UTC")),
            ("position", pa.int64()),
            ("key", pa.int64()),
            ("fingerprint", pa.binary()),
            ("row", pa.string()),
        ]
    )
    stamp = int(stored_at * 1_000_000)

    def batch(group: list[tuple[bytes, bytes]], first: int) -> Any:
        n = len(group)
        keys = [int.from_bytes(fingerprint[:8], "little", signed=True) for fingerprint, _ in group]
        columns = [
            pa.array([dag_id] * n, pa.string()),
            pa.array([task_id] * n, pa.string()),
            pa.array([reused_from] * n, pa.string()),
            pa.array([stamp] * n, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
            pa.array(range(first, first + n), pa.int64()),
            pa.array(keys, pa.int64()),
            pa.array([fingerprint for fingerprint, _ in group], pa.binary()),
            pa.array([row for _, row in group], pa.binary()).cast(pa.string()),
        ]
        return pa.record_batch(columns, schema=schema)

    # The answers are streamed a row group at a time (an attempt may store a million of them).
    count, group = 0, []
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for answer in answers:
            group.append(answer)
            if len(group) == _ROWS_PER_GROUP:
                writer.write_batch(batch(group, count))
                count, group = count + len(group), []
        if group:
            writer.write_batch(batch(group, count))
            count += len(group)
    return count


def _schema() -> list[Any]:
    from google.cloud import bigquery

    return [bigquery.SchemaField(name, kind, mode="NULLABLE") for name, kind in COLUMNS]


def _digest(*parts: str) -> str:
    return hashlib.blake2b("\x00".join(parts).encode(), digest_size=8).hexdigest()


def _message(error: BaseException) -> str:
    message = getattr(error, "message", None) or str(error)
    return str(message).strip().splitlines()[0] if str(message).strip() else type(error).__name__
