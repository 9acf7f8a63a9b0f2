"""Failing fast where waiting cannot help: a key rejected or a batch gone while the trigger waits.

The real SDK clients poll the emulator; once the trigger has seen its batch running, the emulator
starts refusing: another key accepted (OpenAI and Anthropic answer 401, Gemini 400
``API_KEY_INVALID``) or every batch forgotten (404, on all four providers). The trigger fires an
``error`` event on the first refused poll, naming the connection and the batch and never the key:
one refused status request per batch, no backoff rounds (which used to take ten rounds, about 14
minutes with the default interval).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from airflow_llm_batch.batch.backends.base import ClientConfig
from airflow_llm_batch.batch.backends.vertex import VertexBackend
from airflow_llm_batch.triggers.completion import LLMBatchCompletionTrigger
from tests.integration.conftest import TRIGGER_SECRET
from tests.integration.harness import items, submit_items
from tests.integration.test_trigger import ITEMS, _trigger
from tests.integration.test_vertex_backend import SPEC as VERTEX_SPEC

POLL_SECONDS = 0.3


async def _refused_event(trigger: LLMBatchCompletionTrigger, emulator: Any, provider: str, refuse: Any) -> Any:
    """Run the trigger; once a status poll was answered 200, ``refuse()``; return the event."""

    async def first_event() -> Any:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("the trigger ended without an event")

    waiting = asyncio.ensure_future(first_event())
    async with asyncio.timeout(60):
        while not _status_polls(emulator, provider, 200):
            assert not waiting.done(), waiting.result()
            await asyncio.sleep(0.05)
        refuse()
        return await waiting


def _status_polls(emulator: Any, provider: str, status: int) -> list[dict[str, Any]]:
    return [r for r in emulator.requests(provider) if r["method"] == "GET" and r["status"] == status]


def _check_message(event: dict[str, Any], refusal: str, batch_id: str, conn_id: str) -> None:
    assert event["status"] == "error"
    assert event["refusal"] == refusal
    assert batch_id in event["message"] and repr(conn_id) in event["message"]
    assert TRIGGER_SECRET not in json.dumps(event)
    assert "Waiting cannot help" in event["message"]


def test_a_rejected_key_fails_the_wait_on_the_first_refused_poll(flow, connection, llm_batch_emulator):
    llm_batch_emulator.update_scenario(completion_seconds=3600.0)
    _, manifest = flow.submit(ITEMS)
    trigger = _trigger(manifest, connection, poll_interval=POLL_SECONDS)

    def rotate_the_key() -> None:
        llm_batch_emulator.update_scenario(api_key="a-key-nobody-has")

    event = asyncio.run(_refused_event(trigger, llm_batch_emulator, flow.provider, rotate_the_key))
    _check_message(event, "auth", manifest.batch_ids[0], connection)
    expected = {"openai": 401, "anthropic": 401, "gemini": 400}[flow.provider]
    assert f"HTTP {expected}" in event["message"]
    # One refused status request per batch: the trigger stopped at the first refusal.
    assert len(_status_polls(llm_batch_emulator, flow.provider, expected)) == len(manifest.batch_ids)


def test_a_vanished_batch_fails_the_wait_on_the_first_refused_poll(flow, connection, llm_batch_emulator):
    llm_batch_emulator.update_scenario(completion_seconds=3600.0)
    _, manifest = flow.submit(ITEMS)
    trigger = _trigger(manifest, connection, poll_interval=POLL_SECONDS)
    event = asyncio.run(_refused_event(trigger, llm_batch_emulator, flow.provider, llm_batch_emulator.reset))
    _check_message(event, "not_found", manifest.batch_ids[0], connection)
    assert "HTTP 404" in event["message"]
    assert len(_status_polls(llm_batch_emulator, flow.provider, 404)) == len(manifest.batch_ids)


def test_transient_errors_still_back_off_instead_of_failing(flow, connection, llm_batch_emulator):
    """The other side of the rule: a 503 is retried (the poll after it succeeds), not a refusal."""
    llm_batch_emulator.update_scenario(completion_seconds=1.0)
    _, manifest = flow.submit(ITEMS)
    llm_batch_emulator.update_scenario(http_faults=[{"route": "batches", "method": "GET", "status": 503, "count": 1}])
    trigger = _trigger(manifest, connection, poll_interval=0.05)

    async def first_event() -> Any:
        async for event in trigger.run():
            return event.payload

    assert asyncio.run(first_event())["status"] == "success"


@pytest.fixture
def vertex_connection(monkeypatch, llm_batch_emulator):
    extra = {
        "project": "test-project",
        "location": "us-central1",
        "bigquery_endpoint": llm_batch_emulator.bigquery_url,
        "bigquery_dataset": "llm_batch",
        "max_retries": 0,
    }
    conn = {
        "conn_type": "llm_batch_vertex",
        "password": TRIGGER_SECRET,
        "host": llm_batch_emulator.vertex_base_url,
        "extra": extra,
    }
    monkeypatch.setenv("AIRFLOW_CONN_VERTEX_TRIGGER_TEST", json.dumps(conn))
    return "vertex_trigger_test"


def test_a_vanished_vertex_job_fails_the_wait_on_the_first_refused_poll(
    vertex_connection, llm_batch_emulator, tmp_path
):
    extra = {"project": "test-project", "bigquery_endpoint": llm_batch_emulator.bigquery_url, "max_retries": 0}
    backend = VertexBackend(ClientConfig(api_key="token", base_url=llm_batch_emulator.vertex_base_url, extra=extra))
    try:
        backend.bigquery.create_dataset("llm_batch")
        llm_batch_emulator.update_scenario(completion_seconds=3600.0)
        _, manifest = submit_items(backend, tmp_path, items(5), VERTEX_SPEC, template="{text}")
    finally:
        backend.close()
    trigger = LLMBatchCompletionTrigger(
        conn_id=vertex_connection,
        provider="vertex",
        batch_ids=manifest.batch_ids,
        deadline=manifest.deadline,
        poll_interval=POLL_SECONDS,
        submitted_at=manifest.submitted_at,
    )
    event = asyncio.run(_refused_event(trigger, llm_batch_emulator, "vertex", llm_batch_emulator.reset))
    _check_message(event, "not_found", manifest.batch_ids[0], vertex_connection)
    assert "HTTP 404" in event["message"] and "NOT_FOUND" in event["message"]
    assert len(_status_polls(llm_batch_emulator, "vertex", 404)) == 1


def test_poke_mode_fails_the_same_way(flow, llm_batch_emulator, monkeypatch):
    """Poke mode: a rejected key fails the try (a retry reads the connection again), a vanished
    batch fails the task without retries (``AirflowFailException``)."""
    try:
        from airflow.sdk.exceptions import AirflowFailException
    except ImportError:  # Airflow 3.1
        from airflow.exceptions import AirflowFailException  # type: ignore[no-redef]

    from airflow_llm_batch.exceptions import BatchRefusedError
    from airflow_llm_batch.sensors.completion import LLMBatchCompletionSensor
    from tests.integration.conftest import base_url

    llm_batch_emulator.update_scenario(completion_seconds=3600.0)
    _, manifest = flow.submit(ITEMS)  # recorded with conn_id "c"
    conn = {"conn_type": f"llm_batch_{flow.provider}", "password": TRIGGER_SECRET}
    monkeypatch.setenv("AIRFLOW_CONN_C", json.dumps({**conn, "host": base_url(llm_batch_emulator, flow.provider)}))
    sensor = LLMBatchCompletionSensor(task_id="wait", manifest=manifest.to_dict(), deferrable=False)
    assert sensor.poke({}) is False  # running
    llm_batch_emulator.update_scenario(api_key="a-key-nobody-has")
    with pytest.raises(BatchRefusedError, match="rejected the credentials of connection 'c'") as refused:
        sensor.poke({})
    assert manifest.batch_ids[0] in str(refused.value) and TRIGGER_SECRET not in str(refused.value)
    llm_batch_emulator.reset()
    with pytest.raises(AirflowFailException, match=f"batch {manifest.batch_ids[0]} does not exist"):
        sensor.poke({})
