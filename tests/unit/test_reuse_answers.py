"""What Submit and Results do with the reuse store (``batch/reuse_answers.py``)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from airflow_llm_batch.batch import jsonl
from airflow_llm_batch.batch.manifest import BatchEntry, Manifest
from airflow_llm_batch.batch.records import ItemResult, JobKey
from airflow_llm_batch.batch.reuse import Fingerprints, ReuseLookup, ReuseSettings, request_key
from airflow_llm_batch.batch.reuse_answers import open_lookup, store_answers, store_of
from airflow_llm_batch.batch.reuse_store import list_segments, write_segment
from airflow_llm_batch.batch.state import JobLayout

KEY = request_key("openai", "chat", None)
JOB = JobKey("nightly", "submit", "scheduled__2026-03-02", -1)


def _line(item_id: str) -> bytes:
    return jsonl.dumps({"custom_id": item_id, "body": {"model": "m", "messages": [{"content": item_id}]}})


def _attempt(tmp_path, rows: list[ItemResult], attempt: int = 1) -> tuple[Manifest, JobLayout]:
    """One attempt's request chunk (every row's id) and results file, as Submit and Results leave them."""
    layout = JobLayout(tmp_path / f"attempt-{attempt}")
    layout.requests_dir.mkdir(parents=True)
    with jsonl.JsonlWriter(layout.chunk_file(0)) as lines, jsonl.JsonlWriter(layout.ids_file(0)) as ids:
        for row in rows:
            lines.write_bytes(_line(row.id))
            ids.write([row.id, row.id])
    layout.results_dir.mkdir()
    with jsonl.JsonlWriter(layout.results_dir / "results.jsonl") as results:
        for row in rows:
            results.write_bytes(jsonl.dumps(row))
    reuse = {"store": str(tmp_path / "store"), "key": KEY.hex(), "max_age_seconds": None, "items": 0}
    manifest = Manifest(
        job_key=JOB,
        provider="openai",
        conn_id="c",
        model="m",
        kind="chat",
        work_uri=str(layout.root),
        attempt=attempt,
        item_count=len(rows),
        batches=[BatchEntry("batch_1", 0, len(rows))],
        submitted_at=0.0,
        deadline=0.0,
        extra={"reuse": reuse},
    )
    return manifest, layout


def test_only_succeeded_answers_of_this_attempt_are_stored(tmp_path):
    rows = [
        ItemResult("ok", "succeeded", text='{"a": 1}', json={"a": 1}, batch_id="batch_1"),
        ItemResult("broke-the-schema", "failed", text="{", error_type="invalid_output", batch_id="batch_1"),
        ItemResult("server-error", "failed", error_type="server_error", retryable=True, batch_id="batch_1"),
        ItemResult("reused", "succeeded", text="old", batch_id="batch_0", reused_from="earlier/attempt-1"),
    ]
    manifest, layout = _attempt(tmp_path, rows)
    assert store_answers(manifest, layout, layout.results_dir / "results.jsonl", lambda uri: tmp_path / "store") == 1
    [segment] = list_segments(tmp_path / "store", None)
    assert segment.reused_from == "scheduled__2026-03-02/attempt-1" and segment.rows == 1
    lookup = ReuseLookup(tmp_path / "store", ReuseSettings(), KEY)
    assert lookup.reused_all([_line("ok"), _line("broke-the-schema"), _line("server-error")]) == [True, False, False]


def test_a_store_that_cannot_be_written_is_reported_and_the_task_goes_on(tmp_path, caplog):
    manifest, layout = _attempt(tmp_path, [ItemResult("ok", "succeeded", batch_id="batch_1")])
    (tmp_path / "store").write_text("a file where the folder should be")
    assert store_answers(manifest, layout, layout.results_dir / "results.jsonl", lambda uri: tmp_path / "store") == 0
    assert "could not be stored in the reuse store" in caplog.text


def test_a_retry_of_submit_looks_up_in_the_segments_its_first_try_saw(tmp_path):
    store = store_of(tmp_path, JOB)
    assert str(store).endswith("_reuse/nightly/submit")
    fingerprint = Fingerprints(KEY)
    row = jsonl.dumps(ItemResult("a", "succeeded"))
    write_segment(store, "night-1/attempt-1", [(fingerprint(_line("a")), row)])
    layout = JobLayout(tmp_path / "run" / "attempt-1")
    first_try = open_lookup(layout, store, ReuseSettings(), KEY)
    # Meanwhile another run stores an answer for "b": the retry must leave out what the first try did.
    write_segment(store, "other-run/attempt-1", [(fingerprint(_line("b")), jsonl.dumps(ItemResult("b", "succeeded")))])
    retry = open_lookup(layout, store, ReuseSettings(), KEY)
    assert first_try.reused_all([_line("a"), _line("b")]) == retry.reused_all([_line("a"), _line("b")]) == [True, False]
    # A dry run pins nothing: a later lookup of another attempt sees every segment.
    dry = open_lookup(JobLayout(tmp_path / "dry" / "attempt-1"), store, ReuseSettings(), KEY, pin=False)
    assert dry.reused_all([_line("a"), _line("b")]) == [True, True]
    assert not (tmp_path / "dry" / "attempt-1" / "reuse.json").exists()


def test_the_operator_refuses_a_reuse_it_cannot_read_when_the_dag_is_parsed():
    from airflow_llm_batch.exceptions import ConfigurationError
    from airflow_llm_batch.operators.submit import LLMBatchSubmitOperator

    common = {"items": [], "model": "gpt-4.1-mini", "prompt_template": "{text}"}
    for good in (True, timedelta(days=30), {"max_age": timedelta(days=30)}, None):
        LLMBatchSubmitOperator(task_id="ok", reuse=good, **common)
    with pytest.raises(ConfigurationError, match="reuse must be True, a timedelta"):
        LLMBatchSubmitOperator(task_id="bad", reuse="30 days", **common)


def test_a_reuse_table_needs_a_bigquery_sink_after_the_submit_task():
    import pendulum
    from airflow.sdk import DAG

    from airflow_llm_batch.exceptions import ConfigurationError
    from airflow_llm_batch.io.bigquery import GoogleSettings
    from airflow_llm_batch.io.bigquery_sink import BigQuerySink
    from airflow_llm_batch.operators.results import LLMBatchResultsOperator
    from airflow_llm_batch.operators.submit import LLMBatchSubmitOperator

    common = {"items": [], "model": "gpt-4.1-mini", "prompt_template": "{text}"}
    reuse = {"max_age": timedelta(days=30), "table": "ds.llm_batch_reuse"}
    with pytest.raises(ConfigurationError, match="typo: reuse= takes only 'max_age' and 'table', not 'tabel'"):
        ReuseSettings.coerce({"tabel": "ds.t"}, "typo")
    assert ReuseSettings.coerce(reuse) == ReuseSettings(30 * 86400.0, "ds.llm_batch_reuse")
    with DAG("no_sink", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):
        submit = LLMBatchSubmitOperator(task_id="submit", reuse=reuse, **common)
        submit >> LLMBatchResultsOperator(task_id="results", manifest=submit.output)
    with pytest.raises(ConfigurationError, match=r"submit: reuse 'table' \('ds.llm_batch_reuse'\).*no task after"):
        submit._reuse_table("ds.llm_batch_reuse", JOB)

    settings = GoogleSettings(project="proj", bigquery_endpoint="http://127.0.0.1:1", token="t")
    with DAG("with_sink", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):
        submit = LLMBatchSubmitOperator(task_id="submit", reuse=reuse, **common)
        sink = BigQuerySink("ds.labels", conn_id="bq", settings=settings)
        submit >> LLMBatchResultsOperator(task_id="results", manifest=submit.output, sink=sink)
    table = submit._reuse_table("ds.llm_batch_reuse", JOB)  # no API call: the table is read at the lookup
    assert (table.table, table.conn_id, table.dag_id, table.task_id) == (
        "proj.ds.llm_batch_reuse",
        "bq",
        "nightly",
        "submit",
    )


def test_llm_batch_step_passes_its_sink_to_final_where_a_reuse_table_finds_it():
    import pendulum
    from airflow.sdk import DAG

    from airflow_llm_batch.io.bigquery import GoogleSettings
    from airflow_llm_batch.io.bigquery_sink import BigQuerySink
    from airflow_llm_batch.task_group import llm_batch_step

    settings = GoogleSettings(project="proj", bigquery_endpoint="http://127.0.0.1:1", token="t")
    sink = BigQuerySink("ds.labels", conn_id="bq", settings=settings)
    with DAG("step", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")) as dag:
        llm_batch_step(
            "triage",
            items=[],
            model="gpt-4.1-mini",
            prompt_template="{text}",
            reuse={"table": "ds.llm_batch_reuse"},
            sink=sink,
        )
    assert dag.task_dict["triage.final"].sink is sink
    table = dag.task_dict["triage.submit"]._reuse_table("ds.llm_batch_reuse", JOB)
    assert (table.table, table.conn_id) == ("proj.ds.llm_batch_reuse", "bq")


def test_a_transaction_cancelled_for_another_writer_is_run_again(monkeypatch):
    import airflow_llm_batch.batch.reuse_table as reuse_table
    from airflow_llm_batch.io.bigquery import GoogleSettings

    class Client:  # what BigQuery does when two transactions mutate one table: cancels one
        def __init__(self, conflicts: int) -> None:
            self.conflicts, self.runs = conflicts, 0

        def query(self, script, job_config):
            self.runs += 1
            if self.runs <= self.conflicts:
                raise RuntimeError("Could not serialize access to table p.d.t due to concurrent update")
            return self

        def result(self):
            return []

    monkeypatch.setattr(reuse_table, "_CONFLICT_WAIT", 0.0)
    table = reuse_table.ReuseTable(GoogleSettings(project="p"), "p.d.t", "dag", "task")
    table._client = Client(conflicts=2)
    table._run_replacing("BEGIN TRANSACTION; ...", None)
    assert table._client.runs == 3
    table._client = Client(conflicts=99)
    with pytest.raises(RuntimeError, match="concurrent update"):
        table._run_replacing("BEGIN TRANSACTION; ...", None)
    assert table._client.runs == reuse_table._CONFLICT_TRIES
