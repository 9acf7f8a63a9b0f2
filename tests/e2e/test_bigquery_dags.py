"""BigQuery in, labels out: the two BigQuery examples under real Airflow, real google-cloud-bigquery
and google-genai clients, against the emulator."""

from __future__ import annotations

import pytest
from google.cloud import bigquery

from tests.e2e.conftest import GCP_PROJECT, bigquery_client

pytestmark = pytest.mark.e2e


def seed(bq: bigquery.Client, table: str, schema: list[bigquery.SchemaField], rows: list[dict]) -> None:
    bq.load_table_from_json(rows, table, job_config=bigquery.LoadJobConfig(schema=schema)).result()


def seed_tickets(bq: bigquery.Client, day: str) -> set[str]:
    """Tickets of the run's day and of the day before (which the query must leave out)."""
    bq.create_dataset("support")
    schema = [
        bigquery.SchemaField("ticket_id", "STRING"),
        bigquery.SchemaField("subject", "STRING"),
        bigquery.SchemaField("body", "STRING"),
        bigquery.SchemaField("created_date", "DATE"),
    ]
    rows = [
        {
            "ticket_id": f"T-{n:03d}",
            "subject": "Charged twice",
            "body": f"ticket {n} says {{{{ ds }}}}",
            "created_date": day,
        }
        for n in range(40)
    ]
    rows += [{"ticket_id": "T-old", "subject": "Old", "body": "old", "created_date": "2020-01-01"}]
    seed(bq, f"{GCP_PROJECT}.support.tickets", schema, rows)
    return {row["ticket_id"] for row in rows if row["created_date"] == day}


def uploads(emulator) -> int:
    """Load jobs received (each starts with a POST to the upload path)."""
    return sum(1 for r in emulator.requests("bigquery") if "/upload/" in r["path"] and r["method"] == "POST")


def labels(bq: bigquery.Client, table: str) -> list[dict]:
    return [dict(row) for row in bq.query(f"SELECT * FROM `{GCP_PROJECT}.{table}`").result()]


def test_query_in_labels_table_out_and_a_rerun_replaces_the_runs_rows(dag_runner, sandbox):
    emulator = dag_runner.emulator
    emulator.update_scenario(completion_seconds=1.0)
    bq = bigquery_client(emulator)
    day = next(dag_runner._dates)  # this run's own logical date: the tickets are seeded for it
    ids = seed_tickets(bq, day)
    env = {"LLM_BATCH_BQ_TRIAGE_CONN_ID": "llm_batch_gemini", "LLM_BATCH_BQ_TRIAGE_MODEL": "gemini-2.5-flash"}
    sandbox.dags_test("nightly_bigquery_triage", day, env=env)

    rows = labels(bq, "support.ticket_labels")
    assert sorted(r["id"] for r in rows) == sorted(ids)  # one row per source id, yesterday's left out
    run_id = dag_runner.run_id("nightly_bigquery_triage", day)
    assert {(r["dag_id"], r["run_id"], r["task_id"], r["attempt"]) for r in rows} == {
        ("nightly_bigquery_triage", run_id, "results", 1)
    }
    succeeded = [r for r in rows if r["status"] == "succeeded"]
    assert succeeded and all(r["json"]["category"] == r["category"] and r["priority"] for r in succeeded)

    # The Results task once more for the same run: its rows are replaced, not added.
    loads_before = uploads(emulator)
    rerun = sandbox.airflow("tasks", "test", "nightly_bigquery_triage", "results", run_id, env=env)
    assert uploads(emulator) == loads_before + 1 and "Wrote 40 rows" in rerun.stdout + rerun.stderr
    assert sorted(r["id"] for r in labels(bq, "support.ticket_labels")) == sorted(ids)


def test_vertex_reads_and_writes_bigquery_one_row_per_document(dag_runner):
    emulator = dag_runner.emulator
    emulator.update_scenario(completion_seconds=1.0, item_errors={"server_error": 0.1})
    bq = bigquery_client(emulator)
    bq.create_dataset("content")
    bq.create_dataset("llm_batch")
    schema = [bigquery.SchemaField(name, "STRING") for name in ("doc_id", "title", "text", "author")]
    docs = [
        {"doc_id": f"D-{n}", "title": f"Doc {n}", "text": f"Text of document {n}.", "author": "x"} for n in range(30)
    ]
    seed(bq, f"{GCP_PROJECT}.content.documents", schema, docs)

    dag_runner.run("vertex_bigquery_batch")

    rows = labels(bq, "content.document_summaries")
    assert sorted(r["id"] for r in rows) == sorted(d["doc_id"] for d in docs)
    assert {r["provider"] for r in rows} == {"vertex"}
    failed = [r for r in rows if r["status"] == "failed"]
    assert failed and all(r["error_type"] == "server_error" and r["retryable"] for r in failed)
    assert all(r["text"].startswith("Summary") for r in rows if r["status"] == "succeeded")
    batches = emulator.ledger()["batches"]
    assert batches and all(b["provider"] == "vertex" and b["job_key"] for b in batches)
