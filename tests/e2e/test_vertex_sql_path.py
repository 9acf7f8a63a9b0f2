"""Vertex AI reading a request table that BigQuery built: a query in, a labels table out, and no
source row through the worker; retry rounds selected in SQL. Real Airflow, real google-cloud-bigquery
and google-genai clients, the emulator behind them."""

from __future__ import annotations

import datetime
import itertools
import json
import types

import pytest
from google.cloud import bigquery

from tests.e2e.conftest import API_KEY, GCP_PROJECT, bigquery_client
from tests.e2e.test_readable_logs import _assert_nowhere, _everything_logged

pytestmark = pytest.mark.e2e


def seed_tickets(emulator, day: str) -> set[str]:
    """Tickets of the run's day, with quotes, backslashes, newlines and unicode, and one of another day."""
    bq = bigquery_client(emulator)
    bq.create_dataset("support_sql", exists_ok=True)
    bq.create_dataset("llm_batch", exists_ok=True)
    schema = [
        bigquery.SchemaField("ticket_id", "STRING"),
        bigquery.SchemaField("subject", "STRING"),
        bigquery.SchemaField("body", "STRING"),
        bigquery.SchemaField("created_date", "DATE"),
    ]
    rows = [
        {
            "ticket_id": f"S-{n:03d}",
            "subject": f'"Charged" \\ twice {n}',
            "body": "línea 1\nline 2 ☃ {{ ds }}",
            "created_date": day,
        }
        for n in range(30)
    ]
    rows.append({"ticket_id": "S-old", "subject": "Old", "body": "old", "created_date": "2020-01-01"})
    config = bigquery.LoadJobConfig(schema=schema, write_disposition="WRITE_TRUNCATE")
    bq.load_table_from_json(rows, f"{GCP_PROJECT}.support_sql.tickets", job_config=config).result()
    bq.close()
    return {row["ticket_id"] for row in rows if row["created_date"] == day}


def bigquery_of(emulator):
    return emulator.state.services["bigquery"]


def source_reads(emulator) -> dict[str, int]:
    """Rows the emulator sent back from the tickets table or from any query that reads it."""
    backend = bigquery_of(emulator)
    reading = {
        f"query {job_id}"
        for (_, job_id), job in backend.jobs.items()
        if "support_sql.tickets" in str(job.configuration.get("query", {}).get("query", ""))
    }
    return {
        source: rows
        for source, rows in backend.rows_served.items()
        if rows and (source in reading or source == "tabledata support_sql.tickets")
    }


def test_query_in_labels_table_out_and_no_source_row_through_the_worker(dag_runner):
    emulator = dag_runner.emulator
    emulator.update_scenario(completion_seconds=1.0, item_errors={"server_error": 0.1})
    day = next(dag_runner._dates)
    ids = seed_tickets(emulator, day)
    bigquery_of(emulator).rows_served.clear()

    result = dag_runner.sandbox.dags_test("e2e_vertex_sql", day)

    assert "Built 30 request(s) in BigQuery" in result.stdout + result.stderr
    assert source_reads(emulator) == {}  # neither tabledata nor query results of the source came back
    source_jobs = [
        job.configuration["query"]["query"]
        for job in bigquery_of(emulator).jobs.values()
        if "support_sql.tickets" in str(job.configuration.get("query", {}).get("query", ""))
    ]
    assert len(source_jobs) == 1 and source_jobs[0].startswith("CREATE OR REPLACE TABLE")
    assert len(vertex_creates(emulator)) == 1

    bq = bigquery_client(emulator)
    rows = [dict(r) for r in bq.query(f"SELECT * FROM `{GCP_PROJECT}.support_sql.ticket_labels`").result()]
    assert sorted(r["id"] for r in rows) == sorted(ids)  # one row per source id, the other day left out
    assert {r["provider"] for r in rows} == {"vertex"}
    failed = [r for r in rows if r["status"] == "failed"]
    assert failed and all(r["error_type"] == "server_error" and r["retryable"] for r in failed)
    assert all(r["category"] == r["json"]["category"] for r in rows if r["status"] == "succeeded")
    ledger = emulator.ledger()
    assert len(ledger["batches"]) == 1 and ledger["duplicate_batches"] == []
    # Vertex's share of the no-key check (tests/e2e/test_readable_logs.py does the other providers):
    # the connection's password is nowhere in logs, XCom, metadata DB or work dir; no request lines.
    logged = _everything_logged(dag_runner.sandbox, result)
    assert "HTTP Request" not in logged
    _assert_nowhere(API_KEY, dag_runner, dag_runner.sandbox, logged, day, dag_id="e2e_vertex_sql")


def test_requests_in_sql_false_keeps_the_worker_path_with_the_same_rows(dag_runner):
    emulator = dag_runner.emulator
    emulator.update_scenario(completion_seconds=1.0)
    day = next(dag_runner._dates)
    ids = seed_tickets(emulator, day)
    bigquery_of(emulator).rows_served.clear()

    result = dag_runner.sandbox.dags_test("e2e_vertex_sql_in_worker", day)

    assert "request(s) in BigQuery" not in result.stdout + result.stderr
    assert sum(source_reads(emulator).values()) == len(ids)  # the rows came through the worker once
    job_dir = dag_runner.job_dir("e2e_vertex_sql_in_worker", day)
    assert (job_dir / "requests" / "chunk-00000.jsonl").exists()
    assert not (job_dir / "requests" / "tables.json").exists()
    bq = bigquery_client(emulator)
    query = (
        f"SELECT id, status FROM `{GCP_PROJECT}.support_sql.ticket_labels` WHERE dag_id = 'e2e_vertex_sql_in_worker'"
    )
    assert sorted(r["id"] for r in bq.query(query).result()) == sorted(ids)


def vertex_creates(emulator):
    return [r for r in emulator.requests("vertex") if r["method"] == "POST" and r["path"].endswith("Jobs")]


def test_bad_rows_fail_the_submit_task_before_any_vertex_call(dag_runner):
    emulator = dag_runner.emulator
    day = next(dag_runner._dates)
    seed_tickets(emulator, day)

    result = dag_runner.sandbox.dags_test("e2e_vertex_sql_bad", day, check=False)

    output = result.stdout + result.stderr
    assert "InvalidInputError" in output
    assert "item 'S-000': id field 'ticket_id' is a duplicate" in output
    assert "item 'S-002': field 'body' is null; the prompt template uses {body}" in output
    assert vertex_creates(emulator) == []


def test_an_empty_day_is_a_clean_zero_item_run(dag_runner):
    emulator = dag_runner.emulator
    seed_tickets(emulator, "2020-02-02")  # nothing on the run's own day
    day = next(dag_runner._dates)

    result = dag_runner.sandbox.dags_test("e2e_vertex_sql", day)

    assert "Built 0 request(s) in BigQuery" in result.stdout + result.stderr
    summary = json.loads(dag_runner.xcoms("e2e_vertex_sql", day)[("results", "return_value")])
    assert summary["items"] == 0 and summary["batch_ids"] == [] and vertex_creates(emulator) == []


def _read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_retry_rounds_select_the_failed_requests_in_sql(dag_runner):
    emulator = dag_runner.emulator
    emulator.update_scenario(
        completion_seconds=1.0, item_errors={"server_error": 0.3, "invalid_request": 0.05}, invalid_output_rate=0.1
    )
    day = next(dag_runner._dates)
    ids = seed_tickets(emulator, day)
    bigquery_of(emulator).rows_served.clear()

    dag_runner.sandbox.dags_test("e2e_vertex_sql_retry", day)

    job_root = dag_runner.job_dir("e2e_vertex_sql_retry", day, task_id="classify.submit").parent
    final = _read(job_root / "final" / "final.jsonl")
    assert sorted(r["id"] for r in final) == sorted(ids)
    assert max(r["attempt"] for r in final) >= 2
    attempts = [_read(path) for path in sorted(job_root.glob("attempt-*/results/results.jsonl"))]
    for earlier, later in itertools.pairwise(attempts):
        retryable = {r["id"] for r in earlier if r["status"] == "failed" and r["retryable"]}
        assert {r["id"] for r in later} == retryable  # never a permanent failure, never a success
    roots = [p.parent.parent for p in sorted(job_root.glob("attempt-*/results/results.jsonl"))]
    assert all((root / "requests" / "tables.json").exists() for root in roots)  # every round in SQL
    assert not list(job_root.glob("attempt-*/requests/chunk-?????.jsonl"))  # no request line in the work dir
    assert source_reads(emulator) == {}
    ledger = emulator.ledger()
    assert ledger["duplicate_batches"] == [] and len(ledger["batches"]) == len(attempts)


def test_the_example_date_works_for_a_manual_run_without_a_logical_date():
    from airflow.sdk import DAG

    from tests.e2e.dags import e2e_vertex_sql

    dag = DAG("render_probe", schedule=None, start_date=e2e_vertex_sql.START)
    template = dag.get_template_env().from_string(e2e_vertex_sql.QUERY)
    run_after = datetime.datetime(2026, 3, 4, 5, 6, tzinfo=datetime.UTC)
    manual = template.render(dag_run=types.SimpleNamespace(logical_date=None, run_after=run_after))
    scheduled = template.render(
        dag_run=types.SimpleNamespace(
            logical_date=datetime.datetime(2026, 3, 3, tzinfo=datetime.UTC), run_after=run_after
        )
    )
    assert "DATE '2026-03-04'" in manual and "DATE '2026-03-03'" in scheduled
