"""BigQuerySource and BigQuerySink through the real google-cloud-bigquery client, against the emulator."""

from __future__ import annotations

import pytest
from google.api_core.exceptions import NotFound
from google.cloud import bigquery

from airflow_llm_batch.batch.records import ErrorType, ItemResult, JobKey
from airflow_llm_batch.exceptions import ConfigurationError
from airflow_llm_batch.io.bigquery import BigQuerySource, GoogleSettings
from airflow_llm_batch.io.bigquery_sink import BigQuerySink

PROJECT = "test-project"
SCHEMA = {
    "type": "object",
    "properties": {"category": {"type": "string"}, "score": {"type": "integer"}, "urgent": {"type": "boolean"}},
    "required": ["category"],
}
WRITER = JobKey("nightly", "results", "scheduled__2026-01-02T00:00:00+00:00")


@pytest.fixture
def settings(llm_batch_emulator) -> GoogleSettings:
    return GoogleSettings(project=PROJECT, bigquery_endpoint=llm_batch_emulator.bigquery_url, token="token")


@pytest.fixture
def bq(settings) -> bigquery.Client:
    client = settings.bigquery_client()
    client.create_dataset("warehouse")
    schema = [
        bigquery.SchemaField("ticket_id", "STRING"),
        bigquery.SchemaField("body", "STRING"),
        bigquery.SchemaField("created", "DATE"),
    ]
    tickets = [{"ticket_id": f"T-{i}", "body": f"help {i}", "created": f"2026-01-0{1 + i % 2}"} for i in range(25)]
    client.load_table_from_json(
        tickets, f"{PROJECT}.warehouse.tickets", job_config=bigquery.LoadJobConfig(schema=schema)
    )
    yield client
    client.close()


def result_rows(count: int, attempt: int = 1) -> list[dict]:
    rows = []
    for i in range(count):
        row = ItemResult(id=f"T-{i}", status="succeeded", json={"category": "bug", "score": i}, attempt=attempt)
        rows.append(row.to_row())
    rows.append(ItemResult.failure("T-x", ErrorType.SERVER_ERROR, "boom", attempt=attempt).to_row())
    return rows


def test_a_templated_query_streams_page_by_page(bq, settings, llm_batch_emulator):
    source = BigQuerySource(
        query="SELECT ticket_id, body FROM `test-project.warehouse.tickets` WHERE created = @day ORDER BY ticket_id",
        query_parameters={"day": ("DATE", "2026-01-01")},
        page_size=5,
        settings=settings,
    )
    items = list(source.iter_items())
    assert len(items) == 13 and set(items[0]) == {"ticket_id", "body"}
    pages = [
        r for r in llm_batch_emulator.requests("bigquery") if "/queries/" in r["path"] and "maxResults=5" in r["query"]
    ]
    assert len(pages) == 3  # 13 rows never arrive at once


def test_a_table_source_reads_only_the_columns_asked(bq, settings):
    source = BigQuerySource(table="warehouse.tickets", columns=["ticket_id", "body"], page_size=10, settings=settings)
    items = list(source.iter_items())
    assert len(items) == 25 and all(set(item) == {"ticket_id", "body"} for item in items)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            dict(query="SELECT ticket_id FROM `test-project.warehouse.tickets` WHERE"),
            "BigQuery rejected the source query",
        ),
        (dict(query="SELECT * FROM `test-project.warehouse.nope`"), "reads a table that does not exist"),
        (dict(table="warehouse.nope"), "source table 'warehouse.nope' was not found"),
        (dict(table="warehouse.tickets", columns=["ticket_id", "subject"]), r"no column\(s\) \['subject'\]"),
    ],
)
def test_source_errors_say_what_to_change(bq, settings, source, message):
    with pytest.raises(ConfigurationError, match=message) as caught:
        list(BigQuerySource(settings=settings, **source).iter_items())
    assert "nothing was submitted" in str(caught.value)


def count(bq, table: str, where: str = "TRUE") -> int:
    return next(iter(bq.query(f"SELECT count(*) AS n FROM `{table}` WHERE {where}").result()))["n"]


@pytest.mark.parametrize("load_format", ["parquet", "jsonl"])
def test_writing_twice_for_the_same_run_leaves_one_row_per_item(bq, settings, load_format):
    table = f"{PROJECT}.warehouse.labels"
    other = JobKey("nightly", "results", "scheduled__2026-01-01T00:00:00+00:00")
    for writer, rows in ((other, result_rows(3)), (WRITER, result_rows(10)), (WRITER, result_rows(10, attempt=1))):
        sink = BigQuerySink(table, typed_columns=True, load_format=load_format, settings=settings)
        sink.prepare(writer, SCHEMA)
        assert sink.write(rows)["rows"] == len(rows)
    assert count(bq, table) == 4 + 11
    assert count(bq, table, f"run_id = '{WRITER.run_id}'") == 11
    row = dict(
        next(iter(bq.query(f"SELECT * FROM `{table}` WHERE id = 'T-2' AND run_id = '{WRITER.run_id}'").result()))
    )
    assert row["json"] == {"category": "bug", "score": 2} and row["category"] == "bug" and row["score"] == 2
    assert row["dag_id"] == "nightly" and row["task_id"] == "results" and row["attempt"] == 1
    with pytest.raises(NotFound):  # the staging table is dropped once its rows are in
        bq.get_table(f"{table}__llm_batch_staging_{WRITER.digest()}")


def test_a_conflicting_sink_table_fails_before_anything_is_written(bq, settings):
    table = f"{PROJECT}.warehouse.labels"
    bq.create_table(
        bigquery.Table(table, schema=[bigquery.SchemaField("id", "STRING"), bigquery.SchemaField("attempt", "STRING")])
    )
    sink = BigQuerySink(table, settings=settings)
    with pytest.raises(ConfigurationError, match="column attempt is STRING, the results need INTEGER") as caught:
        sink.prepare(WRITER, None)
    assert "column run_id (STRING) is missing" in str(caught.value) and "Nothing was written" in str(caught.value)
    assert count(bq, table) == 0


def test_sink_setup_errors_name_the_fix(bq, settings):
    with pytest.raises(ConfigurationError, match=r"dataset test-project\.nowhere does not exist"):
        BigQuerySink("nowhere.labels", settings=settings).prepare(WRITER, None)
    nested = {"type": "object", "properties": {"tags": {"type": "array"}}}
    with pytest.raises(ConfigurationError, match="'tags' is not a string"):
        BigQuerySink("warehouse.labels", typed_columns=True, settings=settings).prepare(WRITER, nested)
    clash = {"type": "object", "properties": {"status": {"type": "string"}}}
    with pytest.raises(ConfigurationError, match="typed_column_prefix"):
        BigQuerySink("warehouse.labels", typed_columns=True, settings=settings).prepare(WRITER, clash)


def test_many_rows_go_in_several_load_files_into_one_staging_table(bq, settings, monkeypatch, llm_batch_emulator):
    from airflow_llm_batch.io import bigquery_sink

    monkeypatch.setattr(bigquery_sink, "ROWS_PER_LOAD_FILE", 4)
    monkeypatch.setattr(bigquery_sink, "ROW_GROUP", 3)

    def loads() -> int:
        return sum(
            1 for r in llm_batch_emulator.requests("bigquery") if "/upload/" in r["path"] and r["method"] == "POST"
        )

    before = loads()
    sink = BigQuerySink("warehouse.labels", settings=settings)
    sink.prepare(WRITER, None)
    assert sink.write(result_rows(9))["rows"] == 10
    assert count(bq, f"{PROJECT}.warehouse.labels") == 10
    assert loads() - before == 3  # 4 + 4 + 2 rows


def test_a_failing_source_query_submits_nothing(bq, settings, llm_batch_emulator, tmp_path):
    from airflow_llm_batch.batch.backends import ClientConfig, create_backend
    from airflow_llm_batch.batch.backends.base import RequestSpec
    from airflow_llm_batch.batch.prepare import prepare_chunks
    from airflow_llm_batch.batch.records import Kind
    from airflow_llm_batch.batch.templates import PromptTemplate

    backend = create_backend("openai", ClientConfig(api_key="k", base_url=llm_batch_emulator.openai_base_url))
    source = BigQuerySource(query="SELECT ticket_id, body FROM `warehouse.tickets` WHERE nope = 1", settings=settings)
    with pytest.raises(ConfigurationError, match="rejected the source query"):
        prepare_chunks(
            source.iter_items(),
            id_field="ticket_id",
            spec=RequestSpec(model="gpt-4.1-mini", kind=Kind.CHAT),
            backend=backend,
            out_dir=tmp_path,
            template=PromptTemplate("{body}"),
        )
    assert llm_batch_emulator.ledger()["batches"] == [] and not llm_batch_emulator.requests("openai")
