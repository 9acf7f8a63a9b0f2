"""Retry rounds resubmit only retryable failures; the final output holds one row per input id."""

from __future__ import annotations

import itertools
import json
from collections import Counter

import pytest

pytestmark = pytest.mark.e2e

IDS = {f"R-{n:03d}" for n in range(60)}


def _read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _final_rows(dag_runner, logical_date):
    folder = dag_runner.job_dir("e2e_retry_rounds", logical_date, task_id="classify.submit").parent / "final"
    return _read(folder / "final.jsonl")


def _attempt_rows(dag_runner, logical_date):
    job_root = dag_runner.job_dir("e2e_retry_rounds", logical_date, task_id="classify.submit").parent
    return [_read(path) for path in sorted(job_root.glob("attempt-*/results/results.jsonl"))]


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
def test_failed_items_are_retried_and_end_in_exactly_one_final_row(dag_runner, provider):
    emulator = dag_runner.emulator
    emulator.update_scenario(
        completion_seconds=1.0, item_errors={"server_error": 0.25, "invalid_request": 0.05}, invalid_output_rate=0.1
    )
    logical_date, _ = dag_runner.run("e2e_retry_rounds", env={"E2E_PROVIDER": provider})
    check_retry_rounds(dag_runner, logical_date, provider)


def check_retry_rounds(dag_runner, logical_date, provider):
    """Only retryable failures resent, one final row per id, each answer billed once per attempt."""
    emulator = dag_runner.emulator
    rows = _final_rows(dag_runner, logical_date)
    assert sorted(r["id"] for r in rows) == sorted(IDS)
    assert max(r["attempt"] for r in rows) >= 2  # some items needed a retry round
    attempts = _attempt_rows(dag_runner, logical_date)
    for earlier, later in itertools.pairwise(attempts):
        retryable = {r["id"] for r in earlier if r["status"] == "failed" and r["retryable"]}
        assert {r["id"] for r in later} == retryable  # exactly the retryable ones, never a permanent one

    # The provider bills every answer it returns: a succeeded item once, and an item whose answer
    # broke the schema (invalid_output, retryable) once per attempt. A succeeded item is never resent.
    ledger = emulator.ledger()
    billed = Counter(item["custom_id"] for item in ledger["billed"] if item["provider"] == provider)
    answered = Counter(
        r["id"]
        for rows_of_attempt in attempts
        for r in rows_of_attempt
        if r["status"] == "succeeded" or r["error_type"] == "invalid_output"
    )
    assert billed == answered
    succeeded_in = Counter(
        r["id"] for rows_of_attempt in attempts for r in rows_of_attempt if r["status"] == "succeeded"
    )
    assert max(succeeded_in.values()) == 1
    assert ledger["duplicate_batches"] == []


def test_with_nothing_to_retry_the_rounds_skip_and_the_run_succeeds(dag_runner):
    dag_runner.emulator.update_scenario(completion_seconds=0.5)
    logical_date, run = dag_runner.run("e2e_retry_rounds", env={"E2E_PROVIDER": "openai"})
    rows = _final_rows(dag_runner, logical_date)
    assert sorted(r["id"] for r in rows) == sorted(IDS)
    assert all(r["status"] == "succeeded" and r["attempt"] == 1 for r in rows)
    assert "nothing to retry" in run.stdout + run.stderr
    assert len(dag_runner.emulator.ledger()["batches"]) == 1
