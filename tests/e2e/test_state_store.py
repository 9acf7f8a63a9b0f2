"""Where a job's record lives and what survives its loss: real DAG runs under a real scheduler.

On Airflow 3.3+ the submit task keeps its record in the task instance's Task State Store; on 3.1
and 3.2 in the work dir's ``state.json``. Every test runs on both lines and branches inside on
what the line offers (the oldest line is ``make test-oldest``):

- a submit task that crashed after creating its batches re-attaches on retry. On 3.3 its first try
  also deletes the job's folder (the retry runs as on another worker, no disk shared) and the test
  reads the record through the REST API; on 3.1 the work dir stays and the state file is read;
- the job's folder deleted between submit and results, then the run cleared: no batch created
  twice, no item billed twice (the emulator's ledger), on OpenAI and Gemini by their tags; on
  Anthropic (no tags) only where the record outlives the folder (3.3), else the documented limit;
- two runs with the same job key (two Airflow installations, one work dir, one run id) started
  together: one batch per chunk;
- waves under a queue quota: Submit creates the first wave and hands the pending chunks on; the
  sensor keeps its own record of later waves (3.3: the *sensor's* Task State Store, key
  ``llm_batch_waves``; 3.1: ``waves.json``). A sensor that dies after creating wave 2 re-attaches
  on retry, and clearing Submit after the hand-off creates no batch.

The module starts Airflow's components as separate processes (the triggerer restart test's
``ComponentStack``: API server, scheduler, DAG processor, triggerer on free 127.0.0.1 ports).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import airflow
import pytest
from packaging.version import Version

from airflow_llm_batch.emulator import Emulator, Scenario
from airflow_llm_batch.state_store import RECORD_KEY, WAVES_KEY
from airflow_llm_batch.testing import AirflowSandbox
from tests.e2e.conftest import TEST_DAGS
from tests.e2e.test_triggerer_restart import ComponentStack, _free_ports
from tests.ui.conftest import _wait_for_dag

pytestmark = pytest.mark.e2e

DAG_FILE = TEST_DAGS / "e2e_state_store.py"
IDS = sorted(f"S-{n:03d}" for n in range(60))
CHUNKS = 3
API_KEY = "state-store-test-key"
RUN_TIMEOUT_SECONDS = 240
BATCH_SECONDS = 12.0
# The Task State Store (AIP-103) arrived in Airflow 3.3.
HAS_TASK_STATE_STORE = Version(Version(airflow.__version__).base_version) >= Version("3.3")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComponentStack]:
    home = tmp_path_factory.mktemp("state-store-airflow-home")
    dags = home / "dags"
    dags.mkdir()
    shutil.copy(DAG_FILE, dags)
    # Batches that end fast enough to keep the module short, slow enough that the scheduler has seen
    # the sensor defer before its trigger fires (else Airflow takes the late "deferred" report of the
    # sensor's process for the end of its resumed try and fails it).
    emulator = Emulator(Scenario(completion_seconds=BATCH_SECONDS, api_key=API_KEY)).start()
    api_port, worker_log_port, trigger_log_port = _free_ports(3)
    airflow_stack = ComponentStack(
        home,
        dags,
        api_port,
        emulator,
        api_key=API_KEY,
        env={
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(worker_log_port),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(trigger_log_port),
        },
    )
    try:
        airflow_stack.start()
        yield airflow_stack
    finally:
        airflow_stack.stop()


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_crashed_submit_re_attaches_through_its_record(stack, provider):
    emulator = stack.emulator
    emulator.reset()
    dag_id, run_id = f"e2e_state_store_{provider}", f"crash_{provider}"
    # 3.3: the first try takes the job's folder with it, as a worker's local disk would.
    crash = "lose_work_dir" if HAS_TASK_STATE_STORE else "keep_work_dir"
    run = _run(stack, dag_id, run_id, {"crash": crash})
    assert run["state"] == "success", f"the run ended {run['state']}; see {stack.log_path}"
    submit = stack.request("GET", f"{_run_path(dag_id, run_id)}/taskInstances/submit")
    assert submit["try_number"] == 2, "the submit task did not crash and retry"

    manifest = _xcom(stack, dag_id, run_id, "submit")
    created = [b["batch_id"] for b in emulator.ledger()["batches"]]
    assert len(created) == CHUNKS and sorted(manifest_ids(manifest)) == sorted(created), "a batch was paid twice"

    record = _record(stack, dag_id, run_id, manifest)
    assert {c["state"] for c in record["chunks"].values()} == {"submitted"}
    assert sorted(c["batch_id"] for c in record["chunks"].values()) == sorted(created)
    # Re-attached through the record, not by a tag lookup (Anthropic has no tags at all).
    assert not any(c.get("recovered") for c in record["chunks"].values())
    assert sorted(r["id"] for r in _rows(stack, dag_id, run_id)) == IDS


@pytest.mark.parametrize("provider", ["openai", "gemini", "anthropic"])
def test_a_work_dir_lost_before_results_then_the_run_cleared_pays_nothing_twice(stack, provider):
    emulator = stack.emulator
    emulator.reset()
    dag_id, run_id = f"e2e_state_store_{provider}", f"lost_{provider}"
    run = _run(stack, dag_id, run_id, {"lose_work_dir_before_results": True})
    assert run["state"] == "failed", "the results task should have failed without the job's files"
    first_batches = [b["batch_id"] for b in emulator.ledger()["batches"]]
    assert len(first_batches) == CHUNKS

    stack.request(
        "POST",
        f"/api/v2/dags/{dag_id}/clearTaskInstances",
        {
            "dry_run": False,
            "dag_run_id": run_id,
            "only_failed": False,
            "task_ids": ["submit"],
            "include_downstream": True,
        },
    )
    run = _wait_for_end(stack, dag_id, run_id)
    assert run["state"] == "success", f"the cleared run ended {run['state']}; see {stack.log_path}"
    assert sorted(r["id"] for r in _rows(stack, dag_id, run_id)) == IDS

    ledger = emulator.ledger()
    created = [b["batch_id"] for b in ledger["batches"]]
    billed = Counter(item["custom_id"] for item in ledger["billed"])
    if provider == "anthropic" and not HAS_TASK_STATE_STORE:
        # The documented limit: the record went with the work dir and Anthropic has no tags to ask by.
        assert len(created) == 2 * CHUNKS and set(billed.values()) == {2}
        return
    assert created == first_batches, "a batch was created twice"
    assert ledger["duplicate_batches"] == [] and ledger["double_billed"] == []
    assert len(billed) == len(IDS) and set(billed.values()) == {1}, "an item was billed twice"
    # The batches it re-attached to had ended: the cleared run's sensor finished on its worker,
    # without deferring to a trigger that would fire at once (that races Airflow's bookkeeping of the
    # deferring try and failed this run under load before: apache/airflow#72716).
    wait_log = stack.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / "task_id=wait" / "attempt=2.log"
    assert "All 3 batch(es) ended" in wait_log.read_text() and "Deferring until" not in wait_log.read_text()


WAVE_CHUNKS = 6  # sixty items, ten a chunk, two batches at a time: three waves


def _assert_paid_once(ledger: dict[str, Any]) -> None:
    assert len(ledger["batches"]) == WAVE_CHUNKS, "a chunk's batch was created twice"
    assert ledger["duplicate_batches"] == [] and ledger["billed_twice"] == []
    assert not any(g["resubmitted_after_answers"] for g in ledger["same_input_batches"])
    billed = Counter(item["custom_id"] for item in ledger["billed"])
    assert len(billed) == len(IDS) and set(billed.values()) == {1}, "an item was billed twice"


def test_a_sensor_that_died_after_creating_wave_two_re_attaches_on_retry(stack):
    emulator = stack.emulator
    emulator.reset()
    dag_id, run_id = "e2e_state_store_waves", "sensor_crash"
    run = _run(stack, dag_id, run_id, {"crash_sensor_after_wave": 2})
    assert run["state"] == "success", f"the run ended {run['state']}; see {stack.log_path}"
    wait = stack.request("GET", f"{_run_path(dag_id, run_id)}/taskInstances/wait")
    assert wait["try_number"] == 2, "the sensor did not crash and retry"
    _assert_paid_once(emulator.ledger())
    assert sorted(r["id"] for r in _rows(stack, dag_id, run_id)) == IDS

    submit_manifest = _xcom(stack, dag_id, run_id, "submit")
    assert len(submit_manifest["batches"]) == 2 and len(submit_manifest["pending"]) == WAVE_CHUNKS - 2
    submit_record = _record(stack, dag_id, run_id, submit_manifest)
    assert submit_record["handed_off"] is True
    # Submit's record keeps its first wave only: the later waves are the sensor's, in the sensor's record.
    assert sum(c["state"] == "submitted" for c in submit_record["chunks"].values()) == 2
    waves = _wave_record(stack, dag_id, run_id, submit_manifest)
    assert waves["wave"] == 3 and {c["state"] for c in waves["chunks"].values()} == {"submitted"}
    created = sorted(b["batch_id"] for b in emulator.ledger()["batches"])
    assert sorted(c["batch_id"] for c in waves["chunks"].values()) == created
    assert sorted(b["batch_id"] for b in _xcom(stack, dag_id, run_id, "wait")["batches"]) == created


def test_clearing_submit_after_the_hand_off_creates_no_batch(stack):
    emulator = stack.emulator
    emulator.reset()
    dag_id, run_id = "e2e_state_store_waves", "clear_after_hand_off"
    assert _run(stack, dag_id, run_id, {})["state"] == "success"
    first = sorted(b["batch_id"] for b in emulator.ledger()["batches"])
    assert len(first) == WAVE_CHUNKS
    stack.request(
        "POST",
        f"/api/v2/dags/{dag_id}/clearTaskInstances",
        {
            "dry_run": False,
            "dag_run_id": run_id,
            "only_failed": False,
            "task_ids": ["submit"],
            "include_downstream": True,
        },
    )
    # The cleared run may still read "success" for a moment: wait for Submit's second try to end too.
    submit_path = f"{_run_path(dag_id, run_id)}/taskInstances/submit"
    give_up_at = time.monotonic() + RUN_TIMEOUT_SECONDS
    while stack.request("GET", submit_path)["try_number"] < 2 and time.monotonic() < give_up_at:
        time.sleep(1.0)
    run = _wait_for_end(stack, dag_id, run_id)
    assert run["state"] == "success", f"the cleared run ended {run['state']}; see {stack.log_path}"
    submit = stack.request("GET", f"{_run_path(dag_id, run_id)}/taskInstances/submit")
    assert submit["try_number"] == 2, "the submit task was not run again"
    assert sorted(b["batch_id"] for b in emulator.ledger()["batches"]) == first, "the cleared run created a batch"
    _assert_paid_once(emulator.ledger())
    assert sorted(r["id"] for r in _rows(stack, dag_id, run_id)) == IDS


@pytest.fixture(scope="module")
def emulator_alone() -> Iterator[Emulator]:
    emulator = Emulator(Scenario(completion_seconds=BATCH_SECONDS, api_key=API_KEY)).start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture(scope="module")
def two_installations(emulator_alone, tmp_path_factory) -> list[AirflowSandbox]:
    """Two Airflow homes (own metadata DB each, so each its own Task State Store) sharing one work dir."""
    root = tmp_path_factory.mktemp("two-installations")
    boxes = []
    for n in (1, 2):
        dags = root / f"airflow-{n}" / "dags"
        dags.mkdir(parents=True)
        shutil.copy(DAG_FILE, dags)
        box = AirflowSandbox(dags.parent, dags, env={"AIRFLOW__LLM_BATCH__WORK_DIR": str(root / "shared-work-dir")})
        for provider in ("openai", "gemini"):
            url = getattr(emulator_alone, f"{provider}_base_url")
            box.set_connection(f"llm_batch_{provider}", f"llm_batch_{provider}", host=url, password=API_KEY)
        box.migrate()
        box.airflow("dags", "reserialize")
        boxes.append(box)
    return boxes


@pytest.mark.parametrize("provider", ["openai", "gemini"])
def test_two_runs_with_one_job_key_started_together_create_one_batch_per_chunk(
    emulator_alone, two_installations, provider
):
    """The same DAG run id in two installations at once: their submit tasks share a job key.

    ``airflow dags test`` names its runs after the current time, so each installation creates the run
    with a chosen id (``dags trigger -r``, no scheduler runs there) and both submit tasks start together
    through ``airflow tasks test``, which runs a task of an existing run.
    """
    emulator = emulator_alone
    emulator.reset()
    dag_id, run_id = f"e2e_state_store_{provider}", f"same_key_{provider}"
    for box in two_installations:
        box.airflow("dags", "trigger", dag_id, "-r", run_id)
        _start_run(box, dag_id, run_id)
    airflow_cli = str(Path(sys.executable).parent / "airflow")
    runs = [
        subprocess.Popen(
            [airflow_cli, "tasks", "test", dag_id, "submit", run_id],
            env=box.env,
            cwd=str(box.home),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for box in two_installations
    ]
    outputs = [run.communicate(timeout=RUN_TIMEOUT_SECONDS)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]

    ledger = emulator.ledger()
    assert len(ledger["batches"]) == CHUNKS, "a chunk's batch was created twice"
    assert {b["tags"].get("airflow_run_id", run_id) for b in ledger["batches"]} == {run_id}
    assert ledger["duplicate_batches"] == []
    # One created the batches; the other re-attached: on 3.3 its own Task State Store has no record,
    # so it found them by tag; on 3.1 both read the state file in the shared work dir.
    created = [out.count("created batch") for out in outputs]
    assert sorted(created) == [0, CHUNKS]
    second = outputs[created.index(0)]
    if HAS_TASK_STATE_STORE:
        assert "re-attaching to them instead of creating new ones" in second
    else:
        # Through the shared state file (its record says the first wave was handed to the sensor), or,
        # when it read the file before the first wrote its record, by tag: either way it created nothing
        # (asserted above).
        reattached = (
            f"re-attaching to its {CHUNKS} batch(es), creating nothing",
            "re-attaching to them instead of creating new ones",
        )
        assert any(message in second for message in reattached), second[-3000:]


def manifest_ids(manifest: dict[str, Any]) -> list[str]:
    return [b["batch_id"] for b in manifest["batches"]]


def _start_run(box: AirflowSandbox, dag_id: str, run_id: str) -> None:
    """Mark the triggered run started, as a scheduler would (Airflow 3.1's ``tasks test`` refuses a
    run without a start date: ``TIRunContext dag_run.start_date``; no scheduler runs in these homes)."""
    with sqlite3.connect(box.home / "airflow.db") as db:
        db.execute(
            "UPDATE dag_run SET state = 'running', start_date = queued_at WHERE dag_id = ? AND run_id = ?",
            (dag_id, run_id),
        )


def _run_path(dag_id: str, run_id: str) -> str:
    return f"/api/v2/dags/{dag_id}/dagRuns/{run_id}"


def _run(stack: ComponentStack, dag_id: str, run_id: str, conf: dict[str, Any]) -> dict[str, Any]:
    _wait_for_dag(stack, dag_id)
    stack.request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
    stack.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"dag_run_id": run_id, "logical_date": None, "conf": conf})
    return _wait_for_end(stack, dag_id, run_id)


def _wait_for_end(stack: ComponentStack, dag_id: str, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        run = stack.request("GET", _run_path(dag_id, run_id))
        if run["state"] in ("success", "failed"):
            return dict(run)
        time.sleep(1.0)
    raise AssertionError(f"the run {run_id} did not end in {RUN_TIMEOUT_SECONDS}s; see {stack.log_path}")


def _xcom(stack: ComponentStack, dag_id: str, run_id: str, task_id: str) -> dict[str, Any]:
    path = f"{_run_path(dag_id, run_id)}/taskInstances/{task_id}/xcomEntries/return_value?deserialize=true"
    return dict(stack.request("GET", path)["value"])


def _record(stack: ComponentStack, dag_id: str, run_id: str, manifest: dict[str, Any]) -> dict[str, Any]:
    """The submit task's record where this Airflow line keeps it: the Task State Store, read through
    the REST API (what the task's Storage tab shows), else the work dir's state file."""
    job_dir = Path(manifest["work_uri"])
    if HAS_TASK_STATE_STORE:
        entries = stack.request("GET", f"{_run_path(dag_id, run_id)}/taskInstances/submit/state-store")
        [entry] = [e for e in entries["task_state_store"] if e["key"] == RECORD_KEY]
        assert not (job_dir / "state.json").exists(), "3.3 keeps the record in the Task State Store only"
        value = entry["value"]
        return dict(json.loads(value) if isinstance(value, str) else value)
    return dict(json.loads((job_dir / "state.json").read_text()))


def _wave_record(stack: ComponentStack, dag_id: str, run_id: str, manifest: dict[str, Any]) -> dict[str, Any]:
    """The sensor's record of later waves: its own Task State Store on 3.3, else ``waves.json``."""
    job_dir = Path(manifest["work_uri"])
    if HAS_TASK_STATE_STORE:
        entries = stack.request("GET", f"{_run_path(dag_id, run_id)}/taskInstances/wait/state-store")
        [entry] = [e for e in entries["task_state_store"] if e["key"] == WAVES_KEY]
        assert not (job_dir / "waves.json").exists(), "3.3 keeps the wave record in the sensor's store only"
        value = entry["value"]
        return dict(json.loads(value) if isinstance(value, str) else value)
    return dict(json.loads((job_dir / "waves.json").read_text()))


def _rows(stack: ComponentStack, dag_id: str, run_id: str) -> list[dict[str, Any]]:
    summary = _xcom(stack, dag_id, run_id, "results")
    path = Path(summary["output_uri"].removeprefix("file://"))
    return [json.loads(line) for line in path.read_text().splitlines()]
