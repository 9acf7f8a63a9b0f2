"""The work dir on an object store: real DAG runs (`airflow dags test`) whose work dir is
``s3://aws_default@bucket/work`` on a moto S3 server, through Airflow's ObjectStoragePath and the
Amazon provider's s3fs filesystem, nothing on local disk.

The fault matrix's idempotency rows (a crashed or retried submit re-attaches through the state file
in S3, pays nothing twice) and a run with retry rounds, checked as on a local work dir.
"""

from __future__ import annotations

import json

import pytest

from tests.e2e import test_retry_rounds
from tests.e2e.test_fault_matrix import SCENARIOS, check_promise
from tests.e2e.test_state_store import HAS_TASK_STATE_STORE

IDEMPOTENCY_ROWS = [
    "submit crashes after the batch was recorded, before its XCom",
    "submit crashes between the create call and the state record",
    "task retry after create failed for good on its first try",
]
# One provider per row keeps CI's time down: what S3 changes (the state file's reads and writes
# through s3fs) is the same for every provider; each row runs on every provider on a local work dir
# (tests/e2e/test_fault_matrix.py). Anthropic (no tags) re-attaches through the state file alone,
# Gemini's lost create response is found by its tag, OpenAI's failed first try leaves an intent.
CASES = [
    pytest.param(name, provider, id=f"{provider}-{name.split(',')[0].replace(' ', '_')}")
    for name, provider in zip(IDEMPOTENCY_ROWS, ("anthropic", "gemini", "openai"), strict=True)
]


@pytest.mark.parametrize(("scenario", "provider"), CASES)
def test_a_crashed_or_retried_submit_reattaches_through_the_state_file_in_s3(
    s3_dag_runner, moto_s3, scenario, provider
):
    fields, crash, _ = SCENARIOS[scenario]
    emulator = s3_dag_runner.emulator
    emulator.update_scenario(completion_seconds=1.0, **fields)
    seen = len(moto_s3.requests())
    logical_date, run = s3_dag_runner.run("e2e_faults", env={"E2E_PROVIDER": provider, "E2E_CRASH": crash})
    assert_no_listing(moto_s3.requests()[seen:])
    job_root = s3_dag_runner.job_dir("e2e_faults", logical_date, task_id="step.submit").parent
    assert str(job_root).startswith("s3://")
    # The job's record: on Airflow 3.3+ in the Task State Store (docs/reliability.md), else state.json in
    # S3; the request files and the writer lease (an S3 conditional write, released) are in S3 either way.
    assert (job_root / "attempt-1" / "state.json").exists() != HAS_TASK_STATE_STORE
    assert (job_root / "attempt-1" / "requests").exists()
    assert not (job_root / "attempt-1" / "writer.lease").exists()
    check_promise(emulator, scenario, provider, job_root, run)


def assert_no_listing(requests):
    """No directory listing during the run: fsspec caches listings per filesystem, and a listing cached
    before another worker wrote a file makes that file look absent (airflow_llm_batch/work_dir.py).

    The one ListObjects call allowed is s3fs's probe of a missing key (``max-keys=1``, in ``_info``
    after a 404 on HEAD: is it a folder?), which s3fs does not cache; ``ls``/``glob``/``iterdir``
    list without it (s3fs ``_lsdir``) and fill the cache.
    """
    assert requests, "the run made no S3 request: the work dir is not on the moto server"
    listings = [r for r in requests if "list-type=" in r and "max-keys=1&" not in r]
    assert listings == []
    probes = [r for r in requests if "list-type=" in r and "max-keys=1&" in r]
    assert len(probes) < len(requests) / 2  # the probe stays the exception (a missing state file)


def test_retry_rounds_with_the_work_dir_in_s3(s3_dag_runner, moto_s3):
    s3_dag_runner.emulator.update_scenario(
        completion_seconds=1.0, item_errors={"server_error": 0.25, "invalid_request": 0.05}, invalid_output_rate=0.1
    )
    seen = len(moto_s3.requests())
    logical_date, _ = s3_dag_runner.run("e2e_retry_rounds", env={"E2E_PROVIDER": "openai"})
    assert_no_listing(moto_s3.requests()[seen:])
    test_retry_rounds.check_retry_rounds(s3_dag_runner, logical_date, "openai")


def test_the_example_export_writes_into_the_work_dir_the_connection_names(s3_dag_runner, moto_s3, tmp_path):
    """The work dir named by the connection (S3) wins over ``[llm_batch] work_dir`` (a local folder
    here) for the export stand-in as for the submit task: nothing lands on the worker's disk."""
    sandbox = s3_dag_runner.sandbox
    connection = json.loads(sandbox.env["AIRFLOW_CONN_LLM_BATCH_OPENAI"])
    connection["extra"] = {**connection.get("extra", {}), "work_dir": f"s3://aws_default@{moto_s3.bucket}/by-conn"}
    local = tmp_path / "local-work-dir"
    env = {"AIRFLOW_CONN_LLM_BATCH_OPENAI": json.dumps(connection), "AIRFLOW__LLM_BATCH__WORK_DIR": str(local)}
    logical_date, _ = s3_dag_runner.run("nightly_ticket_triage", env=env)
    run_folder = (
        moto_s3.path("by-conn")
        / "nightly_ticket_triage"
        / _safe(s3_dag_runner.run_id("nightly_ticket_triage", logical_date))
    )
    tickets = (run_folder / "export_tickets" / "tickets.jsonl").read_text().splitlines()
    results = (run_folder / "submit" / "attempt-1" / "results" / "results.jsonl").read_text().splitlines()
    assert len(tickets) == len(results) == 200
    assert not local.exists(), "something was written to the local work dir"


def _safe(run_id):
    from airflow_llm_batch.batch.records import JobKey

    return JobKey("d", "t", run_id).path_parts()[1]


def test_reuse_across_nights_with_the_store_in_s3(s3_dag_runner, moto_s3):
    """``reuse=`` on an object store: night 2 pays only for its changed tickets; the store's segments
    are in S3, written whole (no temporary name left) and read back by the next night."""
    from tests.e2e.test_reuse import _changed_on, _tickets

    emulator = s3_dag_runner.emulator
    emulator.update_scenario(completion_seconds=1.0, item_errors={})
    all_ids = {t["ticket_id"] for t in _tickets(1)}
    billed = []
    for night in (1, 2):
        before = len(emulator.ledger()["billed"])
        logical_date, _ = s3_dag_runner.run("e2e_reuse", env={"E2E_NIGHT": str(night)})
        billed.append(sorted(item["custom_id"] for item in emulator.ledger()["billed"][before:]))
    assert billed == [sorted(all_ids), sorted(_changed_on(2))]
    store = moto_s3.path("work/_reuse/e2e_reuse/triage.submit")
    names = sorted(path.name for path in store.iterdir())
    assert len(names) == 2 and all(name.startswith("segment-") and name.endswith(".parquet") for name in names)
    final = s3_dag_runner.job_dir("e2e_reuse", logical_date, task_id="triage.submit").parent / "final" / "final.jsonl"
    rows = [json.loads(line) for line in final.read_text().splitlines()]
    assert sorted(r["id"] for r in rows) == sorted(all_ids)
    assert {r["id"] for r in rows if r["reused_from"]} == all_ids - _changed_on(2)
