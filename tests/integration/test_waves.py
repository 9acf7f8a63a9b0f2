"""Waves under a queue quota, through the real SDK clients against the emulator's quotas.

The core flow the sensor drives (``advance_waves`` on its own wave record each time it resumes,
the record read back each time as a new try would), without Airflow: each
provider refuses in its own way (OpenAI accepts, then fails the batch with a quota code; Anthropic
and Gemini answer 429 on create) and the job still ends with one row per item, nothing billed twice
and no batch created for a chunk that had answers.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from airflow_llm_batch.batch.backends import create_backend
from airflow_llm_batch.batch.backends.base import ClientConfig, RequestSpec
from airflow_llm_batch.batch.job import JobLayout
from airflow_llm_batch.batch.manifest import Manifest
from airflow_llm_batch.batch.quota import QueueQuota
from airflow_llm_batch.batch.record_store import FileRecordStore
from airflow_llm_batch.batch.records import Kind
from airflow_llm_batch.batch.wave_record import WaveReport, advance_waves, load_wave_record, recorded_statuses
from tests.integration.conftest import MODELS, PROVIDERS, base_url
from tests.integration.harness import collect_rows, items, submit_items

ITEMS = items(40)  # two a chunk: 20 chunks


@pytest.fixture(params=PROVIDERS)
def backend(request: pytest.FixtureRequest, llm_batch_emulator: Any) -> Any:
    provider = request.param
    llm_batch_emulator.update_scenario(
        completion_seconds=0.4, queue_quotas=[{"provider": provider, "concurrent_batches": 5}]
    )
    config = ClientConfig(api_key="k", base_url=base_url(llm_batch_emulator, provider), extra={"max_retries": 0})
    made = create_backend(provider, config, {"max_requests": 2})
    yield made
    made.close()


def ended_of(layout: JobLayout, manifest: Manifest) -> dict[str, Any]:
    """The batches the sensor's record (``waves.json``, as on Airflow 3.1/3.2) has seen ended."""
    return recorded_statuses(load_wave_record(FileRecordStore(layout.waves_file), manifest))


def sensor_step(backend: Any, layout: JobLayout, manifest: Manifest, statuses: dict[str, Any]) -> WaveReport:
    """One resume of the sensor: its record read back (or seeded from the manifest), then a wave."""
    records = load_wave_record(FileRecordStore(layout.waves_file), manifest)
    return advance_waves(manifest, records, statuses, backend, path_of=Path, lease_file=layout.lease_file)


def run_waves(backend: Any, layout: JobLayout, manifest: Manifest, timeout: float = 90) -> list[str]:
    """What the sensor does each time its trigger fires: record what ended, create the next wave."""
    lines, give_up_at = [], time.monotonic() + timeout
    while time.monotonic() < give_up_at:
        ended = ended_of(layout, manifest)
        statuses = {b: backend.get_status(b).summary() for b in manifest.batch_ids if b not in ended}
        report = sensor_step(backend, layout, manifest, statuses)
        lines.append(report.line())
        ended = {**ended_of(layout, manifest), **{b: s for b, s in statuses.items() if s.get("outcome")}}
        if not manifest.pending and all(b in ended for b in manifest.batch_ids):
            manifest.waited = True  # what the sensor's finish marks: Results may read this manifest
            return lines
        time.sleep(0.2)
    raise AssertionError(f"the waves did not finish in {timeout}s: {lines[-3:]}")


def spec_of(backend: Any) -> RequestSpec:
    return RequestSpec(model=MODELS[backend.provider], kind=Kind.CHAT)


def assert_paid_once(ledger: dict[str, Any], provider: str) -> None:
    assert [i for i in ledger["billed_twice"] if i.get("provider", provider) == provider] == []
    assert not any(g["resubmitted_after_answers"] for g in ledger["same_input_batches"])


def test_an_unknown_quota_is_learned_from_the_refusals_and_every_item_lands_once(backend, llm_batch_emulator, tmp_path):
    layout, manifest = submit_items(backend, tmp_path, ITEMS, spec_of(backend))
    if backend.provider == "openai":  # accepted, then failed with a quota code: found while waiting
        assert len(manifest.batches) == 20 and not manifest.pending
    else:  # 429 on the sixth create: the rest wait
        assert len(manifest.batches) == 5 and len(manifest.pending) == 15
    lines = run_waves(backend, layout, manifest)
    assert any(line.startswith("wave 2:") for line in lines)
    summary, rows = collect_rows(backend, layout, manifest)
    assert sorted(r["id"] for r in rows) == sorted(i["id"] for i in ITEMS)
    assert summary["succeeded"] == 40 and summary["failed_batches"] == []
    ledger = llm_batch_emulator.ledger()
    assert_paid_once(ledger, backend.provider)
    if backend.provider == "openai":
        assert {b["refused"] for b in ledger["batches"]} >= {"request_limit_exceeded"}
    else:
        assert [r for r in ledger["refused_creates"] if r["provider"] == backend.provider]


def test_a_known_quota_submits_in_waves_without_a_refusal(backend, llm_batch_emulator, tmp_path):
    spec = spec_of(backend)
    layout, manifest = submit_items(backend, tmp_path, ITEMS, spec, quota=QueueQuota(concurrent_batches=5))
    assert len(manifest.batches) == 5 and len(manifest.pending) == 15 and manifest.wave == 1
    lines = run_waves(backend, layout, manifest)
    assert manifest.wave >= 4 and "wave 4:" in " ".join(lines)
    _, rows = collect_rows(backend, layout, manifest)
    assert len(rows) == 40 and all(r["status"] == "succeeded" for r in rows)
    ledger = llm_batch_emulator.ledger()
    assert not any(b["refused"] for b in ledger["batches"]) and not ledger["refused_creates"]
    assert len(ledger["batches"]) == 20
    assert_paid_once(ledger, backend.provider)


def test_capacity_shrinking_mid_job_sends_refused_chunks_back_and_pays_nothing_twice(
    backend, llm_batch_emulator, tmp_path
):
    layout, manifest = submit_items(backend, tmp_path, ITEMS, spec_of(backend), quota=QueueQuota(concurrent_batches=5))
    llm_batch_emulator.update_scenario(queue_quotas=[{"provider": backend.provider, "concurrent_batches": 2}])
    run_waves(backend, layout, manifest)
    _, rows = collect_rows(backend, layout, manifest)
    assert sorted(r["id"] for r in rows) == sorted(i["id"] for i in ITEMS)
    assert all(r["status"] == "succeeded" for r in rows)
    ledger = llm_batch_emulator.ledger()
    refusals = [b for b in ledger["batches"] if b["refused"]] + ledger["refused_creates"]
    assert refusals, "the shrunken quota refused nothing: the test did not test capacity shrinking"
    assert_paid_once(ledger, backend.provider)


def test_chunks_still_pending_at_the_deadline_become_retryable_rows(backend, llm_batch_emulator, tmp_path):
    spec = spec_of(backend)
    layout, manifest = submit_items(
        backend, tmp_path, ITEMS, spec, quota=QueueQuota(concurrent_batches=5), timeout_seconds=0
    )
    ended = {}
    while len(ended) < len(manifest.batches):
        ended = {b: s for b in manifest.batch_ids if (s := backend.get_status(b)).ended}
        time.sleep(0.1)
    report = sensor_step(backend, layout, manifest, {b: s.summary() for b, s in ended.items()})
    assert report.created == [] and len(manifest.pending) == 15  # past the deadline: no new wave
    manifest.waited = True  # the sensor finishes at the deadline and hands this manifest to Results
    summary, rows = collect_rows(backend, layout, manifest)
    assert len(rows) == 40 and summary["succeeded"] == 10
    waiting = [r for r in rows if r["status"] == "failed"]
    assert len(waiting) == 30 and all(r["error_type"] == "rate_limited" and r["retryable"] for r in waiting)
    assert summary["never_submitted"] == [m["chunk"] for m in manifest.pending]


def test_a_cleared_run_that_timed_out_with_chunks_pending_submits_only_those(llm_batch_emulator, tmp_path):
    """A run whose deadline passed with chunks pending (the sensor failed: cancel_on_timeout=False).
    Clearing it runs Submit again: it re-attaches to its first wave and creates nothing, but gives
    the job a new deadline; the sensor reads its own record back and sends the pending chunks out
    in waves. Nothing is paid twice."""
    llm_batch_emulator.update_scenario(
        completion_seconds=0.4, queue_quotas=[{"provider": "openai", "concurrent_batches": 5}]
    )
    config = ClientConfig(api_key="k", base_url=base_url(llm_batch_emulator, "openai"))
    backend = create_backend("openai", config, {"max_requests": 2})
    spec = RequestSpec(model=MODELS["openai"], kind=Kind.CHAT)
    quota = QueueQuota(concurrent_batches=5)
    layout, first = submit_items(backend, tmp_path, ITEMS, spec, timeout_seconds=0, quota=quota)
    statuses = [backend.get_status(b) for b in first.batch_ids]
    while not all(s.ended for s in statuses):
        time.sleep(0.1)
        statuses = [backend.get_status(b) for b in first.batch_ids]
    report = sensor_step(backend, layout, first, {s.batch_id: s.summary() for s in statuses})
    assert report.created == [] and len(first.pending) == 15  # the deadline had passed

    layout, again = submit_items(backend, tmp_path, ITEMS, spec, timeout_seconds=60, quota=quota)  # cleared
    assert again.batch_ids == [s.batch_id for s in statuses] and len(again.pending) == 15
    assert again.deadline > time.time()
    run_waves(backend, layout, again)
    summary, rows = collect_rows(backend, layout, again)
    assert sorted(r["id"] for r in rows) == sorted(i["id"] for i in ITEMS) and summary["succeeded"] == 40
    ledger = llm_batch_emulator.ledger()
    assert_paid_once(ledger, "openai")
    assert len(ledger["batches"]) == 20  # one batch a chunk: the first wave was not created again
    backend.close()
