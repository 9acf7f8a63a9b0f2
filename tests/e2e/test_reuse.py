"""Issue #16, reuse under real Airflow: night after night, only the changed tickets are paid for."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from tests.e2e.conftest import TEST_DAGS

pytestmark = pytest.mark.e2e

DAG_ID = "e2e_reuse"


def _tickets(night):
    import importlib.util
    import sys

    sys.path.insert(0, str(TEST_DAGS.parent.parent.parent / "dags_examples"))
    try:
        spec = importlib.util.spec_from_file_location("e2e_reuse_dag", TEST_DAGS / "e2e_reuse.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.pop(0)
    return module.tickets(night)


def _night(dag_runner, night, output=None):
    billed_before = len(dag_runner.emulator.ledger()["billed"])
    logical_date, run = dag_runner.run(DAG_ID, env={"E2E_NIGHT": str(night)})
    if output is not None:
        output.append(run.stdout + run.stderr)
    billed = [item["custom_id"] for item in dag_runner.emulator.ledger()["billed"][billed_before:]]
    root = dag_runner.job_dir(DAG_ID, logical_date, task_id="triage.submit").parent
    final = [json.loads(line) for line in (root / "final" / "final.jsonl").read_text().splitlines()]
    xcoms = dag_runner.xcoms(DAG_ID, logical_date)
    summary = json.loads(xcoms[("triage.final", "return_value")])
    return logical_date, billed, final, summary


def _batch_creates(emulator):
    return len([r for r in emulator.requests("openai") if r["method"] == "POST" and r["path"].endswith("/batches")])


def _changed_on(night):
    return {t["ticket_id"] for n, t in enumerate(_tickets(night)) if n % 10 == night % 10}


def test_each_night_pays_only_for_the_changed_tickets_even_through_a_retry_round(dag_runner):
    emulator = dag_runner.emulator
    emulator.update_scenario(completion_seconds=1.0)
    all_ids = {t["ticket_id"] for t in _tickets(1)}

    night_1, billed, final, _ = _night(dag_runner, 1)
    assert sorted(billed) == sorted(all_ids)
    assert not [r for r in final if r["reused_from"]]

    # Night 2: a tenth of the tickets changed; the provider sees and bills those 20 only.
    night_2, billed, final, summary = _night(dag_runner, 2)
    assert sorted(billed) == sorted(_changed_on(2)) and len(billed) == 20
    assert Counter(r["id"] for r in final) == Counter(all_ids)  # one row per ticket
    reused = [r for r in final if r["reused_from"]]
    assert {r["id"] for r in reused} == all_ids - _changed_on(2)
    assert {r["reused_from"] for r in reused} == {f"{dag_runner.run_id(DAG_ID, night_1)}/attempt-1"}
    assert all(r["status"] == "succeeded" and r["json"]["category"] for r in final)
    assert summary["cost"]["reused_items"] == 180 and summary["cost"]["saved"] > 0
    assert summary["cost"]["billed_items"] == 20

    # Night 3: another tenth changed, and the provider fails some of them first: a retry round asks
    # again for those only, and its answers are stored like the first round's.
    emulator.update_scenario(completion_seconds=1.0, item_errors={"server_error": 0.3})
    night_3, billed, final, summary = _night(dag_runner, 3)
    assert Counter(r["id"] for r in final) == Counter(all_ids)
    assert {r["id"] for r in final if not r["reused_from"]} == _changed_on(3)
    retried = {r["id"] for r in final if not r["reused_from"] and r["attempt"] >= 2}
    assert retried, "the scenario must fail some items in the first round"
    answered_3 = {r["id"] for r in final if not r["reused_from"] and r["status"] == "succeeded"}
    assert Counter(billed) == Counter(answered_3)  # each answer billed once; nothing unchanged asked
    from_night_2 = {r["id"] for r in final if r["reused_from"] == f"{dag_runner.run_id(DAG_ID, night_2)}/attempt-1"}
    assert from_night_2 == _changed_on(2)

    # Night 3's input again: every answer is stored, the retry rounds' too, so only an item that
    # failed in every round (if any) is asked again, and answered now (no more failures).
    emulator.update_scenario(completion_seconds=1.0, item_errors={})
    _, billed, final, summary = _night(dag_runner, 3)
    assert sorted(billed) == sorted(_changed_on(3) - answered_3)
    assert Counter(r["id"] for r in final) == Counter(all_ids) and summary["failed"] == 0
    reused = {r["id"]: r["reused_from"] for r in final if r["reused_from"]}
    assert set(reused) == all_ids - (_changed_on(3) - answered_3)
    assert summary["cost"]["reused_items"] == len(reused)
    run_3 = dag_runner.run_id(DAG_ID, night_3)
    assert retried & answered_3 and all(reused[i] != f"{run_3}/attempt-1" for i in retried & answered_3)
    assert all(reused[i].startswith(f"{run_3}/attempt-") for i in retried & answered_3)

    # Once more: now every ticket is answered from the store, and with nothing to ask not a single
    # batch is created; the step still ends with one row per ticket.
    creates_before = _batch_creates(emulator)
    _, billed, final, summary = _night(dag_runner, 3)
    assert billed == [] and _batch_creates(emulator) == creates_before
    assert Counter(r["id"] for r in final) == Counter(all_ids) and all(r["reused_from"] for r in final)
    assert summary["cost"]["reused_items"] == 200 and summary["cost"]["billed_items"] == 0

    # A damaged store loses no run: its segments are reported and left out, and every ticket is asked.
    store = dag_runner.sandbox.work_dir / "_reuse" / DAG_ID / "triage.submit"
    segments = sorted(store.glob("segment-*.parquet"))
    assert len(segments) >= 4  # night 1, night 2, night 3's first round and its retry round(s)
    for segment in segments:
        segment.write_bytes(segment.read_bytes()[:100])
    output = []
    _, billed, final, summary = _night(dag_runner, 3, output)
    assert sorted(billed) == sorted(all_ids)
    assert Counter(r["id"] for r in final) == Counter(all_ids) and not [r for r in final if r["reused_from"]]
    assert "cannot be read" in output[0] and summary["cost"]["reused_items"] == 0


def test_with_a_bigquery_store_and_sink_reused_rows_reach_the_table_marked_and_once_per_ticket(dag_runner):
    from tests.e2e.conftest import GCP_PROJECT, bigquery_client

    emulator = dag_runner.emulator
    emulator.update_scenario(completion_seconds=1.0, item_errors={})
    bq = bigquery_client(emulator)
    bq.create_dataset("reuse")
    ids = {t["ticket_id"] for t in _tickets(1)[:50]}
    changed = ids & _changed_on(2)

    tables = []
    for night in (1, 2):
        billed_before = len(emulator.ledger()["billed"])
        logical_date, _ = dag_runner.run("e2e_reuse_bigquery", env={"E2E_NIGHT": str(night)})
        billed = [item["custom_id"] for item in emulator.ledger()["billed"][billed_before:]]
        run_id = dag_runner.run_id("e2e_reuse_bigquery", logical_date)
        query = f"SELECT * FROM `{GCP_PROJECT}.reuse.ticket_labels` WHERE run_id = '{run_id}'"
        tables.append((run_id, billed, [dict(row) for row in bq.query(query).result()]))
    (night_1, _, _), (_, billed, rows) = tables
    assert sorted(billed) == sorted(changed) and changed
    assert Counter(r["id"] for r in rows) == Counter(ids)
    assert {r["id"] for r in rows if r["reused_from"]} == ids - changed
    assert {r["reused_from"] for r in rows if r["reused_from"]} == {f"{night_1}/attempt-1"}
    assert all(r["status"] == "succeeded" and r["category"] for r in rows)  # typed columns filled too
    # The answers are kept in the BigQuery table, not the work dir: 50 from night 1, the changed from night 2.
    store = f"SELECT reused_from, COUNT(*) AS n FROM `{GCP_PROJECT}.reuse.llm_batch_reuse` GROUP BY reused_from"
    assert {r["reused_from"]: r["n"] for r in bq.query(store).result()} == {
        f"{night_1}/attempt-1": 50,
        f"{tables[1][0]}/attempt-1": len(changed),
    }
    assert not (dag_runner.sandbox.work_dir / "_reuse" / "e2e_reuse_bigquery").exists()
