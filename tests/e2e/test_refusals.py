"""A key rejected or a batch gone while the sensor is deferred: the run fails at once, saying why.

A real DAG run (`airflow dags test`: the trigger runs inline, with the real SDK client) waits
for a batch of an hour; once its trigger has polled the batch, the emulator starts refusing (another
key accepted, or every batch forgotten). The wait task fails on the next poll with a message that
names the connection and the batch, never the key, and the results task never runs.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from datetime import datetime
from typing import Any

import pytest

from tests.e2e.conftest import API_KEY

pytestmark = pytest.mark.e2e

CASES = {
    # provider, how the emulator refuses, the answer, what the log says
    "openai key rejected": ("openai", "key", 401, "rejected the credentials of connection 'llm_batch_openai'"),
    "gemini batch gone": ("gemini", "gone", 404, "does not exist (HTTP 404"),
}


@pytest.mark.parametrize("case", CASES)
def test_a_refusal_while_deferred_fails_the_run_within_a_poll(dag_runner, case):
    provider, refusal, status, says = CASES[case]
    emulator = dag_runner.emulator
    emulator.update_scenario(completion_seconds=3600.0)
    outcome: dict[str, Any] = {}

    def run() -> None:
        outcome["date"], outcome["result"] = dag_runner.run("e2e_refusals", check=False, env={"E2E_PROVIDER": provider})
        outcome["ended"] = time.time()

    runner = threading.Thread(target=run)
    runner.start()
    try:
        deadline = time.monotonic() + 300
        # Wait for a status poll of the batch itself: submit's look-up by job-key tag is a GET too.
        while not (batch_id := _polled_batch(emulator, provider)):
            assert runner.is_alive(), outcome["result"].stdout[-3000:]
            assert time.monotonic() < deadline, "the trigger never polled the batch"
            time.sleep(0.2)
        refused_at = time.time()
        if refusal == "key":
            emulator.update_scenario(api_key="a-key-nobody-has")
        else:
            emulator.reset()
    finally:
        runner.join(timeout=300)
    result = outcome["result"]
    log = result.stdout + result.stderr
    assert result.returncode != 0
    assert says in log and batch_id in log
    assert API_KEY not in log
    # The first refused poll ended the wait: one refused status request, no backoff rounds.
    refused = [r for r in emulator.requests(provider) if r["method"] == "GET" and r["status"] == status]
    assert len(refused) == 1
    states = _task_states(dag_runner, outcome["date"])
    assert states["wait"][0] == "failed" and states["results"][0] != "success"
    # Indicative timings (no assertion on a shared machine): refusal -> refused poll -> task failed.
    wait_failed = datetime.fromisoformat(states["wait"][1]).timestamp()
    print(
        f"{case}: refused poll {refused[0]['time'] - refused_at:.2f} s after the refusal began, wait task "
        f"failed {wait_failed - refused_at:.2f} s after, the run ended {outcome['ended'] - refused_at:.1f} s after"
    )


def _polled_batch(emulator: Any, provider: str) -> str | None:
    """The batch's id once a status request for it has been answered, else None."""
    batch_ids = [b["batch_id"] for b in emulator.ledger()["batches"]]
    if not batch_ids:
        return None
    [batch_id] = batch_ids
    polls = [r for r in emulator.requests(provider) if r["method"] == "GET" and r["status"] == 200]
    return batch_id if any(r["path"].endswith(batch_id) for r in polls) else None


def _task_states(dag_runner: Any, logical_date: str) -> dict[str, tuple[str, str]]:
    """Each task's state and end date (ISO, UTC)."""
    run_id = dag_runner.run_id("e2e_refusals", logical_date)
    with sqlite3.connect(dag_runner.sandbox.home / "airflow.db") as db:
        rows = db.execute(
            "SELECT task_id, state, end_date FROM task_instance WHERE dag_id = ? AND run_id = ?",
            ("e2e_refusals", run_id),
        ).fetchall()
    return {task: (str(state), str(end)) for task, state, end in rows}
