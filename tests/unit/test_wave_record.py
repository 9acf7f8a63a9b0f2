"""wave_record.py: the sensor owns the chunks Submit handed on, in a record of its own.

Submit's manifest (first wave + pending chunks) seeds the sensor's record; every resume reads it
back, so a sensor retry re-attaches to the waves an earlier try created. The store here is the
same ``TaskStateRecordStore`` the sensor uses on Airflow 3.3, over a dict standing in for the task
instance's accessor (the real store is exercised in tests/e2e/test_waves.py).
"""

from __future__ import annotations

from typing import Any

import pytest

from airflow_llm_batch.batch.quota import QueueQuota
from airflow_llm_batch.batch.record_store import FileRecordStore
from airflow_llm_batch.batch.state import JobState
from airflow_llm_batch.batch.wave_record import advance_waves, load_wave_record, recorded_statuses
from airflow_llm_batch.state_store import RECORD_KEY, WAVES_KEY, TaskStateRecordStore
from tests.unit.test_job_state import FakeBackend, prepared, submit


class Accessor(dict):
    """What ``context["task_state_store"]`` offers: get and set by key."""

    def set(self, key: str, value: Any) -> None:
        self[key] = value


@pytest.fixture
def layout(tmp_path):
    from tests.unit.test_job_state import KEY, JobLayout

    layout = JobLayout.for_job(tmp_path, KEY, attempt=1)
    layout.requests_dir.mkdir(parents=True)
    for index in range(4):  # what prepare writes; the fake backend never reads them
        layout.chunk_file(index).write_text("{}\n")
    return layout


def completed(batch_id: str) -> dict[str, Any]:
    return {"outcome": "completed", "state": "completed", "errors": []}


def advance(manifest, store, backend, layout, statuses=None, now=1001.0):
    records = load_wave_record(store, manifest)
    return advance_waves(
        manifest,
        records,
        statuses or {},
        backend,
        path_of=lambda uri: layout.chunk_file(int(uri.rsplit("-", 1)[1].split(".")[0])),
        lease_file=layout.lease_file,
        clock=lambda: now,
    ), records


def test_the_sensor_creates_the_next_wave_in_its_own_record_and_a_retry_re_attaches(layout):
    job = prepared(layout, counts=(3, 2, 4, 1))
    manifest = submit(layout, FakeBackend(layout), job, quota=QueueQuota(concurrent_batches=2))
    submit_record = JobState.load(layout.state_file).data
    sensor = Accessor()
    store = TaskStateRecordStore(sensor, WAVES_KEY)
    backend = FakeBackend(layout)

    first_ended = manifest.batch_ids[0]
    report, _ = advance(manifest, store, backend, layout, {first_ended: completed(first_ended)})
    assert backend.created == [2] and report.line() == "wave 2: 2 batches running, 1 pending"
    assert [b.chunk for b in manifest.batches] == [0, 1, 2] and [p["chunk"] for p in manifest.pending] == [3]
    # Only the sensor's own key was written; Submit's record is untouched (a store it cannot reach on 3.3).
    assert list(sensor) == [WAVES_KEY] and RECORD_KEY not in sensor
    assert JobState.load(layout.state_file).data == submit_record

    # The sensor's next try (a retry, a triggerer restart): Submit's manifest again, its own record back.
    retry = submit(layout, FakeBackend(layout), job, quota=QueueQuota(concurrent_batches=2))
    backend = FakeBackend(layout)
    report, records = advance(retry, store, backend, layout)
    assert backend.created == [] and backend.looked_up == []
    assert [b.chunk for b in retry.batches] == [0, 1, 2] and recorded_statuses(records) == {
        first_ended: completed(first_ended)
    }


def test_a_sensor_that_died_during_a_create_finds_the_batch_by_its_tag(layout):
    job = prepared(layout, counts=(3, 2, 4))
    manifest = submit(layout, FakeBackend(layout), job, quota=QueueQuota(concurrent_batches=2))
    store = FileRecordStore(layout.waves_file)
    ended = {manifest.batch_ids[0]: completed(manifest.batch_ids[0])}
    with pytest.raises(ConnectionError):
        advance(manifest, store, FakeBackend(layout, fail_on=2), layout, ended)
    assert JobState.load(layout.waves_file).chunk(2)["state"] == "intent"

    backend = FakeBackend(layout, tagged={2: "batch-found"})
    report, _ = advance(manifest, store, backend, layout)
    assert backend.looked_up == [2] and backend.created == [] and report.created == ["batch-found"]


def test_a_lost_wave_record_is_answered_by_the_job_key_tags_before_any_create(layout):
    """The sensor's record gone (a store cleared on success, a work dir deleted on 3.1), the run
    cleared: the later waves' batches are found by tag instead of being created again."""
    job = prepared(layout, counts=(3, 2, 4, 1))
    manifest = submit(layout, FakeBackend(layout), job, quota=QueueQuota(concurrent_batches=2))
    ended = {b: completed(b) for b in manifest.batch_ids}
    backend = FakeBackend(layout, job_tagged={0: manifest.batch_ids[0], 2: "batch-2-wave-2", 3: "batch-3-wave-3"})
    report, _ = advance(manifest, FileRecordStore(layout.waves_file), backend, layout, ended)
    assert backend.job_lookups == 1 and backend.created == [] and report.created == []
    assert [b.batch_id for b in manifest.batches][2:] == ["batch-2-wave-2", "batch-3-wave-3"] and not manifest.pending
    assert JobState.load(layout.waves_file).chunk(3)["recovered"] is True  # saved at once

    # Read back on the next resume: no second lookup.
    advance(manifest, FileRecordStore(layout.waves_file), backend, layout)
    assert backend.job_lookups == 1


def test_batches_of_an_earlier_input_are_never_taken_for_pending_chunks(layout):
    quota = QueueQuota(concurrent_batches=1)
    first = submit(layout, FakeBackend(layout), prepared(layout, counts=(3, 2)), quota=quota)
    second = FakeBackend(layout)
    second.created = [-1]  # its batch ids differ from the first input's
    again = submit(
        layout, second, prepared(layout, counts=(3, 2), fingerprint="fp-2"), quota=quota, on_input_change="resubmit"
    )
    assert again.extra["set_aside"] == first.batch_ids
    old_chunk_0 = first.batch_ids[0]
    backend = FakeBackend(layout, job_tagged={1: old_chunk_0})  # as if tagged chunk 1 (a stale look-up)
    ended = {again.batch_ids[0]: completed(again.batch_ids[0])}
    advance(again, FileRecordStore(layout.waves_file), backend, layout, ended)
    assert old_chunk_0 not in again.batch_ids and backend.created == [1]


def test_a_batch_refused_for_capacity_goes_back_to_pending_and_out_again(layout):
    job = prepared(layout, counts=(3, 2))
    manifest = submit(layout, FakeBackend(layout), job)  # no quota: every batch at once
    store = FileRecordStore(layout.waves_file)
    refused, answered = manifest.batch_ids[1], manifest.batch_ids[0]
    statuses = {
        answered: completed(answered),
        refused: {"outcome": "failed", "state": "failed", "errors": ["token_limit_exceeded: Enqueued token limit"]},
    }
    backend = FakeBackend(layout)
    advance(manifest, store, backend, layout, statuses)
    assert backend.created == [1] and refused not in manifest.batch_ids and answered in manifest.batch_ids
    record = JobState.load(layout.waves_file)
    assert record.chunk(1)["refused"][0]["batch_id"] == refused and record.data["learned_quota"]


def test_a_pending_chunk_whose_request_file_is_gone_fails_naming_it_and_creates_nothing(layout):
    from airflow_llm_batch.exceptions import JobFilesMissingError

    manifest = submit(
        layout, FakeBackend(layout), prepared(layout, counts=(3, 2)), quota=QueueQuota(concurrent_batches=1)
    )
    layout.chunk_file(1).unlink()
    backend = FakeBackend(layout)
    ended = {manifest.batch_ids[0]: completed(manifest.batch_ids[0])}
    with pytest.raises(JobFilesMissingError, match=r"chunk-00001\.jsonl"):
        advance(manifest, FileRecordStore(layout.waves_file), backend, layout, ended)
    assert backend.created == []


def test_a_job_without_pending_chunks_writes_no_wave_record(layout):
    manifest = submit(layout, FakeBackend(layout), prepared(layout, counts=(3, 2)))
    sensor = Accessor()
    statuses = {batch_id: completed(batch_id) for batch_id in manifest.batch_ids}
    backend = FakeBackend(layout)
    advance(manifest, TaskStateRecordStore(sensor, WAVES_KEY), backend, layout, statuses)
    assert sensor == {} and backend.created == [] and all(b.status for b in manifest.batches)


def test_pending_chunks_are_not_created_after_the_deadline(layout):
    manifest = submit(
        layout, FakeBackend(layout), prepared(layout, counts=(3, 2)), quota=QueueQuota(concurrent_batches=1)
    )
    backend = FakeBackend(layout)
    ended = {manifest.batch_ids[0]: completed(manifest.batch_ids[0])}
    advance(manifest, FileRecordStore(layout.waves_file), backend, layout, ended, now=manifest.deadline + 1)
    assert backend.created == [] and [p["chunk"] for p in manifest.pending] == [1]


def test_results_refuse_submits_manifest_while_it_has_pending_chunks(layout):
    """Submit's manifest names the first wave only: reading it would leave later waves' answers
    unread and their items sent again as never submitted. The sensor's manifest is the one to read."""
    from airflow_llm_batch.batch.results import collect_results
    from airflow_llm_batch.exceptions import ConfigurationError

    manifest = submit(
        layout, FakeBackend(layout), prepared(layout, counts=(3, 2)), quota=QueueQuota(concurrent_batches=1)
    )
    with pytest.raises(ConfigurationError, match=r"manifest=wait\.output"):
        collect_results(manifest, FakeBackend(layout), layout, None, None)  # type: ignore[arg-type]
