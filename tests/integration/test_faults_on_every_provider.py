"""Faults that must not lose an item, on every provider, through the real SDK clients.

Also on an OpenAI-compatible host without batch metadata (``openai_compatible``: the emulated
OpenAI refusing ``metadata``), where re-attaching relies on the job's record alone, on Azure
OpenAI (the ``openai`` package's client on the emulated resource's v1 path), and on OpenAI's
Responses API (``openai_responses``).
"""

from __future__ import annotations

import re
from collections import Counter

import pytest

from airflow_llm_batch.batch.job import JobState
from airflow_llm_batch.batch.results import raise_for_failed_batches
from airflow_llm_batch.exceptions import BatchFailedError
from tests.integration.conftest import PROVIDERS, WITHOUT_TAGS, flow_for

ITEMS = [{"id": f"item-{n:03d}", "text": f"message {n}"} for n in range(40)]
IDS = sorted(item["id"] for item in ITEMS)


@pytest.fixture(params=(*PROVIDERS, "openai_responses", "openai_compatible", "azure_openai"))
def flow(request, llm_batch_emulator, tmp_path):
    yield from flow_for(request.param, llm_batch_emulator, tmp_path)


def _results_by_download(flow):
    if flow.provider == "gemini":
        # Small Gemini jobs come back inline, in the status response; force the file path.
        flow.backend.config.extra["inline_max_bytes"] = 1  # type: ignore[index]


def test_a_download_dropped_midway_is_restarted_without_duplicate_rows(flow, llm_batch_emulator):
    _results_by_download(flow)
    layout, manifest = flow.submit(ITEMS)
    flow.wait(manifest)
    llm_batch_emulator.update_scenario(dropped_downloads=1)
    summary, rows = flow.collect(layout, manifest)
    assert sorted(r["id"] for r in rows) == IDS
    assert summary["succeeded"] == len(ITEMS)
    assert llm_batch_emulator.state.faults.downloads_dropped == 1


@pytest.mark.parametrize(
    "kind", ["rate_limited", "server_error", "invalid_request", "content_filtered", "context_length"]
)
def test_each_item_error_class_maps_onto_the_taxonomy(flow, llm_batch_emulator, kind):
    llm_batch_emulator.update_scenario(item_errors={kind: 0.3})
    layout, manifest = flow.submit(ITEMS)
    flow.wait(manifest)
    _, rows = flow.collect(layout, manifest)
    assert sorted(r["id"] for r in rows) == IDS
    failed = [r for r in rows if r["status"] == "failed"]
    assert failed and {r["error_type"] for r in failed} == {kind}
    retryable = kind in ("rate_limited", "server_error")
    assert all(r["retryable"] is retryable for r in failed)


def test_a_malformed_result_line_becomes_a_retryable_row(flow, llm_batch_emulator):
    _results_by_download(flow)  # inline results are one JSON document: torn lines exist in files only
    llm_batch_emulator.update_scenario(malformed_line_rate=0.2)
    layout, manifest = flow.submit(ITEMS)
    flow.wait(manifest)
    _, rows = flow.collect(layout, manifest)
    assert sorted(r["id"] for r in rows) == IDS
    torn = [r for r in rows if r["status"] == "failed"]
    assert torn and all(r["retryable"] for r in torn)


@pytest.mark.parametrize("outcome", ["expired", "cancelled"])
def test_expired_and_cancelled_batches_keep_finished_items(flow, llm_batch_emulator, outcome):
    llm_batch_emulator.update_scenario(batch_outcome=outcome)
    if flow.provider == "azure_openai" and outcome == "expired":
        _azure_runs_on_past_its_window(flow, llm_batch_emulator)
        return
    layout, manifest = flow.submit(ITEMS)
    flow.wait(manifest)
    summary, rows = flow.collect(layout, manifest)
    assert sorted(r["id"] for r in rows) == IDS
    assert all(r["retryable"] for r in rows if r["status"] == "failed")
    assert Counter(r["error_type"] for r in rows if r["status"] == "failed").keys() <= {outcome, "missing"}
    assert summary["failed"] > 0


def test_a_batch_that_fails_validation_becomes_permanent_rows_with_the_reason(flow, llm_batch_emulator):
    llm_batch_emulator.update_scenario(batch_outcome="failed")
    if flow.provider == "anthropic":
        # Anthropic refuses an invalid batch at create time: nothing is created, the task fails.
        with pytest.raises(Exception, match=r"(?i)invalid"):
            flow.submit(ITEMS)
        return
    layout, manifest = flow.submit(ITEMS)
    [status] = flow.wait(manifest)
    assert status.outcome.value == "failed"
    summary, rows = flow.collect(layout, manifest)
    [failed] = summary["failed_batches"]
    assert failed["batch_id"] == status.batch_id and failed["reason"]
    assert summary["permanent"] == len(ITEMS) == len(rows)
    assert all(r["error_type"] == "invalid_request" and failed["reason"] in r["error_message"] for r in rows)
    with pytest.raises(BatchFailedError, match=re.escape(status.batch_id)):
        raise_for_failed_batches(summary["failed_batches"], "test")


def test_429_and_5xx_bursts_on_create_are_ridden_out_by_retries(flow, llm_batch_emulator):
    flow.backend.close()
    from airflow_llm_batch.batch.backends import create_backend

    config = flow.backend.config
    flow.backend = create_backend(
        flow.backend.provider,
        type(config)(api_key="k", base_url=config.base_url, extra={**config.extra, "max_retries": 3}),
    )
    faults = [
        {"route": "batches|Content|upload|files", "method": "POST", "status": 429, "count": 1},
        {"route": "batches|Content|upload|files", "method": "POST", "status": 503, "count": 1},
    ]
    llm_batch_emulator.update_scenario(http_faults=faults)
    layout, manifest = flow.submit(ITEMS)
    flow.wait(manifest)
    _, rows = flow.collect(layout, manifest)
    assert sorted(r["id"] for r in rows) == IDS
    assert len(llm_batch_emulator.ledger()["batches"]) == 1


def test_a_retried_submit_reattaches_from_the_state_file(flow, llm_batch_emulator):
    _, first = flow.submit(ITEMS)
    _, second = flow.submit(ITEMS)
    assert second.batch_ids == first.batch_ids
    assert len(llm_batch_emulator.ledger()["batches"]) == 1


def test_a_lost_create_response_is_found_by_tag_where_the_provider_has_tags(flow, llm_batch_emulator):
    layout, first = flow.submit(ITEMS)
    state = JobState.load(layout.state_file)
    state.data.pop("handed_off", None)  # the task died during a create: before it handed its first wave on
    state.set_chunk(0, state="intent", batch_id=None)
    _, second = flow.submit(ITEMS)
    batches = llm_batch_emulator.ledger()["batches"]
    if flow.provider in WITHOUT_TAGS:
        # No tags at Anthropic or on a host without metadata: the batch cannot be found, so it is
        # submitted again (documented: docs/reliability.md, docs/platforms.md).
        assert len(batches) == 2 and second.batch_ids != first.batch_ids
    else:
        assert len(batches) == 1 and second.batch_ids == first.batch_ids


def _azure_runs_on_past_its_window(flow, llm_batch_emulator):
    """Azure does not expire batches ("we do not expire the jobs that take longer"): the batch runs
    on; the operator's deadline cancels it, and what finished is kept (the cancelled rows)."""
    layout, manifest = flow.submit(ITEMS)
    llm_batch_emulator.advance(2 * 86_400)
    [status] = [flow.backend.get_status(batch_id) for batch_id in manifest.batch_ids]
    assert not status.ended and status.state == "in_progress" and 0 < status.done < len(ITEMS)
    flow.backend.cancel(status.batch_id)
    flow.wait(manifest)
    _, rows = flow.collect(layout, manifest)
    assert sorted(r["id"] for r in rows) == IDS
    assert {r["error_type"] for r in rows if r["status"] == "failed"} == {"cancelled"}
