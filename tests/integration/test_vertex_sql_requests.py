"""Vertex request tables built by BigQuery (``backends/vertex_tables.py``), against the emulator with the
real google-cloud-bigquery and google-genai clients: the same requests as the worker path, bad input
refused before any Vertex call, re-attaching retries, and retry rounds selected in SQL."""

from __future__ import annotations

import json

import pytest
from google.cloud import bigquery

from airflow_llm_batch.batch.backends.base import ClientConfig, RequestSpec
from airflow_llm_batch.batch.backends.vertex import VertexBackend
from airflow_llm_batch.batch.backends.vertex_tables import SourceQuery, SqlRequestTables
from airflow_llm_batch.batch.job import JobLayout, JobState, submit_prepared
from airflow_llm_batch.batch.prepare import prepare_chunks
from airflow_llm_batch.batch.records import JobKey, Kind
from airflow_llm_batch.batch.retry import retryable_ids
from airflow_llm_batch.batch.schema import ResponseSchema
from airflow_llm_batch.batch.templates import PromptTemplate
from airflow_llm_batch.exceptions import ConfigurationError, InvalidInputError, StateConflictError
from airflow_llm_batch.io.bigquery import BigQuerySource, GoogleSettings
from tests.integration.harness import KEY, collect_rows, wait_for

PROJECT = "test-project"
SCHEMA = {"type": "object", "properties": {"label": {"type": "string", "enum": ["spam", "ham"]}}, "required": ["label"]}
SPEC = RequestSpec(
    model="gemini-2.5-flash",
    kind=Kind.CHAT,
    system_prompt='You label messages. Say "spam" or "ham"; \\ is a backslash.',
    parameters={"temperature": 0.2, "max_tokens": 64},
    response_schema=ResponseSchema.coerce(SCHEMA),
)
# Quotes, a backslash, a newline, a tab, literal braces, unicode and a control character in the template.
TEMPLATE = 'Ticket «{subject}» said:\n\t"{body}" \\ {{not a field}} ☃ \x01 id={n}'
TRICKY = [
    'She said "hi" and left',
    "back\\slash and \\n not a newline",
    "line one\nline two\r\n\ttabbed",
    "unicode: é ☃ 😀 \u2028 — ok",
    "control \x01\x1f and '<script>' & {{ ds }} {body}",
    "",
]


@pytest.fixture
def backend(llm_batch_emulator):
    llm_batch_emulator.set_scenario(completion_seconds=0.3)
    extra = {"project": PROJECT, "bigquery_endpoint": llm_batch_emulator.bigquery_url, "max_retries": 0}
    backend = VertexBackend(ClientConfig(api_key="token", base_url=llm_batch_emulator.vertex_base_url, extra=extra))
    backend.bigquery.create_dataset("llm_batch")
    backend.bigquery.create_dataset("src")
    yield backend
    backend.close()


def seed(backend, rows, table="src.tickets", id_type="STRING"):
    schema = [
        bigquery.SchemaField("ticket_id", id_type),
        bigquery.SchemaField("subject", "STRING"),
        bigquery.SchemaField("body", "STRING"),
        bigquery.SchemaField("n", "INTEGER"),
    ]
    config = bigquery.LoadJobConfig(schema=schema, write_disposition="WRITE_TRUNCATE")
    backend.bigquery.load_table_from_json(rows, f"{PROJECT}.{table}", job_config=config).result()


def tricky_rows():
    return [
        {"ticket_id": f"T-{i}", "subject": f"subj '{i}' \\", "body": body, "n": i * 1000}
        for i, body in enumerate(TRICKY)
    ]


def source(query, **kwargs):
    bq = BigQuerySource(query=query, settings=GoogleSettings(project=PROJECT), **kwargs)
    return SourceQuery(bq.as_sql(PROJECT), bq.bound_parameters(), bq.explain)


def build(backend, tmp_path, query, key=KEY, template=TEMPLATE, id_field="ticket_id", on_input_change="fail"):
    tables = SqlRequestTables(backend, JobLayout.for_job(tmp_path, key, 1), key, on_input_change)
    return tables, tables.from_source(source(query), id_field, template, SPEC)


def submit(tables, prepared, backend, key=KEY, attempt=1):
    return submit_prepared(
        prepared,
        backend=backend,
        spec=SPEC,
        job_key=key,
        layout=tables.layout,
        conn_id="c",
        attempt=attempt,
        timeout_seconds=60,
    )


def table_requests(backend, table):
    rows = backend.bigquery.query(f"SELECT key, TO_JSON_STRING(request) AS request FROM `{table}`").result()
    return {row["key"]: json.loads(row["request"]) for row in rows}


def bigquery_of(emulator):
    return emulator.state.services["bigquery"]


def tables_in(emulator, dataset):
    engine = bigquery_of(emulator).engine
    rows = engine.db.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = ?", [dataset])
    return sorted(name for (name,) in rows.fetchall())


def vertex_creates(emulator):
    return [
        r for r in emulator.requests("vertex") if r["method"] == "POST" and r["path"].endswith("batchPredictionJobs")
    ]


def test_sql_builds_the_same_requests_as_the_worker_path_for_tricky_text(backend, tmp_path):
    rows = tricky_rows()
    seed(backend, rows)
    tables, prepared = build(backend, tmp_path, f"SELECT * FROM `{PROJECT}.src.tickets` -- trailing comment")
    assert prepared.item_count == len(rows) and len(prepared.chunks) == 1
    in_sql = table_requests(backend, tables.tables[0])

    worker = prepare_chunks(
        rows,
        id_field="ticket_id",
        spec=SPEC,
        backend=backend,
        out_dir=tmp_path / "worker",
        template=PromptTemplate(TEMPLATE),
    )
    lines = [json.loads(line) for line in worker.chunks[0].path.read_text().split("\n") if line]
    assert in_sql == {line["key"]: line["request"] for line in lines}
    ids = [json.loads(line) for line in tables.layout.ids_file(0).read_text().splitlines()]
    assert sorted(ids) == sorted([row["ticket_id"]] * 2 for row in rows)


def test_bad_rows_fail_in_one_check_before_any_vertex_call(backend, tmp_path, llm_batch_emulator):
    rows = [*tricky_rows(), {"ticket_id": "T-1", "subject": "dup", "body": "b", "n": 1}]
    rows += [{"ticket_id": "", "subject": "s", "body": "b", "n": 1}, {"ticket_id": None, "subject": "s", "body": "b"}]
    rows += [{"ticket_id": "T-null", "subject": "s", "body": None, "n": 1}]
    rows += [{"ticket_id": "T-big", "subject": "s", "body": "x" * 11_000_000, "n": 1}]
    seed(backend, rows)
    with pytest.raises(InvalidInputError) as raised:
        build(backend, tmp_path, f"SELECT * FROM `{PROJECT}.src.tickets`")
    message = str(raised.value)
    assert "2 row(s) of the source have a null or empty id in column 'ticket_id'" in message
    assert "item 'T-1': id field 'ticket_id' is a duplicate" in message
    assert "item 'T-null': field 'body' is null; the prompt template uses {body}" in message
    assert "item 'T-big': its request is above vertex's limit of 10,485,760 bytes" in message
    assert not vertex_creates(llm_batch_emulator)
    assert tables_in(llm_batch_emulator, "llm_batch") == []  # the staged table was dropped


def test_a_missing_column_or_id_column_is_named_from_the_dry_run(backend, tmp_path, llm_batch_emulator):
    seed(backend, tricky_rows())
    tables = SqlRequestTables(backend, JobLayout.for_job(tmp_path, KEY, 1), KEY)
    columns = tables.source_columns(source(f"SELECT ticket_id, subject FROM `{PROJECT}.src.tickets`"))
    assert columns == {"ticket_id": ("STRING", "NULLABLE"), "subject": ("STRING", "NULLABLE")}
    with pytest.raises(InvalidInputError, match=r"no column 'body' that the prompt template uses \(\{body\}\)"):
        tables.unfit_columns(columns, "ticket_id", "{subject}: {body}", force=False)
    with pytest.raises(InvalidInputError, match=r"no id column 'doc_id' \(id_field\)"):
        tables.unfit_columns(columns, "doc_id", "{subject}", force=False)
    with pytest.raises(ConfigurationError, match="the source query reads a table that does not exist"):
        tables.source_columns(source(f"SELECT * FROM `{PROJECT}.src.nope`"))
    assert not vertex_creates(llm_batch_emulator)


def test_non_text_columns_keep_the_worker_path_unless_forced(backend, tmp_path):
    tables = SqlRequestTables(backend, JobLayout.for_job(tmp_path, KEY, 1), KEY)
    query = f"SELECT ticket_id, n > 2 AS flag, CAST(n AS FLOAT64) / 2 AS score FROM `{PROJECT}.src.tickets`"
    seed(backend, tricky_rows())
    columns = tables.source_columns(source(query))
    assert tables.unfit_columns(columns, "ticket_id", "{flag} {score}", force=False) == [
        "flag (BOOLEAN)",
        "score (FLOAT)",
    ]
    assert tables.unfit_columns(columns, "ticket_id", "{flag} {score}", force=True) == []


def test_an_empty_source_is_a_clean_zero_item_job(backend, tmp_path, llm_batch_emulator):
    seed(backend, tricky_rows())
    tables, prepared = build(backend, tmp_path, f"SELECT * FROM `{PROJECT}.src.tickets` WHERE n < 0")
    manifest = submit(tables, prepared, backend)
    assert manifest.item_count == 0 and manifest.batches == [] and not vertex_creates(llm_batch_emulator)


def test_a_task_retry_re_attaches_and_never_builds_or_creates_again(backend, tmp_path, llm_batch_emulator):
    seed(backend, tricky_rows())
    query = f"SELECT * FROM `{PROJECT}.src.tickets`"
    tables, prepared = build(backend, tmp_path, query)
    assert (
        tables.tables[0] == f"{PROJECT}.llm_batch.llm_batch_{KEY.digest()}_{prepared.fingerprint[:8]}_c00000_requests"
    )
    manifest = submit(tables, prepared, backend)
    queries_before = len(bigquery_of(llm_batch_emulator).jobs)

    again_tables, again = build(backend, tmp_path, query)  # the task's second try, same job key
    assert again.fingerprint == prepared.fingerprint and again_tables.tables == tables.tables
    assert submit(again_tables, again, backend).batch_ids == manifest.batch_ids
    assert len(bigquery_of(llm_batch_emulator).jobs) == queries_before  # nothing built again
    assert len(vertex_creates(llm_batch_emulator)) == 1

    state = JobState.load(tables.layout.state_file)  # a try that died during the create call
    state.data.pop("handed_off", None)  # it died before handing its first wave on
    state.set_chunk(0, state="intent", batch_id=None)
    third_tables, third = build(backend, tmp_path, query)
    assert submit(third_tables, third, backend).batch_ids == manifest.batch_ids  # found by its labels
    assert len(vertex_creates(llm_batch_emulator)) == 1
    assert llm_batch_emulator.ledger()["duplicate_batches"] == []


def test_a_changed_query_fails_before_touching_anything_unless_resubmit(backend, tmp_path, llm_batch_emulator):
    seed(backend, tricky_rows())
    tables, prepared = build(backend, tmp_path, f"SELECT * FROM `{PROJECT}.src.tickets`")
    manifest = submit(tables, prepared, backend)
    ids_before = tables.layout.ids_file(0).read_text()
    jobs_before = len(bigquery_of(llm_batch_emulator).jobs)
    changed = f"SELECT * FROM `{PROJECT}.src.tickets` WHERE n > 0"
    with pytest.raises(StateConflictError, match="on_input_change='resubmit'"):
        build(backend, tmp_path, changed)
    assert len(bigquery_of(llm_batch_emulator).jobs) == jobs_before  # no query ran
    assert tables.layout.ids_file(0).read_text() == ids_before

    new_tables, new = build(backend, tmp_path, changed, on_input_change="resubmit")
    assert new.item_count == len(TRICKY) - 1 and new_tables.tables[0] != tables.tables[0]
    resubmitted = submit_prepared(
        new,
        backend=backend,
        spec=SPEC,
        job_key=KEY,
        layout=new_tables.layout,
        conn_id="c",
        attempt=1,
        timeout_seconds=60,
        on_input_change="resubmit",
    )
    assert resubmitted.batch_ids != manifest.batch_ids and len(vertex_creates(llm_batch_emulator)) == 2


def test_chunks_split_at_the_request_limit_and_results_map_to_source_ids(backend, tmp_path, llm_batch_emulator):
    llm_batch_emulator.update_scenario(item_errors={"server_error": 0.3})
    backend.limits = backend.limits.with_overrides({"max_requests": 4})
    rows = [{"ticket_id": f"D-{i:02d}", "subject": "s", "body": f"body {i}", "n": i} for i in range(10)]
    seed(backend, rows)
    tables, prepared = build(backend, tmp_path, f"SELECT * FROM `{PROJECT}.src.tickets`")
    assert [c.count for c in prepared.chunks] == [4, 4, 2]
    manifest = submit(tables, prepared, backend)
    wait_for(backend, manifest)
    summary, result_rows = collect_rows(backend, tables.layout, manifest, ResponseSchema.coerce(SCHEMA).validator())
    assert sorted(r["id"] for r in result_rows) == [row["ticket_id"] for row in rows]
    assert summary["by_error_type"] == {"server_error": summary["failed"]} and summary["failed"]

    # The retry round: the failed keys only, selected in SQL from the first round's tables.
    retry_key = JobKey("dag", "submit__retry_1", KEY.run_id)
    retry_tables = SqlRequestTables(backend, JobLayout.for_job(tmp_path, retry_key, 2), retry_key)
    failed = tables.layout.results_dir / "failed_items.jsonl"
    retried = retry_tables.from_retry(tables.layout, retryable_ids(failed), SPEC.model)
    failed_ids = sorted(r["id"] for r in result_rows if r["status"] == "failed")
    assert retried.item_count == len(failed_ids)
    first_requests = {}
    for table in tables.tables.values():
        first_requests.update(table_requests(backend, table))
    for table in retry_tables.tables.values():
        assert table_requests(backend, table) == {key: first_requests[key] for key in table_requests(backend, table)}
    assert sorted(k for t in retry_tables.tables.values() for k in table_requests(backend, t)) == failed_ids
    assert not [t for t in tables_in(llm_batch_emulator, "llm_batch") if t.endswith("_retry_keys")]
