"""The dry run's plan: the submit use case up to its first API call, then a plan instead."""

from __future__ import annotations

import json

import pytest

from airflow_llm_batch.batch.backends.base import ClientConfig, RequestSpec
from airflow_llm_batch.batch.backends.openai import OpenAIBackend
from airflow_llm_batch.batch.preflight import PreflightSettings
from airflow_llm_batch.batch.pricing import PriceTable
from airflow_llm_batch.batch.records import JobKey, Kind
from airflow_llm_batch.batch.state import JobLayout
from airflow_llm_batch.batch.submit import FirstRound, plan_first
from airflow_llm_batch.exceptions import BudgetExceededError, InvalidInputError

KEY = JobKey("dag", "submit", "manual__1")


def _round(items, **overrides):
    fields = dict(
        task="submit",
        spec=RequestSpec("gpt-4.1-mini", Kind.CHAT, "be brief", {"max_tokens": 100}),
        id_field="id",
        template="Classify: {text}",
        body_field=None,
        source=items,
        read_items=lambda: iter(items),
        conn_id="c",
        timeout_seconds=60,
        prices=PriceTable.shipped(),
        requests_in_sql=False,
    )
    fields.update(overrides)
    return FirstRound(**fields)


def _backend(limit=None):
    limits = OpenAIBackend.default_limits.with_overrides({"max_requests": limit} if limit else None)
    return OpenAIBackend(ClientConfig(api_key="k", base_url="http://127.0.0.1:9/v1"), limits)


def test_a_dry_run_writes_requests_and_a_plan_and_builds_no_client(tmp_path, caplog):
    items = [{"id": f"T-{i}", "text": f"ticket {i}"} for i in range(25)]
    backend = _backend(limit=10)
    layout = JobLayout.for_job(tmp_path, KEY, 1)
    with caplog.at_level("INFO"):
        plan = plan_first(_round(items), backend, layout, KEY)
    assert "client" not in backend.__dict__  # no SDK client, so no request could have been made
    written = json.loads((layout.root / "plan.json").read_text())
    assert written == plan.to_dict()
    assert written["items"] == 25 and written["batches"] == 3 and written["waves"] == [[0, 1, 2]]
    assert [chunk["count"] for chunk in written["chunks"]] == [10, 10, 5]
    assert written["estimated_output_tokens"] == 25 * 100 and written["cost_estimate"]["batch"] > 0
    assert (layout.requests_dir / "chunk-00002.jsonl").exists() and not layout.state_file.exists()
    assert "DRY RUN: nothing was sent to openai. 25 item(s) in 3 batch(es)" in caplog.text


def test_a_dry_run_refuses_what_a_real_run_would(tmp_path):
    items = [{"id": "T-1", "text": "x"}]
    layout = JobLayout.for_job(tmp_path, KEY, 1)
    spec = RequestSpec("gpt-5-mini", Kind.CHAT, parameters={"max_tokens": 100})
    with pytest.raises(InvalidInputError, match="rename it to max_completion_tokens"):
        plan_first(_round(items, spec=spec), _backend(), layout, KEY)
    with pytest.raises(BudgetExceededError):
        plan_first(_round(items * 1, max_cost=0.0), _backend(), layout, KEY)
    off = _round(items, spec=spec, preflight=PreflightSettings(enabled=False))
    assert plan_first(off, _backend(), layout, KEY).items == 1


def test_the_plan_reports_requests_near_the_context_window(tmp_path):
    items = [{"id": "long", "text": "x" * 3500}, {"id": "short", "text": "x"}]
    settings = PreflightSettings(models={"gpt-4.1-mini": {"context_window": 1000}})
    plan = plan_first(_round(items, preflight=settings), _backend(), JobLayout.for_job(tmp_path, KEY, 1), KEY)
    near = plan.to_dict()["near_context_window"]
    assert near["count"] == 1 and near["examples"][0]["id"] == "long"


def test_a_dry_run_under_a_queue_quota_shows_the_waves_the_planner_would_make(tmp_path, caplog):
    from airflow_llm_batch.batch.quota import QueueQuota

    items = [{"id": f"T-{i}", "text": f"ticket {i}"} for i in range(25)]
    layout = JobLayout.for_job(tmp_path, KEY, 1)
    with caplog.at_level("INFO"):
        plan = plan_first(_round(items, quota=QueueQuota(concurrent_batches=2)), _backend(limit=5), layout, KEY)
    assert plan.waves == [[0, 1], [2, 3], [4]]
    assert json.loads((layout.root / "plan.json").read_text())["waves"] == [[0, 1], [2, 3], [4]]
    assert not layout.state_file.exists()
    assert "under the queue quota: 3 waves, [2, 2, 1] batches" in plan.describe()
