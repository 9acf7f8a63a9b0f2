"""Emulated Vertex AI batchPredictionJobs over BigQuery tables, through the real google-genai and
google-cloud-bigquery clients."""

from __future__ import annotations

import google.oauth2.credentials
import pytest
from google import genai
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery
from google.genai import errors, types

from airflow_llm_batch.emulator import Emulator

PROJECT = "test-project"


@pytest.fixture
def bq(emu: Emulator) -> bigquery.Client:
    client = bigquery.Client(
        project=PROJECT, credentials=AnonymousCredentials(), client_options={"api_endpoint": emu.bigquery_url}
    )
    client.create_dataset("d")
    schema = [bigquery.SchemaField("key", "STRING"), bigquery.SchemaField("request", "JSON")]
    requests = [
        {"key": f"k{i}", "request": {"contents": [{"role": "user", "parts": [{"text": f"ticket {i}"}]}]}}
        for i in range(10)
    ]
    client.load_table_from_json(requests, f"{PROJECT}.d.requests", job_config=bigquery.LoadJobConfig(schema=schema))
    yield client
    client.close()


@pytest.fixture
def vertex(emu: Emulator) -> genai.Client:
    return genai.Client(
        vertexai=True,
        project=PROJECT,
        location="us-central1",
        credentials=google.oauth2.credentials.Credentials(token="token"),
        http_options=types.HttpOptions(base_url=emu.vertex_base_url),
    )


def create(vertex: genai.Client, dest: str = "bq://test-project.d.out", **labels: str):
    config = {"dest": dest, "display_name": "dn", "http_options": {"extra_body": {"labels": labels}}}
    return vertex.batches.create(model="gemini-2.5-flash", src="bq://test-project.d.requests", config=config)


def test_a_job_moves_through_the_states_and_writes_the_output_table(emu, bq, vertex):
    emu.set_scenario(completion_seconds=100, item_errors={"rate_limited": 0.3})
    job = create(vertex, job_key="abc")
    assert job.state == "JOB_STATE_PENDING" and job.name.startswith(f"projects/{PROJECT}/locations/us-central1/")
    emu.advance(50)
    running = vertex.batches.get(name=job.name)
    assert running.state == "JOB_STATE_RUNNING" and 0 < int(running.completion_stats.successful_count or 0) < 10
    emu.advance(60)
    done = vertex.batches.get(name=job.name)
    assert done.state == "JOB_STATE_SUCCEEDED" and done.dest.bigquery_uri == "bq://test-project.d.out"
    assert done.output_info.bigquery_output_table == "out"
    out = [dict(row) for row in bq.list_rows(f"{PROJECT}.d.out")]
    assert [r["key"] for r in out] == [f"k{i}" for i in range(10)]
    assert {"key", "request", "response", "status"} == set(out[0])
    failed = [r for r in out if r["status"]]
    assert failed and all(r["response"] is None and '"code": 429' in r["status"] for r in failed)
    ok = [r for r in out if not r["status"]]
    assert all(r["response"]["candidates"][0]["content"]["parts"][0]["text"] for r in ok)
    assert int(done.completion_stats.failed_count) == len(failed)
    assert emu.ledger()["batches"][0]["job_key"] == "abc"


def test_list_filters_on_labels_and_cancel_keeps_the_rows_done(emu, bq, vertex):
    emu.set_scenario(completion_seconds=100)
    first, second = create(vertex, job_key="a"), create(vertex, "bq://test-project.d.out2", job_key="b")
    listed = list(vertex.batches.list(config={"filter": 'labels.job_key="b"'}))
    assert [j.name for j in listed] == [second.name]
    emu.advance(55)
    vertex.batches.cancel(name=first.name)
    cancelled = vertex.batches.get(name=first.name)
    assert cancelled.state == "JOB_STATE_CANCELLED"
    assert 0 < bq.get_table(f"{PROJECT}.d.out").num_rows < 10


def test_bad_input_tables_and_an_existing_output_table_are_refused(emu, bq, vertex):
    bq.query("CREATE TABLE `test-project.d.bad` AS SELECT 1 AS x").result()
    config = {"dest": "bq://test-project.d.o"}
    with pytest.raises(errors.ClientError, match="needs a 'request' column"):
        vertex.batches.create(model="gemini-2.5-flash", src="bq://test-project.d.bad", config=config)
    with pytest.raises(errors.ClientError, match="Not found"):
        vertex.batches.create(model="gemini-2.5-flash", src="bq://test-project.d.none", config=config)
    emu.set_scenario(completion_seconds=0)
    assert create(vertex).state == "JOB_STATE_SUCCEEDED"  # ended at once: d.out is written
    with pytest.raises(errors.ClientError, match="already exists"):
        create(vertex)
