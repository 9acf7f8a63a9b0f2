"""The metrics a summary gives: names under ``llm_batch.``, safe for StatsD whatever the error type."""

from __future__ import annotations

from airflow_llm_batch.batch.metrics import Metric, results_metrics, step_metrics


def test_results_metrics_count_outcomes_error_types_tokens_and_cost():
    summary = {
        "succeeded": 8,
        "failed": 2,
        "retryable": 1,
        "permanent": 1,
        "by_error_type": {"rate_limited": 1, "odd type/with:colon": 1},
        "input_tokens": 100,
        "output_tokens": 20,
        "batch_ids": ["b1", "b2"],
        "cost": {"batch": 0.5, "savings": 0.5},
        "batch_age_seconds": 2.5,
    }
    got = {m.name: m for m in results_metrics(summary)}
    assert got["llm_batch.errors.odd_type_with_colon"] == Metric("incr", "llm_batch.errors.odd_type_with_colon", 1)
    assert got["llm_batch.items.succeeded"].value == 8 and got["llm_batch.batches"].value == 2
    assert got["llm_batch.batch_age"] == Metric("timing", "llm_batch.batch_age", 2500.0)
    assert got["llm_batch.cost.batch_usd"].kind == "gauge"


def test_unknown_cost_sends_no_cost_and_an_empty_step_no_rate():
    names = {m.name for m in results_metrics({"cost": {"batch": None}})}
    assert not any(name.startswith("llm_batch.cost") for name in names)
    assert "llm_batch.step.success_rate" not in {m.name for m in step_metrics({"items": 0})}
