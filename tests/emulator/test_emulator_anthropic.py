"""The emulated Anthropic Message Batches API, driven through the real ``anthropic`` clients.

Most tests set a long ``completion_seconds`` and move the emulator's clock with ``emu.advance``:
the timeline is then exact and no test sleeps.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any, Literal

import anthropic
import httpx2
import jsonschema
import pytest
from pydantic import BaseModel, Field

from airflow_llm_batch.emulator import Emulator, HttpFault


class Ticket(BaseModel):
    category: Literal["billing", "technical", "account"]
    priority: int = Field(ge=1, le=5)
    summary: str = Field(max_length=40)
    tags: list[str] = Field(min_length=1)


@pytest.fixture
def anthropic_client(emu: Emulator) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(api_key="test-key", base_url=emu.anthropic_base_url, max_retries=0) as client:
        yield client


def request(custom_id: str, text: str = "my billing statement is wrong again", **params: Any) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "params": {
            "model": "claude-x",
            "max_tokens": 256,
            "messages": [{"role": "user", "content": text}],
            **params,
        },
    }


def tickets(count: int, **params: Any) -> list[dict[str, Any]]:
    return [request(f"t-{i}", f"Ticket {i}: my billing statement is wrong again", **params) for i in range(count)]


def raw_results(client: anthropic.Anthropic, batch_id: str) -> bytes:
    with client.messages.batches.with_streaming_response.results(batch_id) as response:
        return response.read()


def test_batch_is_in_progress_with_everything_processing_until_the_whole_batch_ends(
    emu: Emulator, anthropic_client: anthropic.Anthropic
) -> None:
    emu.set_scenario(completion_seconds=10)
    batch = anthropic_client.messages.batches.create(requests=tickets(20))
    assert batch.id.startswith("msgbatch_") and batch.type == "message_batch"
    assert batch.processing_status == "in_progress" and batch.results_url is None
    assert batch.request_counts.processing == 20 and batch.ended_at is None
    assert batch.created_at.tzinfo is not None  # RFC 3339 strings, parsed by the SDK
    assert batch.expires_at - batch.created_at == timedelta(hours=24)

    emu.advance(6)
    batch = anthropic_client.messages.batches.retrieve(batch.id)
    assert batch.processing_status == "in_progress"
    counts = batch.request_counts
    assert (counts.processing, counts.succeeded, counts.errored) == (20, 0, 0)

    emu.advance(4.5)
    batch = anthropic_client.messages.batches.retrieve(batch.id)
    assert batch.processing_status == "ended" and batch.ended_at is not None
    assert (batch.request_counts.processing, batch.request_counts.succeeded) == (0, 20)
    assert batch.created_at < batch.ended_at
    # The SDK follows results_url literally, so it must point back at the emulator.
    assert batch.results_url == f"{emu.anthropic_base_url}/v1/messages/batches/{batch.id}/results"


def test_results_hold_every_request_once_with_no_blank_lines(emu: Emulator, anthropic_client) -> None:
    emu.set_scenario(completion_seconds=1, item_errors={"server_error": 0.2, "rate_limited": 0.2})
    batch = anthropic_client.messages.batches.create(requests=tickets(30))
    emu.advance(2)
    content = raw_results(anthropic_client, batch.id)
    assert content.endswith(b"\n") and b"\n\n" not in content
    records = [json.loads(line) for line in content.splitlines()]
    assert sorted(r["custom_id"] for r in records) == sorted(f"t-{i}" for i in range(30))
    assert [r["custom_id"] for r in records] != [f"t-{i}" for i in range(30)]  # not in request order

    parsed = list(anthropic_client.messages.batches.results(batch.id))
    types = Counter(r.result.type for r in parsed)
    counts = anthropic_client.messages.batches.retrieve(batch.id).request_counts
    assert types == Counter({"succeeded": counts.succeeded, "errored": counts.errored})
    assert counts.errored > 0 and counts.succeeded > 0
    for item in parsed:
        if item.result.type == "errored":
            error = item.result.error  # a full ErrorResponse, not a bare error object
            assert error.type == "error" and error.request_id
            assert error.error.type in ("rate_limit_error", "api_error", "overloaded_error")
        else:
            message = item.result.message
            assert message.content[0].type == "text" and message.content[0].text.startswith("Summary: Ticket")
            assert message.usage.input_tokens > 0 and message.stop_reason == "end_turn"


def test_item_errors_come_back_with_anthropic_error_types(emu: Emulator, anthropic_client) -> None:
    emu.set_scenario(
        completion_seconds=1,
        item_errors={"invalid_request": 0.25, "context_length": 0.25, "content_filtered": 0.25},
    )
    batch = anthropic_client.messages.batches.create(requests=tickets(40))
    emu.advance(2)
    seen = set()
    for item in anthropic_client.messages.batches.results(batch.id):
        kind = emu.scenario.item_error(item.custom_id)
        result = item.result
        if kind == "content_filtered":  # not an error at Anthropic: a message that stopped on refusal
            assert result.type == "succeeded" and result.message.stop_reason == "refusal"
        elif kind == "context_length":
            assert result.type == "errored" and result.error.error.type == "invalid_request_error"
            assert "prompt is too long" in result.error.error.message
        elif kind == "invalid_request":
            assert result.type == "errored" and result.error.error.type == "invalid_request_error"
        else:
            assert result.type == "succeeded" and result.message.stop_reason == "end_turn"
        seen.add(kind)
    assert seen == {None, "invalid_request", "context_length", "content_filtered"}


def test_native_structured_output_satisfies_the_schema(emu: Emulator, anthropic_client) -> None:
    emu.set_scenario(completion_seconds=0)
    output_config = {"format": {"type": "json_schema", "schema": anthropic.transform_schema(Ticket)}}
    batch = anthropic_client.messages.batches.create(requests=tickets(10, output_config=output_config))
    results = list(anthropic_client.messages.batches.results(batch.id))
    assert len(results) == 10
    for item in results:
        value = json.loads(item.result.message.content[0].text)
        # The bounds transform_schema moved into descriptions are honoured, as a real model would.
        jsonschema.validate(value, Ticket.model_json_schema())
        assert value["category"] == "billing"


def test_forced_tool_use_answers_with_a_tool_input_that_satisfies_the_schema(emu: Emulator, anthropic_client) -> None:
    emu.set_scenario(completion_seconds=0)
    tool = {"name": "ticket", "description": "Record the ticket", "input_schema": Ticket.model_json_schema()}
    requests = tickets(3, tools=[tool], tool_choice={"type": "tool", "name": "ticket"})
    batch = anthropic_client.messages.batches.create(requests=requests)
    for item in anthropic_client.messages.batches.results(batch.id):
        message = item.result.message
        assert message.stop_reason == "tool_use"
        [block] = message.content
        assert block.type == "tool_use" and block.name == "ticket"
        jsonschema.validate(block.input, Ticket.model_json_schema())


def test_invalid_output_rate_breaks_structured_output(emu: Emulator, anthropic_client) -> None:
    emu.set_scenario(completion_seconds=0, invalid_output_rate=1.0)
    output_config = {"format": {"type": "json_schema", "schema": anthropic.transform_schema(Ticket)}}
    batch = anthropic_client.messages.batches.create(requests=tickets(6, output_config=output_config))
    validator = jsonschema.Draft202012Validator(Ticket.model_json_schema())
    for item in anthropic_client.messages.batches.results(batch.id):
        text = item.result.message.content[0].text
        try:
            valid = validator.is_valid(json.loads(text))
        except ValueError:
            valid = False
        assert not valid, text


def test_list_pages_newest_first_with_first_and_last_ids(emu: Emulator, anthropic_client) -> None:
    created = [anthropic_client.messages.batches.create(requests=tickets(1)).id for _ in range(5)]
    newest_first = created[::-1]

    page = anthropic_client.messages.batches.list(limit=2)
    assert [b.id for b in page.data] == newest_first[:2]
    assert (page.first_id, page.last_id, page.has_more) == (newest_first[0], newest_first[1], True)
    assert [b.id for b in anthropic_client.messages.batches.list(limit=2)] == newest_first  # auto-paging

    back = anthropic_client.messages.batches.list(limit=2, before_id=newest_first[4])
    assert [b.id for b in back.data] == newest_first[2:4] and back.has_more
    # Paging back, the SDK sends before_id=first_id: pages come newest-last, items newest-first in each.
    paged_back = [b.id for b in anthropic_client.messages.batches.list(limit=2, before_id=newest_first[4])]
    assert paged_back == newest_first[2:4] + newest_first[0:2]
    queries = [r["query"] for r in emu.requests("anthropic") if r["method"] == "GET"]
    assert f"limit=2&after_id={newest_first[1]}" in queries


def test_cancel_moves_through_canceling_and_the_unprocessed_requests_are_canceled(
    emu: Emulator, anthropic_client
) -> None:
    emu.set_scenario(completion_seconds=10)
    batch = anthropic_client.messages.batches.create(requests=tickets(10))
    emu.advance(4)
    with pytest.raises(anthropic.BadRequestError, match="still processing"):
        anthropic_client.messages.batches.delete(batch.id)

    canceling = anthropic_client.messages.batches.cancel(batch.id)
    assert canceling.processing_status == "canceling" and canceling.cancel_initiated_at is not None
    emu.advance(2)
    ended = anthropic_client.messages.batches.retrieve(batch.id)
    assert ended.processing_status == "ended"
    assert (ended.request_counts.succeeded, ended.request_counts.canceled) == (4, 6)
    types = Counter(r.result.type for r in anthropic_client.messages.batches.results(batch.id))
    assert types == Counter({"succeeded": 4, "canceled": 6})
    with pytest.raises(anthropic.BadRequestError, match="already ended"):
        anthropic_client.messages.batches.cancel(batch.id)

    deleted = anthropic_client.messages.batches.delete(batch.id)
    assert (deleted.id, deleted.type) == (batch.id, "message_batch_deleted")
    with pytest.raises(anthropic.NotFoundError):
        anthropic_client.messages.batches.retrieve(batch.id)


def test_an_expired_batch_ran_half_its_requests_and_expired_the_rest(emu: Emulator, anthropic_client) -> None:
    emu.set_scenario(completion_seconds=1, batch_outcome="expired")
    batch = anthropic_client.messages.batches.create(requests=tickets(10))
    emu.advance(1.5)
    batch = anthropic_client.messages.batches.retrieve(batch.id)
    assert batch.processing_status == "ended" and batch.cancel_initiated_at is None
    assert (batch.request_counts.succeeded, batch.request_counts.expired) == (5, 5)
    types = Counter(r.result.type for r in anthropic_client.messages.batches.results(batch.id))
    assert types == Counter({"succeeded": 5, "expired": 5})


def test_a_batch_cancelled_by_someone_else_ends_with_canceled_results(emu: Emulator, anthropic_client) -> None:
    emu.set_scenario(completion_seconds=4, batch_outcome="cancelled")
    batch = anthropic_client.messages.batches.create(requests=tickets(8))
    emu.advance(2.1)
    assert anthropic_client.messages.batches.retrieve(batch.id).processing_status == "canceling"
    emu.advance(2)
    batch = anthropic_client.messages.batches.retrieve(batch.id)
    assert batch.processing_status == "ended" and batch.cancel_initiated_at is not None
    assert (batch.request_counts.succeeded, batch.request_counts.canceled) == (4, 4)


@pytest.mark.parametrize(
    ("requests", "scenario", "status", "message"),
    [
        ([request("a"), request("a")], {}, 400, "must be unique"),
        ([request("ticket/7")], {}, 400, "should match pattern"),
        ([{"custom_id": "a", "params": "not an object"}], {}, 400, "params"),
        ([request(f"r{i}") for i in range(4)], {"max_requests_per_batch": 3}, 400, "at most 3 requests"),
        ([request("a")], {"max_bytes_per_batch": 50}, 413, "maximum size"),
        ([request("a")], {"batch_outcome": "failed"}, 400, "batch_outcome=failed"),
    ],
)
def test_bad_batches_are_refused_at_create_and_never_created(
    emu: Emulator, anthropic_client, requests, scenario, status, message
) -> None:
    emu.set_scenario(**scenario)
    with pytest.raises(anthropic.APIStatusError, match=message) as raised:
        anthropic_client.messages.batches.create(requests=requests)
    assert raised.value.status_code == status
    assert raised.value.body["error"]["type"] == ("request_too_large" if status == 413 else "invalid_request_error")
    assert emu.ledger()["batches"] == []
    assert list(anthropic_client.messages.batches.list()) == []


def test_both_auth_headers_are_accepted_and_a_wrong_key_is_refused(emu: Emulator) -> None:
    emu.set_scenario(api_key="right-key")
    url = f"{emu.anthropic_base_url}/v1/messages/batches"
    with httpx2.Client() as http:
        by_header = http.get(url, headers={"x-api-key": "right-key", "anthropic-version": "2023-06-01"})
        by_bearer = http.get(url, headers={"authorization": "Bearer right-key"})
        without = http.get(url)
    assert by_header.status_code == by_bearer.status_code == 200
    assert without.status_code == 401 and without.json()["error"]["type"] == "authentication_error"

    with anthropic.Anthropic(api_key="right-key", base_url=emu.anthropic_base_url, max_retries=0) as client:
        assert list(client.messages.batches.list()) == []
    with (
        anthropic.Anthropic(api_key="wrong-key", base_url=emu.anthropic_base_url, max_retries=0) as client,
        pytest.raises(anthropic.AuthenticationError) as raised,
    ):
        client.messages.batches.list()
    assert "wrong-key" not in str(raised.value)


def test_an_injected_429_reaches_the_sdk_as_a_rate_limit_error(emu: Emulator, anthropic_client) -> None:
    emu.set_scenario(
        http_faults=[HttpFault(route=r"/anthropic/v1/messages/batches$", status=429, method="POST", count=1)]
    )
    with pytest.raises(anthropic.RateLimitError):
        anthropic_client.messages.batches.create(requests=tickets(1))
    assert anthropic_client.messages.batches.create(requests=tickets(1)).processing_status == "in_progress"


def test_unknown_routes_answer_in_anthropic_error_shape(anthropic_client) -> None:
    with pytest.raises(anthropic.NotFoundError) as raised:
        anthropic_client.get("/v1/nothing-here", cast_to=httpx2.Response)
    assert raised.value.body["type"] == "error" and raised.value.body["error"]["type"] == "not_found_error"


def test_the_async_client_polls_and_streams_results(emu: Emulator, anthropic_client) -> None:
    emu.set_scenario(completion_seconds=1)
    batch = anthropic_client.messages.batches.create(requests=tickets(4))
    emu.advance(1.5)

    async def read() -> tuple[str, list[str]]:
        async with anthropic.AsyncAnthropic(api_key="k", base_url=emu.anthropic_base_url, max_retries=0) as client:
            status = (await client.messages.batches.retrieve(batch.id)).processing_status
            results = [r.custom_id async for r in await client.messages.batches.results(batch.id)]
            return status, results

    status, ids = asyncio.run(read())
    assert status == "ended" and sorted(ids) == [f"t-{i}" for i in range(4)]


def test_the_ledger_records_batches_without_a_job_key_and_bills_only_succeeded_items(
    emu: Emulator, anthropic_client
) -> None:
    emu.set_scenario(completion_seconds=1, item_errors={"server_error": 0.5})
    batch = anthropic_client.messages.batches.create(requests=tickets(10))
    emu.advance(2)
    ledger = emu.ledger()
    [entry] = ledger["batches"]
    assert (entry["provider"], entry["batch_id"], entry["job_key"], entry["item_count"]) == (
        "anthropic",
        batch.id,
        None,
        10,
    )
    succeeded = anthropic_client.messages.batches.retrieve(batch.id).request_counts.succeeded
    assert len(ledger["billed"]) == succeeded < 10
