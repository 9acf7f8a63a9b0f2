"""When a waiting trigger polls: spread over the interval, the same after a restart, never past the deadline."""

from __future__ import annotations

import time
from collections import Counter

from airflow_llm_batch.triggers.completion import LLMBatchCompletionTrigger


def _trigger(batch_ids: list[str], deadline: float, poll_interval: float = 60.0) -> LLMBatchCompletionTrigger:
    return LLMBatchCompletionTrigger(
        conn_id="c",
        provider="openai",
        batch_ids=batch_ids,
        deadline=deadline,
        poll_interval=poll_interval,
        submitted_at=time.time(),
    )


def test_triggers_that_start_together_poll_at_different_points_of_the_interval():
    deadline = time.time() + 86400
    delays = [_trigger([f"batch_{n:04d}"], deadline)._first_delay() for n in range(1000)]
    assert all(0.0 <= d < 60.0 for d in delays)
    # Spread evenly: no tenth of the interval gets more than twice its share of the triggers.
    per_tenth = Counter(int(d // 6) for d in delays)
    assert len(per_tenth) == 10 and max(per_tenth.values()) < 200


def test_a_restarted_trigger_keeps_its_point_and_never_waits_past_the_deadline():
    deadline = time.time() + 86400
    first = _trigger(["batch_a", "batch_b"], deadline)
    _, kwargs = first.serialize()
    revived = LLMBatchCompletionTrigger(**kwargs)
    assert revived._first_delay() == first._first_delay()
    assert _trigger(["batch_a", "batch_b"], time.time() + 0.5)._first_delay() <= 0.5
    assert _trigger(["batch_a", "batch_b"], time.time() - 10)._first_delay() == 0.0
