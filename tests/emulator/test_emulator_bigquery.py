"""The emulated BigQuery REST API, driven through the real ``google-cloud-bigquery`` client."""

from __future__ import annotations

import io
import json

import pytest
from google.api_core import exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from airflow_llm_batch.emulator import Emulator

PROJECT = "test-project"
SCHEMA = [
    bigquery.SchemaField("id", "STRING"),
    bigquery.SchemaField("n", "INTEGER"),
    bigquery.SchemaField("doc", "JSON"),
    bigquery.SchemaField("day", "DATE"),
    bigquery.SchemaField("at", "TIMESTAMP"),
    bigquery.SchemaField("vector", "FLOAT", mode="REPEATED"),
]


@pytest.fixture
def bq(emu: Emulator) -> bigquery.Client:
    client = bigquery.Client(
        project=PROJECT, credentials=AnonymousCredentials(), client_options={"api_endpoint": emu.bigquery_url}
    )
    client.create_dataset("d")
    yield client
    client.close()


def rows(count: int) -> list[dict]:
    return [
        {
            "id": f"r{i:03d}",
            "n": i,
            "doc": {"k": i, "text": 'it\'s "quoted"'},
            "day": f"2026-01-0{1 + i % 3}",
            "at": "2026-01-01T12:00:00Z",
            "vector": [0.5, float(i)],
        }
        for i in range(count)
    ]


def load(bq: bigquery.Client, table: str, data: list[dict]) -> None:
    bq.load_table_from_json(data, table, job_config=bigquery.LoadJobConfig(schema=SCHEMA)).result()


def test_create_get_and_list_rows_page_by_page_with_every_type(bq, emu):
    bq.create_table(bigquery.Table(f"{PROJECT}.d.t", schema=SCHEMA))
    load(bq, f"{PROJECT}.d.t", rows(25))
    table = bq.get_table(f"{PROJECT}.d.t")
    assert table.num_rows == 25
    assert [(f.name, f.field_type, f.mode) for f in table.schema][-1] == ("vector", "FLOAT", "REPEATED")
    pages = list(bq.list_rows(table, page_size=10).pages)
    assert [page.num_items for page in pages] == [10, 10, 5]
    first = dict(next(iter(pages[0])))
    assert first["doc"] == {"k": 0, "text": 'it\'s "quoted"'} and first["vector"] == [0.5, 0.0]
    assert str(first["day"]) == "2026-01-01" and first["at"].isoformat() == "2026-01-01T12:00:00+00:00"
    selected = bq.list_rows(table, selected_fields=[bigquery.SchemaField("id", "STRING")], max_results=2)
    assert [dict(r) for r in selected] == [{"id": "r000"}, {"id": "r001"}]


def test_query_with_parameters_pages_through_get_query_results(bq, emu):
    load(bq, f"{PROJECT}.d.t", rows(30))
    config = bigquery.QueryJobConfig(query_parameters=[bigquery.ScalarQueryParameter("day", "DATE", "2026-01-02")])
    sql = "SELECT id, JSON_VALUE(doc, '$.text') AS text FROM `test-project.d.t` WHERE day = @day ORDER BY n"
    result = bq.query(sql, job_config=config).result(page_size=4)
    found = [dict(row) for row in result]
    assert len(found) == 10 and found[0] == {"id": "r001", "text": 'it\'s "quoted"'}
    pages = [r for r in emu.requests("bigquery") if "/queries/" in r["path"] and "pageToken" in r["query"]]
    assert len(pages) == 2  # 10 rows in pages of 4: the first page and two more
    assert [tuple(r.values()) for r in bq.query_and_wait("SELECT count(*) AS c FROM `d.t`")] == [(30,)]


def test_a_script_deletes_and_inserts_in_one_transaction(bq):
    load(bq, f"{PROJECT}.d.t", rows(10))
    bq.query(
        "BEGIN TRANSACTION; DELETE FROM `test-project.d.t` WHERE n < 5; "
        "INSERT INTO `test-project.d.t` (id, n) SELECT CONCAT(id, '-copy'), n FROM `test-project.d.t`; "
        "COMMIT TRANSACTION;"
    ).result()
    assert bq.get_table(f"{PROJECT}.d.t").num_rows == 10
    with pytest.raises(exceptions.BadRequest):
        bq.query(
            "BEGIN TRANSACTION; DELETE FROM `test-project.d.t` WHERE true; SELECT nope(); COMMIT TRANSACTION;"
        ).result()
    assert bq.get_table(f"{PROJECT}.d.t").num_rows == 10  # the failed script rolled back


def test_query_errors_are_bad_request_and_not_found(bq):
    with pytest.raises(exceptions.BadRequest, match="syntax error"):
        bq.query("SELEC 1").result()
    with pytest.raises(exceptions.NotFound, match="missing"):
        bq.query("SELECT * FROM `test-project.d.missing`").result()
    with pytest.raises(exceptions.NotFound):
        bq.get_table(f"{PROJECT}.d.missing")


@pytest.mark.parametrize("size", [None, 100], ids=["resumable", "multipart"])
def test_load_jobs_multipart_and_resumable(bq, emu, size):
    data = "".join(json.dumps(row) + "\n" for row in rows(40)).encode()
    config = bigquery.LoadJobConfig(schema=SCHEMA, source_format="NEWLINE_DELIMITED_JSON")
    stream = io.BytesIO(data)
    job = bq.load_table_from_file(stream, f"{PROJECT}.d.loaded", size=len(data) if size else None, job_config=config)
    assert job.result().output_rows == 40
    upload = [r for r in emu.requests("bigquery") if r["path"].startswith("/bigquery/upload/")]
    assert ("uploadType=multipart" in upload[0]["query"]) is bool(size)
    assert bq.get_table(f"{PROJECT}.d.loaded").num_rows == 40


def test_truncating_load_replaces_rows_and_a_mismatched_append_fails(bq):
    load(bq, f"{PROJECT}.d.t", rows(5))
    truncate = bigquery.LoadJobConfig(schema=SCHEMA, write_disposition="WRITE_TRUNCATE")
    bq.load_table_from_json(rows(3), f"{PROJECT}.d.t", job_config=truncate).result()
    assert bq.get_table(f"{PROJECT}.d.t").num_rows == 3
    wrong = bigquery.LoadJobConfig(schema=[bigquery.SchemaField("n", "STRING")])
    with pytest.raises(exceptions.BadRequest, match="does not match"):
        bq.load_table_from_json([{"n": "x"}], f"{PROJECT}.d.t", job_config=wrong).result()


def test_parquet_cannot_load_json_columns_as_in_bigquery(bq, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    bq.create_table(bigquery.Table(f"{PROJECT}.d.j", schema=[bigquery.SchemaField("doc", "JSON")]))
    pq.write_table(pa.table({"doc": ['{"a": 1}']}), tmp_path / "f.parquet")
    config = bigquery.LoadJobConfig(source_format="PARQUET")
    with (tmp_path / "f.parquet").open("rb") as stream, pytest.raises(exceptions.BadRequest, match="JSON columns"):
        bq.load_table_from_file(stream, f"{PROJECT}.d.j", job_config=config).result()
