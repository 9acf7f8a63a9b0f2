"""Big jobs under the providers' queue quotas, as real DAG runs (`airflow dags test`, real SDK clients).

A 20-chunk job (100 items, five a chunk) against an emulator quota admitting 5 batches: every input
id ends exactly once in the final output, no item is billed twice, and no batch is created for a
chunk that already had answers (the emulator's ledger is the bill), on each provider with its own
refusal shape: OpenAI accepts and then fails the batch (``request_limit_exceeded`` here), Anthropic
answers 429 ``rate_limit_error``, Gemini 429 ``RESOURCE_EXHAUSTED``.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from typing import Any

import pytest

from tests.e2e.conftest import bedrock_bucket
from tests.e2e.test_metrics import _received

pytestmark = pytest.mark.e2e

PROVIDERS = ("openai", "anthropic", "gemini")
IDS = sorted(f"W-{n:03d}" for n in range(100))


def _read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _quota(provider: str, batches: int) -> list[dict[str, Any]]:
    return [{"provider": provider, "concurrent_batches": batches}]


def _check_the_promise(dag_runner, logical_date: str, provider: str) -> list[dict[str, Any]]:
    job_root = dag_runner.job_dir("e2e_waves", logical_date, task_id="step.submit").parent
    final = _read(job_root / "final" / "final.jsonl")
    assert sorted(r["id"] for r in final) == IDS, "every input id exactly once"
    ledger = dag_runner.emulator.ledger()
    billed = Counter(i["custom_id"] for i in ledger["billed"] if i["provider"] == provider)
    assert billed and max(billed.values()) == 1 and ledger["billed_twice"] == [], "an item was billed twice"
    assert not any(g["resubmitted_after_answers"] for g in ledger["same_input_batches"]), (
        "a batch was created for a chunk that had answers"
    )
    return final


def _refusals(ledger: dict[str, Any], provider: str) -> int:
    accepted_then_failed = [b for b in ledger["batches"] if b["provider"] == provider and b["refused"]]
    return len(accepted_then_failed) + len([r for r in ledger["refused_creates"] if r["provider"] == provider])


@pytest.mark.parametrize("provider", PROVIDERS)
def test_twenty_chunks_through_a_quota_of_five_batches(dag_runner, provider):
    emulator = dag_runner.emulator
    emulator.update_scenario(completion_seconds=1.0, queue_quotas=_quota(provider, 5))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as statsd:
        statsd.bind(("127.0.0.1", 0))
        env = {"E2E_PROVIDER": provider, **_statsd_env(statsd)}
        logical_date, run = dag_runner.run("e2e_waves", env=env)
        metrics = _received(statsd)
    final = _check_the_promise(dag_runner, logical_date, provider)
    assert all(r["status"] == "succeeded" and r["attempt"] == 1 for r in final)
    assert _refusals(emulator.ledger(), provider) > 0, "the quota was never hit: waves were not tested"
    log = run.stdout + run.stderr
    assert "wave 2:" in log and "pending" in log
    # The sensor's wave steps, as a dashboard sees them (docs/metrics.md).
    created = sum(value for value, _ in metrics["nightly.llm_batch.waves.batches_created"])
    ours = [b for b in emulator.ledger()["batches"] if b["provider"] == provider]
    assert 0 < created < len(ours), "the sensor created the later waves, Submit the first"
    assert max(value for value, _ in metrics["nightly.llm_batch.waves.wave"]) >= 2
    assert metrics["nightly.llm_batch.waves.pending"][-1] == (0.0, "g"), "the last wave left nothing pending"
    if provider == "openai":  # accepted, then failed for the quota: the sensor sees the refusals
        assert sum(value for value, _ in metrics["nightly.llm_batch.waves.refused"]) > 0


def _statsd_env(sock: socket.socket) -> dict[str, str]:
    return {
        "AIRFLOW__METRICS__STATSD_ON": "True",
        "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
        "AIRFLOW__METRICS__STATSD_PORT": str(sock.getsockname()[1]),
        "AIRFLOW__METRICS__STATSD_PREFIX": "nightly",
    }


def test_twenty_jobs_through_bedrocks_jobs_quota(dag_runner):
    """Amazon Bedrock refuses a job over its quota with ServiceQuotaExceededException: the sensor's
    later waves (sync boto3 clients, the look-up by job name first) send the 15 chunks left."""
    emulator = dag_runner.emulator
    emulator.update_scenario(completion_seconds=1.0, bedrock_min_records=1, queue_quotas=_quota("bedrock", 5))
    bedrock_bucket(emulator)
    logical_date, run = dag_runner.run("e2e_waves", env={"E2E_PROVIDER": "bedrock"})
    final = _check_the_promise(dag_runner, logical_date, "bedrock")
    assert all(r["status"] == "succeeded" and r["attempt"] == 1 for r in final)
    assert _refusals(emulator.ledger(), "bedrock") > 0, "the quota was never hit: waves were not tested"
    assert "wave 2:" in run.stdout + run.stderr


@pytest.mark.parametrize("provider", PROVIDERS)
def test_capacity_shrinking_mid_job(dag_runner, provider):
    """The task knows a quota of 5; the provider shrinks it to 2 once the first wave runs."""
    emulator = dag_runner.emulator
    emulator.update_scenario(completion_seconds=1.0, queue_quotas=_quota(provider, 5))

    def shrink_once_five_batches_run() -> None:
        give_up_at = time.monotonic() + 120
        while time.monotonic() < give_up_at:
            if len([b for b in emulator.ledger()["batches"] if b["provider"] == provider]) >= 5:
                emulator.update_scenario(queue_quotas=_quota(provider, 2))
                return
            time.sleep(0.1)

    shrinker = threading.Thread(target=shrink_once_five_batches_run, daemon=True)
    shrinker.start()
    logical_date, _ = dag_runner.run(
        "e2e_waves", env={"E2E_PROVIDER": provider, "E2E_QUOTA": json.dumps({"concurrent_batches": 5})}
    )
    shrinker.join()
    final = _check_the_promise(dag_runner, logical_date, provider)
    assert all(r["status"] == "succeeded" for r in final)
    assert _refusals(emulator.ledger(), provider) > 0, "the shrunken quota refused nothing"


def test_waves_in_poke_mode(dag_runner):
    emulator = dag_runner.emulator
    emulator.update_scenario(completion_seconds=1.0, queue_quotas=_quota("anthropic", 5))
    env = {"E2E_PROVIDER": "anthropic", "E2E_DEFERRABLE": "0", "E2E_QUOTA": json.dumps({"concurrent_batches": 5})}
    logical_date, run = dag_runner.run("e2e_waves", env=env)
    final = _check_the_promise(dag_runner, logical_date, "anthropic")
    assert all(r["status"] == "succeeded" for r in final)
    assert "wave 4:" in run.stdout + run.stderr


def test_one_chunk_failing_validation_as_a_whole(dag_runner):
    emulator = dag_runner.emulator
    emulator.update_scenario(completion_seconds=1.0)
    logical_date, run = dag_runner.run(
        "e2e_waves", check=False, env={"E2E_PROVIDER": "openai", "E2E_INVALID_CHUNK": "3"}
    )
    log = run.stdout + run.stderr
    job_root = dag_runner.job_dir("e2e_waves", logical_date, task_id="step.submit").parent
    results = job_root / "attempt-1" / "results" / "results.jsonl"
    assert results.exists(), f"the results task wrote nothing; the run's log ends:\n{log[-4000:]}"
    rows = _read(results)
    assert sorted(r["id"] for r in rows) == IDS
    bad = [r for r in rows if r["status"] == "failed"]
    assert sorted(r["id"] for r in bad) == [f"W-{n:03d}" for n in range(15, 20)]
    assert all(r["error_type"] == "invalid_request" and "url_mismatch" in r["error_message"] for r in bad)
    [failed_batch] = {r["batch_id"] for r in bad}
    final = _read(job_root / "final" / "final.jsonl")
    assert sorted(r["id"] for r in final) == IDS, "the final output is written before the step fails"
    assert "BatchFailedError" in log and failed_batch in log and "url_mismatch" in log
