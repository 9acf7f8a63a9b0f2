"""Queue quotas as data and the wave planner (``batch/quota.py``): pure functions, no server."""

from __future__ import annotations

import pytest

from airflow_llm_batch.batch.quota import ChunkLoad, QueueQuota, learn_from_refusal, plan_wave
from airflow_llm_batch.exceptions import ConfigurationError

CHUNKS = [ChunkLoad(index, requests=100, tokens=10_000) for index in range(20)]


def test_no_quota_submits_every_chunk_at_once_as_before():
    quota = QueueQuota.from_settings({}, None)
    assert quota.unlimited
    assert plan_wave(CHUNKS, [], quota) == CHUNKS


def test_the_task_argument_overrides_the_connection_extra_measure_by_measure():
    extra = {"queue_quota": {"concurrent_batches": 5, "enqueued_requests": 1000}}
    quota = QueueQuota.from_settings(extra, {"concurrent_batches": 3})
    assert quota == QueueQuota(enqueued_requests=1000, concurrent_batches=3)


@pytest.mark.parametrize(
    "bad",
    [{"concurrent_batch": 3}, {"concurrent_batches": 0}, {"enqueued_tokens": "many"}, ["concurrent_batches"]],
)
def test_a_quota_that_cannot_work_is_refused_with_the_measures_named(bad):
    with pytest.raises(ConfigurationError, match="queue_quota"):
        QueueQuota.from_settings({}, bad)


def test_concurrent_batches_admit_chunks_in_order_up_to_the_limit():
    quota = QueueQuota(concurrent_batches=3)
    assert [load.chunk for load in plan_wave(CHUNKS, [], quota)] == [0, 1, 2]
    assert [load.chunk for load in plan_wave(CHUNKS[3:], CHUNKS[:2], quota)] == [3]
    assert plan_wave(CHUNKS[3:], CHUNKS[:3], quota) == []


def test_enqueued_tokens_and_requests_stop_the_wave_before_the_total_passes_them():
    assert len(plan_wave(CHUNKS, [], QueueQuota(enqueued_tokens=35_000))) == 3
    assert len(plan_wave(CHUNKS, [], QueueQuota(enqueued_requests=250))) == 2


def test_a_chunk_larger_than_the_whole_quota_goes_alone_once_nothing_runs():
    big = [ChunkLoad(0, 100, 90_000), ChunkLoad(1, 100, 10)]
    quota = QueueQuota(enqueued_tokens=50_000)
    assert [load.chunk for load in plan_wave(big, [], quota)] == [0]
    assert plan_wave(big[1:], big[:1], quota) == []  # in order: the small one waits its turn


def test_a_refusal_lowers_the_wave_size_to_what_ran_beside_it():
    learned = learn_from_refusal(QueueQuota(), CHUNKS[:5], "rate_limit_error: too many batches")
    assert learned.concurrent_batches == 5
    assert learn_from_refusal(QueueQuota(concurrent_batches=3), CHUNKS[:5], None).concurrent_batches == 3
    assert learn_from_refusal(QueueQuota(), [], "429").concurrent_batches == 1


def test_the_limit_stated_in_an_openai_refusal_is_learned():
    reason = (
        "token_limit_exceeded: Enqueued token limit reached for gpt-4o-mini in organization org-x. "
        "Limit: 2,000,000 enqueued tokens. Please try again once some in_progress batches have been completed."
    )
    learned = learn_from_refusal(QueueQuota(), CHUNKS[:4], reason)
    assert learned == QueueQuota(enqueued_tokens=2_000_000, concurrent_batches=4)


def test_chunk_tokens_count_request_bytes_and_the_output_allowance():
    load = ChunkLoad.estimate(7, requests=10, request_bytes=4000, parameters={"max_tokens": 50}, embedding=False)
    assert load == ChunkLoad(7, 10, 1000 + 500)
    assert ChunkLoad.estimate(7, 10, 4000, {}, embedding=True).tokens == 1000
