"""job.py's state machine: each chunk's batch created once per job key, across task retries.

A fake backend stands in for the provider here (the real ones are exercised against the
emulator in tests/integration): it records every create and every lookup by the job-key tag, and
reads the state file at the moment of each create, so the *intent before the call* rule is seen.
"""

from __future__ import annotations

import pytest

from airflow_llm_batch.batch import jsonl
from airflow_llm_batch.batch.backends.base import ChunkFile, PreparedJob, RequestSpec
from airflow_llm_batch.batch.job import submit_prepared
from airflow_llm_batch.batch.quota import QueueQuota
from airflow_llm_batch.batch.records import BatchStatus, JobKey, Kind
from airflow_llm_batch.batch.state import JobLayout, JobState
from airflow_llm_batch.exceptions import StateConflictError

KEY = JobKey("dag", "submit", "run-1", -1)
SPEC = RequestSpec(model="gpt-4.1-mini", kind=Kind.CHAT)


class FakeBackend:
    provider = "fake"

    def __init__(
        self,
        layout: JobLayout,
        tagged: dict[int, str] | None = None,
        fail_on: int | None = None,
        job_tagged: dict[int, str] | None = None,
    ) -> None:
        self.layout = layout
        self.tagged = dict(tagged or {})
        self.job_tagged = dict(job_tagged or {})  # what a lookup of the whole job key finds
        self.fail_on = fail_on
        self.created: list[int] = []
        self.looked_up: list[int] = []
        self.job_lookups = 0
        self.state_at_create: list[dict] = []

    def chunk_problems(self, chunks: list[ChunkFile]) -> list[str]:
        return []

    def submit_chunk(self, chunk: ChunkFile, spec: RequestSpec, job_key: JobKey) -> str:
        self.state_at_create.append(JobState.load(self.layout.state_file).chunk(chunk.index))
        if chunk.index == self.fail_on:
            raise ConnectionError("the create call dropped")
        self.created.append(chunk.index)
        return f"batch-{chunk.index}-{len(self.created)}"

    def find_batch(self, job_key: JobKey, chunk_index: int) -> str | None:
        self.looked_up.append(chunk_index)
        return self.tagged.get(chunk_index)

    def find_batches(self, job_key: JobKey) -> dict[int, str]:
        self.job_lookups += 1
        return dict(self.job_tagged)

    def get_status(self, batch_id: str) -> BatchStatus:
        return BatchStatus(batch_id, "in_progress", None, 0, 0, 0)

    def is_capacity_error(self, error: BaseException) -> bool:
        return isinstance(error, QuotaRefusal)

    def refused_for_capacity(self, errors: tuple[str, ...]) -> bool:
        return any(error.startswith("token_limit_exceeded") for error in errors)


class QuotaRefusal(Exception):
    """What a 429 on create stands for here."""


def prepared(layout: JobLayout, counts=(3, 2), fingerprint="fp-1") -> PreparedJob:
    chunks = tuple(ChunkFile(i, layout.chunk_file(i), n, 100 * n, SPEC.model) for i, n in enumerate(counts))
    return PreparedJob(chunks=chunks, item_count=sum(counts), fingerprint=fingerprint)


def submit(layout, backend, job, *, now=1000.0, on_input_change="fail", quota=None):
    return submit_prepared(
        job,
        backend=backend,  # type: ignore[arg-type]
        spec=SPEC,
        job_key=KEY,
        layout=layout,
        conn_id="conn",
        attempt=1,
        timeout_seconds=60,
        on_input_change=on_input_change,
        clock=lambda: now,
        quota=quota,
    )


@pytest.fixture
def layout(tmp_path) -> JobLayout:
    layout = JobLayout.for_job(tmp_path, KEY, attempt=1)
    layout.requests_dir.mkdir(parents=True)
    return layout


def test_a_first_try_records_intent_before_each_create_and_the_batch_after(layout):
    backend = FakeBackend(layout)
    manifest = submit(layout, backend, prepared(layout))
    assert backend.created == [0, 1] and backend.looked_up == []
    assert backend.job_lookups == 1  # no record yet: the provider was asked for the job key's batches first
    assert [s["state"] for s in backend.state_at_create] == ["intent", "intent"]
    state = JobState.load(layout.state_file)
    assert [state.chunk(i)["state"] for i in (0, 1)] == ["submitted", "submitted"]
    assert manifest.batch_ids == [state.chunk(0)["batch_id"], state.chunk(1)["batch_id"]]
    assert (manifest.submitted_at, manifest.deadline, manifest.item_count) == (1000.0, 1060.0, 5)
    assert state.data["fingerprint"] == "fp-1" and state.data["job_key"] == KEY.as_string()


def test_a_task_retry_reattaches_and_keeps_the_first_deadline(layout):
    first = submit(layout, FakeBackend(layout), prepared(layout))
    backend = FakeBackend(layout)
    again = submit(layout, backend, prepared(layout), now=5000.0)
    assert backend.created == [] and backend.looked_up == [] and backend.job_lookups == 0
    assert again.batch_ids == first.batch_ids and again.deadline == first.deadline == 1060.0


def test_a_chunk_left_at_intent_is_found_by_its_tag_and_not_created_again(layout):
    backend = FakeBackend(layout, fail_on=1)
    with pytest.raises(ConnectionError):
        submit(layout, backend, prepared(layout))
    assert JobState.load(layout.state_file).chunk(1)["state"] == "intent"

    retry = FakeBackend(layout, tagged={1: "batch-found-by-tag"})
    manifest = submit(layout, retry, prepared(layout))
    assert retry.created == [] and retry.looked_up == [1]
    assert manifest.batch_ids[1] == "batch-found-by-tag"
    assert JobState.load(layout.state_file).chunk(1)["recovered"] is True


def test_a_chunk_left_at_intent_that_the_provider_does_not_know_is_created_once_more(layout):
    with pytest.raises(ConnectionError):
        submit(layout, FakeBackend(layout, fail_on=0), prepared(layout))
    retry = FakeBackend(layout)
    manifest = submit(layout, retry, prepared(layout))
    assert retry.looked_up == [0] and retry.created == [0, 1]
    assert len(set(manifest.batch_ids)) == 2


def test_changed_input_is_refused_before_any_create_unless_resubmit_is_asked(layout):
    first = submit(layout, FakeBackend(layout), prepared(layout))
    backend = FakeBackend(layout)
    with pytest.raises(StateConflictError, match="on_input_change='resubmit'"):
        submit(layout, backend, prepared(layout, counts=(4,), fingerprint="fp-2"))
    assert backend.created == []

    manifest = submit(layout, backend, prepared(layout, counts=(4,), fingerprint="fp-2"), on_input_change="resubmit")
    assert backend.created == [0] and manifest.item_count == 4
    state = jsonl.loads(layout.state_file.read_bytes())
    assert state["fingerprint"] == "fp-2"
    assert [c["batch_id"] for c in state["superseded"][0]["chunks"].values()] == first.batch_ids


def test_a_lost_record_is_answered_by_the_job_keys_tags_before_anything_is_created(layout):
    first = submit(layout, FakeBackend(layout), prepared(layout))
    layout.state_file.unlink()  # the work dir went away with the record
    found = dict(enumerate(first.batch_ids))
    backend = FakeBackend(layout, job_tagged=found)
    again = submit(layout, backend, prepared(layout))
    assert backend.created == [] and backend.job_lookups == 1
    assert again.batch_ids == first.batch_ids
    assert all(JobState.load(layout.state_file).chunk(i)["recovered"] for i in (0, 1))


def test_a_chunk_the_lookup_misses_is_created_and_the_others_re_attach(layout):
    backend = FakeBackend(layout, job_tagged={0: "batch-0-lost"})
    manifest = submit(layout, backend, prepared(layout))
    assert backend.created == [1] and manifest.batch_ids[0] == "batch-0-lost"


def test_batches_set_aside_by_resubmit_are_not_taken_back_by_the_lookup(layout):
    first = submit(layout, FakeBackend(layout), prepared(layout))
    backend = FakeBackend(layout, job_tagged=dict(enumerate(first.batch_ids)))
    manifest = submit(layout, backend, prepared(layout, fingerprint="fp-2"), on_input_change="resubmit")
    assert backend.created == [0, 1] and manifest.fingerprint == "fp-2"  # both chunks of the new input created


def test_the_record_keeps_fields_it_does_not_know(layout):
    submit(layout, FakeBackend(layout), prepared(layout, counts=(3, 2, 4)))
    state = JobState.load(layout.state_file)
    state.data["pending"] = [2]  # another feature's field (waves) in the same JSON document
    state.save()
    submit(layout, FakeBackend(layout), prepared(layout, counts=(3, 2, 4)))
    assert JobState.load(layout.state_file).data["pending"] == [2]


def test_an_empty_job_creates_nothing_and_still_has_a_deadline(layout):
    backend = FakeBackend(layout)
    manifest = submit(layout, backend, prepared(layout, counts=()))
    assert backend.created == [] and manifest.batches == [] and manifest.deadline == 1060.0


def test_under_a_quota_the_chunks_beyond_it_are_recorded_pending_not_created(layout):
    backend = FakeBackend(layout)
    manifest = submit(layout, backend, prepared(layout, counts=(3, 2, 4)), quota=QueueQuota(concurrent_batches=2))
    assert backend.created == [0, 1] and manifest.wave == 1
    # The pending chunk travels to the sensor with what creating it takes, never item data.
    [pending] = manifest.pending
    assert pending["chunk"] == 2 and pending["count"] == 4 and pending["bytes"] == 400 and pending["tokens"] > 0
    assert pending["uri"].endswith("requests/chunk-00002.jsonl") and pending["model"] == SPEC.model
    assert manifest.queue_quota["concurrent_batches"] == 2 and all(b.tokens > 0 for b in manifest.batches)
    state = JobState.load(layout.state_file)
    assert state.chunk(2)["state"] == "pending" and state.data["queue_quota"]["concurrent_batches"] == 2
    assert state.data["handed_off"] is True


def test_a_create_refused_for_capacity_leaves_its_chunk_pending_and_lowers_the_wave_size(layout):
    backend = FakeBackend(layout)

    def refuse_the_second(chunk, spec, job_key):
        if chunk.index == 1:
            raise QuotaRefusal("429 rate_limit_error")
        return f"batch-{chunk.index}"

    backend.submit_chunk = refuse_the_second  # type: ignore[method-assign]
    manifest = submit(layout, backend, prepared(layout, counts=(3, 2, 4)))
    assert manifest.batch_ids == ["batch-0"] and [p["chunk"] for p in manifest.pending] == [1, 2]
    state = JobState.load(layout.state_file)
    assert state.chunk(1)["state"] == "pending" and state.data["learned_quota"]["concurrent_batches"] == 1


def test_after_the_hand_off_a_retry_or_cleared_submit_creates_nothing_the_pending_chunks_are_the_sensors(layout):
    quota = QueueQuota(concurrent_batches=2)
    first = submit(layout, FakeBackend(layout), prepared(layout, counts=(3, 2, 4, 1)), quota=quota)
    backend = FakeBackend(layout)
    again = submit(layout, backend, prepared(layout, counts=(3, 2, 4, 1)), quota=quota, now=1010.0)
    assert backend.created == [] and backend.job_lookups == 0 and backend.looked_up == []
    assert again.batch_ids == first.batch_ids and [p["chunk"] for p in again.pending] == [2, 3]


def test_a_submit_that_died_in_its_first_wave_finishes_it_on_retry_then_hands_off(layout):
    quota = QueueQuota(concurrent_batches=2)
    with pytest.raises(ConnectionError):
        submit(layout, FakeBackend(layout, fail_on=1), prepared(layout, counts=(3, 2, 4)), quota=quota)
    assert "handed_off" not in JobState.load(layout.state_file).data
    backend = FakeBackend(layout)
    manifest = submit(layout, backend, prepared(layout, counts=(3, 2, 4)), quota=quota)
    # The chunk left at intent is looked up by tag, then created; the pending one is not touched.
    assert backend.looked_up == [1] and backend.created == [1] and [p["chunk"] for p in manifest.pending] == [2]
    assert JobState.load(layout.state_file).data["handed_off"] is True


def test_a_cleared_run_past_its_deadline_with_chunks_pending_gets_a_new_deadline(layout):
    quota = QueueQuota(concurrent_batches=1)
    first = submit(layout, FakeBackend(layout), prepared(layout), quota=quota)
    assert first.deadline == 1060.0
    again = submit(layout, FakeBackend(layout), prepared(layout), quota=quota, now=5000.0)
    assert again.deadline == 5060.0 and again.batch_ids == first.batch_ids
