"""The completion trigger as the triggerer runs it: serialized, restarted, past its deadline, polled through faults."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from airflow_llm_batch.batch.records import JobKey
from airflow_llm_batch.triggers.completion import LLMBatchCompletionTrigger
from tests.integration.conftest import TRIGGER_SECRET

SECRET = TRIGGER_SECRET
ITEMS = [{"id": f"t-{n}", "text": f"message {n}"} for n in range(10)]


def _trigger(manifest: Any, conn_id: str, **overrides: Any) -> LLMBatchCompletionTrigger:
    kwargs = {
        "conn_id": conn_id,
        "provider": manifest.provider,
        "batch_ids": manifest.batch_ids,
        "deadline": manifest.deadline,
        "poll_interval": 0.2,
        "submitted_at": manifest.submitted_at,
        **overrides,
    }
    return LLMBatchCompletionTrigger(**kwargs)


def _revive(trigger: LLMBatchCompletionTrigger) -> LLMBatchCompletionTrigger:
    """What a (re)started triggerer does: rebuild the trigger from the JSON stored in the database."""
    classpath, kwargs = trigger.serialize()
    stored = json.loads(json.dumps(kwargs))
    module, _, name = classpath.rpartition(".")
    cls = getattr(__import__(module, fromlist=[name]), name)
    return cls(**stored)


async def _first_event(trigger: LLMBatchCompletionTrigger) -> dict[str, Any]:
    async for event in trigger.run():
        return event.payload
    raise AssertionError("the trigger ended without an event")


def test_serialized_kwargs_are_plain_json_without_the_secret(flow, connection):
    _, manifest = flow.submit(ITEMS)
    classpath, kwargs = _trigger(manifest, connection).serialize()
    assert classpath == "airflow_llm_batch.triggers.completion.LLMBatchCompletionTrigger"
    assert SECRET not in json.dumps(kwargs)


def test_a_triggerer_restart_resumes_polling_with_the_deadline_fixed_at_submit(flow, connection, llm_batch_emulator):
    llm_batch_emulator.update_scenario(completion_seconds=2.0)
    _, manifest = flow.submit(ITEMS)
    first = _trigger(manifest, connection)

    async def die_while_waiting() -> None:
        waiting = asyncio.ensure_future(_first_event(first))
        await asyncio.sleep(0.6)
        waiting.cancel()  # the triggerer process goes away mid-wait
        with pytest.raises(asyncio.CancelledError):
            await waiting

    asyncio.run(die_while_waiting())
    polls_before = len([r for r in llm_batch_emulator.requests(flow.provider) if r["method"] == "GET"])
    revived = _revive(first)
    assert revived.deadline == manifest.deadline
    event = asyncio.run(_first_event(revived))
    assert event["status"] == "success"
    assert all(s["outcome"] == "completed" for s in event["batches"].values())
    assert len([r for r in llm_batch_emulator.requests(flow.provider) if r["method"] == "GET"]) > polls_before
    assert len(llm_batch_emulator.ledger()["batches"]) == 1


def test_status_errors_while_polling_are_retried_not_fatal(flow, connection, llm_batch_emulator):
    llm_batch_emulator.update_scenario(completion_seconds=1.0)
    _, manifest = flow.submit(ITEMS)
    faults = [
        {"route": "batches", "method": "GET", "status": 503, "count": 3},
        {"route": "batches", "method": "GET", "status": 429, "count": 2},
    ]
    llm_batch_emulator.update_scenario(http_faults=faults)
    event = asyncio.run(_first_event(_trigger(manifest, connection, poll_interval=0.05)))
    assert event["status"] == "success"


def test_at_the_deadline_running_batches_are_cancelled_and_what_finished_is_harvested(
    flow, connection, llm_batch_emulator
):
    llm_batch_emulator.update_scenario(completion_seconds=60.0)
    layout, manifest = flow.submit(ITEMS)
    trigger = _trigger(manifest, connection, deadline=manifest.submitted_at + 1.0)
    event = asyncio.run(_first_event(trigger))
    assert event["status"] == "timeout"
    assert {s["outcome"] for s in event["batches"].values()} == {"cancelled"}
    _, rows = flow.collect(layout, manifest)
    assert sorted(r["id"] for r in rows) == sorted(i["id"] for i in ITEMS)
    assert all(r["status"] == "succeeded" or (r["retryable"] and r["error_type"] == "cancelled") for r in rows)


def test_with_pending_chunks_the_trigger_fires_when_capacity_frees(flow, connection, llm_batch_emulator):
    """Under a queue quota the sensor must create the next wave as soon as one batch ends."""
    llm_batch_emulator.update_scenario(completion_seconds=0.5)
    _, fast = flow.submit(ITEMS)
    llm_batch_emulator.update_scenario(completion_seconds=30.0)
    _, slow = flow.submit(ITEMS, key=JobKey("dag", "submit", "other-run"))
    trigger = _revive(_trigger(fast, connection, batch_ids=fast.batch_ids + slow.batch_ids, pending_chunks=3))
    event = asyncio.run(asyncio.wait_for(_first_event(trigger), 20))
    assert event["status"] == "capacity"
    assert event["batches"][fast.batch_ids[0]]["outcome"] == "completed"
    assert event["batches"][slow.batch_ids[0]]["outcome"] is None


def test_with_pending_chunks_and_nothing_running_the_trigger_fires_after_one_interval(flow, connection):
    _, manifest = flow.submit(ITEMS)
    trigger = _trigger(manifest, connection, batch_ids=[], pending_chunks=2, poll_interval=0.3)
    event = asyncio.run(asyncio.wait_for(_first_event(trigger), 5))
    assert event["status"] == "capacity"
