"""The reuse store in a BigQuery table (``batch/reuse_table.py``): the real google-cloud-bigquery
client against the emulator stores answers, looks them up, ages them, replaces a retried
attempt's rows, pins a Submit retry and treats an unreadable table as empty."""

from __future__ import annotations

import logging
import time

import pytest

from airflow_llm_batch.batch import jsonl
from airflow_llm_batch.batch.manifest import BatchEntry, Manifest
from airflow_llm_batch.batch.records import ItemResult, JobKey
from airflow_llm_batch.batch.reuse import Fingerprints, ReuseLookup, ReuseSettings, request_key
from airflow_llm_batch.batch.reuse_answers import open_lookup, store_answers
from airflow_llm_batch.batch.reuse_table import ReuseTable
from airflow_llm_batch.batch.state import JobLayout
from airflow_llm_batch.io.bigquery import GoogleSettings

PROJECT = "test-project"
TABLE = f"{PROJECT}.reuse.llm_batch_reuse"
KEY = request_key("openai", "chat", {"type": "object"})
fingerprint = Fingerprints(KEY)


def _line(item_id: str, text: str) -> bytes:
    return jsonl.dumps({"custom_id": item_id, "body": {"model": "m", "messages": [{"role": "user", "content": text}]}})


def _answers(items: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [
        (fingerprint(_line(i, text)), jsonl.dumps(ItemResult(id=i, status="succeeded", text=f"answer {text}")))
        for i, text in items.items()
    ]


@pytest.fixture
def settings(llm_batch_emulator) -> GoogleSettings:
    settings = GoogleSettings(project=PROJECT, bigquery_endpoint=llm_batch_emulator.bigquery_url, token="token")
    client = settings.bigquery_client()
    client.create_dataset("reuse")
    client.close()
    return settings


def _table(settings, task_id="submit", dag_id="nightly") -> ReuseTable:
    return ReuseTable(settings, TABLE, dag_id, task_id, "google_cloud_default")


def _reused(table, lines, tmp_path, max_age=None, pinned=None):
    lookup = ReuseLookup(table, ReuseSettings(max_age), KEY, pinned)
    found = lookup.reused_all(lines)
    lookup.write_reused(tmp_path / "reused.jsonl")
    return found, list(jsonl.read_jsonl(tmp_path / "reused.jsonl"))


def _count(settings, where="TRUE") -> int:
    client = settings.bigquery_client()
    try:
        return next(iter(client.query(f"SELECT COUNT(*) AS n FROM `{TABLE}` WHERE {where}").result()))["n"]
    finally:
        client.close()


def test_stored_answers_are_found_exactly_newest_first_and_per_task(settings, tmp_path):
    table = _table(settings)
    assert table.write("night-1/attempt-1", _answers({"a": "one", "b": "two", "c": "three"}), now=time.time() - 60) == 3
    assert table.write("night-2/attempt-1", _answers({"a": "one", "d": "four"})) == 2
    _table(settings, task_id="other").write("x/attempt-1", _answers({"e": "five"}))

    lines = [_line("a", "one"), _line("b", "two, changed"), _line("c", "three"), _line("d", "four"), _line("e", "five")]
    found, rows = _reused(table, lines, tmp_path)
    assert found == [True, False, True, True, False]  # "e" is another task's answer
    assert {r["id"]: r["reused_from"] for r in rows} == {
        "a": "night-2/attempt-1",  # the newest answer of two
        "c": "night-1/attempt-1",
        "d": "night-2/attempt-1",
    }
    assert {r["id"]: r["text"] for r in rows} == {"a": "answer one", "c": "answer three", "d": "answer four"}
    assert _count(settings) == 6


def test_answers_older_than_max_age_are_asked_again(settings, tmp_path):
    table = _table(settings)
    table.write("old/attempt-1", _answers({"a": "one"}), now=time.time() - 3600)
    table.write("new/attempt-1", _answers({"b": "two"}))
    found, rows = _reused(table, [_line("a", "one"), _line("b", "two")], tmp_path, max_age=600)
    assert found == [False, True] and [r["reused_from"] for r in rows] == ["new/attempt-1"]


def test_a_retried_results_task_replaces_its_own_rows_never_adds_a_copy(settings, tmp_path):
    table = _table(settings)
    table.write("night-1/attempt-1", _answers({"a": "one", "b": "two"}))
    table.write("night-2/attempt-1", _answers({"c": "three"}))
    table.write("night-1/attempt-1", _answers({"a": "one", "b": "two"}))  # the retry of night 1's Results
    assert _count(settings) == 3
    assert _count(settings, "reused_from = 'night-1/attempt-1'") == 2
    found, rows = _reused(table, [_line("a", "one"), _line("b", "two"), _line("c", "three")], tmp_path)
    assert found == [True, True, True] and len(rows) == 3


def test_many_answers_over_several_pages_come_back_in_the_lookups_order(settings, tmp_path, monkeypatch):
    import airflow_llm_batch.batch.reuse_table as reuse_table

    monkeypatch.setattr(reuse_table, "_PAGE_ROWS", 7)  # pages end inside and between attempts
    table = _table(settings)
    for night in range(3):
        items = {f"n{night}-{i}": f"text {night} {i}" for i in range(10)}
        table.write(f"night-{night}/attempt-1", _answers(items), now=time.time() - 100 + night)
    lines = [_line(f"n{night}-{i}", f"text {night} {i}") for night in range(3) for i in range(0, 10, 3)]
    found, rows = _reused(table, lines, tmp_path)
    assert all(found)
    assert sorted((r["id"], r["reused_from"]) for r in rows) == sorted(
        (f"n{night}-{i}", f"night-{night}/attempt-1") for night in range(3) for i in range(0, 10, 3)
    )


@pytest.mark.parametrize("damage", ["missing", "another schema"])
def test_a_table_that_cannot_be_read_is_reported_and_everything_is_submitted(settings, tmp_path, caplog, damage):
    if damage == "another schema":
        client = settings.bigquery_client()
        client.query(f"CREATE TABLE `{TABLE}` (id STRING)").result()
        client.close()
    caplog.set_level(logging.WARNING)
    found, rows = _reused(_table(settings), [_line("a", "one")], tmp_path)
    assert found == [False] and rows == []
    assert "cannot be read" in caplog.text and "every item is submitted" in caplog.text


def test_results_store_only_succeeded_answers_and_a_failed_write_is_a_warning(settings, tmp_path, caplog):
    layout = JobLayout(tmp_path / "attempt-1")
    layout.requests_dir.mkdir(parents=True)
    rows = [
        ItemResult("ok", "succeeded", text="yes", batch_id="batch_1"),
        ItemResult("bad", "failed", text="{", error_type="invalid_output", batch_id="batch_1"),
    ]
    with jsonl.JsonlWriter(layout.chunk_file(0)) as lines, jsonl.JsonlWriter(layout.ids_file(0)) as ids:
        for row in rows:
            lines.write_bytes(_line(row.id, row.id))
            ids.write([row.id, row.id])
    layout.results_dir.mkdir()
    with jsonl.JsonlWriter(layout.results_dir / "results.jsonl") as out:
        for row in rows:
            out.write_bytes(jsonl.dumps(row))
    reuse = {"store": f"bq://{TABLE}", "key": KEY.hex(), "items": 0, "table": TABLE, "conn_id": "c"}
    reuse["scope"] = ["nightly", "submit"]
    manifest = Manifest(
        job_key=JobKey("nightly", "submit", "night-1", -1),
        provider="openai",
        conn_id="c",
        model="m",
        kind="chat",
        work_uri=str(layout.root),
        attempt=1,
        item_count=2,
        batches=[BatchEntry("batch_1", 0, 2)],
        submitted_at=0.0,
        deadline=0.0,
        extra={"reuse": reuse},
    )
    results = layout.results_dir / "results.jsonl"
    assert store_answers(manifest, layout, results, None, lambda r: _table(settings, *r["scope"][::-1])) == 1
    assert _count(settings, "reused_from = 'night-1/attempt-1' AND task_id = 'submit'") == 1

    def in_a_missing_dataset(reuse):
        return ReuseTable(settings, f"{PROJECT}.no_such_dataset.reuse", "nightly", "submit")

    assert store_answers(manifest, layout, results, None, in_a_missing_dataset) == 0
    assert "could not be stored in the reuse store" in caplog.text


def test_a_submit_retry_leaves_out_exactly_what_its_first_try_did(settings, tmp_path):
    table = _table(settings)
    table.write("night-1/attempt-1", _answers({"a": "one"}))
    layout = JobLayout(tmp_path / "run" / "attempt-1")
    first_try = open_lookup(layout, table, ReuseSettings(), KEY)
    assert jsonl.loads((layout.root / "reuse.json").read_bytes()) == {"segments": ["night-1/attempt-1"]}
    table.write("other-run/attempt-1", _answers({"b": "two"}))  # stored between the two tries
    retry = open_lookup(layout, _table(settings), ReuseSettings(), KEY)
    lines = [_line("a", "one"), _line("b", "two")]
    assert first_try.reused_all(lines) == retry.reused_all(lines) == [True, False]
    retry.write_reused(tmp_path / "reused.jsonl")
    assert [r["id"] for r in jsonl.read_jsonl(tmp_path / "reused.jsonl")] == ["a"]


def test_concurrent_runs_each_store_their_own_rows(settings, tmp_path):
    import threading

    errors = []

    def store(night: int) -> None:
        try:
            items = {f"n{night}-{i}": f"text {i}" for i in range(20)}
            _table(settings).write(f"night-{night}/attempt-1", _answers(items))
        except Exception as err:  # pragma: no cover - reported by the assertion below
            errors.append(err)

    threads = [threading.Thread(target=store, args=(night,)) for night in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert _count(settings) == 80 and _count(settings, "reused_from = 'night-2/attempt-1'") == 20
    lines = [_line(f"n{night}-{i}", f"text {i}") for night in range(4) for i in range(20)]
    found, rows = _reused(_table(settings), lines, tmp_path)
    assert all(found) and len(rows) == 80
