"""The emulated OpenAI Batches API, driven through the real ``openai`` client.

Most tests set a long ``completion_seconds`` and move the emulator's clock with ``emu.advance``:
the timeline is then exact and no test sleeps.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Literal

import jsonschema
import pytest
from emulator_test_helpers import chat_line, read_jsonl
from openai import OpenAI
from pydantic import BaseModel, Field

from airflow_llm_batch.emulator import Emulator

TERMINAL = ("completed", "failed", "expired", "cancelled")


class Ticket(BaseModel):
    category: Literal["billing", "technical", "account"]
    priority: int = Field(ge=1, le=5)
    summary: str = Field(max_length=40)
    tags: list[str] = Field(min_length=1)
    owner: Ticket | None = None


def tickets(count: int) -> list[dict]:
    return [chat_line(f"t-{i}", f"Ticket {i}: my billing statement is wrong again") for i in range(count)]


def test_batch_moves_through_statuses_to_completed_with_counts(emu: Emulator, client: OpenAI, submit) -> None:
    emu.set_scenario(completion_seconds=10)
    batch = submit(tickets(20))
    assert batch.id.startswith("batch_") and batch.status == "validating"
    assert (batch.request_counts.total, batch.request_counts.completed) == (0, 0)

    emu.advance(5.0)
    batch = client.batches.retrieve(batch.id)
    assert batch.status == "in_progress"
    assert batch.request_counts.total == 20 and 0 < batch.request_counts.completed < 20
    assert batch.output_file_id is None

    emu.advance(4.2)
    assert client.batches.retrieve(batch.id).status == "finalizing"

    emu.advance(1.0)
    batch = client.batches.retrieve(batch.id)
    assert batch.status == "completed"
    assert (batch.request_counts.total, batch.request_counts.completed, batch.request_counts.failed) == (20, 20, 0)
    assert batch.created_at <= batch.in_progress_at <= batch.finalizing_at <= batch.completed_at
    assert batch.expires_at == batch.created_at + 86_400
    assert batch.output_file_id and batch.error_file_id is None
    assert batch.usage.total_tokens == batch.usage.input_tokens + batch.usage.output_tokens > 0
    assert batch.model == "gpt-4o-mini"


def test_batch_completes_in_real_time(emu: Emulator, client: OpenAI, submit) -> None:
    emu.set_scenario(completion_seconds=0.3)
    batch = submit(tickets(3))
    deadline = time.monotonic() + 5
    while batch.status not in TERMINAL and time.monotonic() < deadline:
        time.sleep(0.05)
        batch = client.batches.retrieve(batch.id)
    assert batch.status == "completed"


def test_output_and_error_files_hold_every_item_once_in_shuffled_order(emu: Emulator, client: OpenAI, submit) -> None:
    emu.set_scenario(completion_seconds=1, item_errors={"server_error": 0.2, "rate_limited": 0.2})
    batch = submit(tickets(40))
    emu.advance(2)
    batch = client.batches.retrieve(batch.id)
    output, errors = read_jsonl(client, batch.output_file_id), read_jsonl(client, batch.error_file_id)

    assert len(output) == batch.request_counts.completed and len(errors) == batch.request_counts.failed
    assert errors and output
    ids = [line["custom_id"] for line in output + errors]
    assert sorted(ids) == sorted(f"t-{i}" for i in range(40))
    assert ids[: len(output)] != sorted(ids[: len(output)], key=lambda c: int(c[2:]))
    for line in output:
        assert line["id"].startswith("batch_req_") and line["error"] is None
        assert line["response"]["status_code"] == 200 and line["response"]["request_id"].startswith("req_")
        body = line["response"]["body"]
        assert body["object"] == "chat.completion" and body["model"] == "gpt-4o-mini"
        assert body["choices"][0]["message"]["content"].startswith("Summary: Ticket")
        assert body["choices"][0]["finish_reason"] == "stop"
        usage = body["usage"]
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert {line["response"]["status_code"] for line in errors} == {429, 500}


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        ("rate_limited", 429, "rate_limit_exceeded"),
        ("server_error", 500, "server_error"),
        ("invalid_request", 400, "invalid_request_error"),
        ("content_filtered", 400, "content_filter"),
        ("context_length", 400, "context_length_exceeded"),
    ],
)
def test_each_item_error_kind_has_its_status_and_code(
    emu: Emulator, client: OpenAI, submit, kind: str, status: int, code: str
) -> None:
    emu.set_scenario(completion_seconds=0, item_errors={kind: 1.0})
    batch = client.batches.retrieve(submit(tickets(2)).id)
    assert batch.status == "completed" and batch.output_file_id is None
    assert (batch.request_counts.completed, batch.request_counts.failed) == (0, 2)
    for line in read_jsonl(client, batch.error_file_id):
        assert line["response"]["status_code"] == status
        assert line["response"]["body"]["error"]["code"] == code
        assert set(line["response"]["body"]["error"]) == {"message", "type", "param", "code"}


def test_item_errors_are_the_same_on_every_run(emu: Emulator, client: OpenAI, submit) -> None:
    def failed_ids() -> set[str]:
        emu.reset()
        emu.set_scenario(completion_seconds=0, seed=7, item_errors={"server_error": 0.3})
        batch = client.batches.retrieve(submit(tickets(30)).id)
        return {line["custom_id"] for line in read_jsonl(client, batch.error_file_id)}

    first = failed_ids()
    assert first == failed_ids() and 0 < len(first) < 30


def test_resubmitted_items_draw_again_unless_errors_repeat(emu: Emulator, client: OpenAI, submit) -> None:
    emu.set_scenario(completion_seconds=0, item_errors={"server_error": 0.5})
    first = client.batches.retrieve(submit(tickets(30)).id)
    failed = [line["custom_id"] for line in read_jsonl(client, first.error_file_id)]
    retry = client.batches.retrieve(submit([chat_line(cid, "again") for cid in failed]).id)
    assert retry.request_counts.failed < len(failed)

    emu.update_scenario(repeat_item_errors=True)
    sticky = client.batches.retrieve(submit([chat_line(cid, "again") for cid in failed]).id)
    assert sticky.request_counts.failed == len(failed)


def test_structured_output_satisfies_the_requested_schema(emu: Emulator, client: OpenAI, submit) -> None:
    schema = Ticket.model_json_schema()
    # Not "strict": pydantic's schema lacks additionalProperties: false, which strict mode requires.
    response_format = {"type": "json_schema", "json_schema": {"name": "Ticket", "schema": schema}}
    lines = [
        chat_line("a", "The app crashes: a technical fault in the login", response_format=response_format),
        chat_line("b", "Please update my account email address", response_format=response_format),
    ]
    emu.set_scenario(completion_seconds=0)
    batch = client.batches.retrieve(submit(lines).id)
    answers = {
        line["custom_id"]: json.loads(line["response"]["body"]["choices"][0]["message"]["content"])
        for line in read_jsonl(client, batch.output_file_id)
    }
    for answer in answers.values():
        jsonschema.validate(answer, schema)
        Ticket.model_validate(answer)
    assert answers["a"]["category"] == "technical" and answers["b"]["category"] == "account"


def test_invalid_output_rate_breaks_structured_output(emu: Emulator, client: OpenAI, submit) -> None:
    schema = Ticket.model_json_schema()
    response_format = {"type": "json_schema", "json_schema": {"name": "Ticket", "schema": schema}}
    emu.set_scenario(completion_seconds=0, invalid_output_rate=1.0)
    lines = [chat_line(f"x{i}", f"billing issue number {i}", response_format=response_format) for i in range(6)]
    batch = client.batches.retrieve(submit(lines).id)
    output = read_jsonl(client, batch.output_file_id)
    assert len(output) == 6 and batch.request_counts.failed == 0
    for line in output:
        content = line["response"]["body"]["choices"][0]["message"]["content"]
        with pytest.raises((ValueError, jsonschema.ValidationError)):
            jsonschema.validate(json.loads(content), schema)


def test_malformed_line_rate_writes_unparseable_lines(emu: Emulator, client: OpenAI, submit) -> None:
    emu.set_scenario(completion_seconds=0, malformed_line_rate=1.0)
    batch = client.batches.retrieve(submit(tickets(3)).id)
    rows = client.files.content(batch.output_file_id).text.splitlines()
    assert len(rows) == 3
    for row in rows:
        with pytest.raises(ValueError):
            json.loads(row)


def test_embeddings_are_unit_vectors_of_the_requested_size(emu: Emulator, client: OpenAI, submit) -> None:
    lines = [
        {"custom_id": "one", "method": "POST", "url": "/v1/embeddings",
         "body": {"model": "text-embedding-3-small", "input": "a quiet night"}},
        {"custom_id": "two", "method": "POST", "url": "/v1/embeddings",
         "body": {"model": "text-embedding-3-small", "input": ["first text", "second"], "dimensions": 64}},
    ]  # fmt: skip
    emu.set_scenario(completion_seconds=0)
    batch = client.batches.retrieve(submit(lines, endpoint="/v1/embeddings").id)
    bodies = {line["custom_id"]: line["response"]["body"] for line in read_jsonl(client, batch.output_file_id)}
    assert [len(d["embedding"]) for d in bodies["one"]["data"]] == [256]
    assert [(d["index"], len(d["embedding"])) for d in bodies["two"]["data"]] == [(0, 64), (1, 64)]
    for body in bodies.values():
        assert body["object"] == "list" and body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 0
        for item in body["data"]:
            assert item["object"] == "embedding"
            assert sum(x * x for x in item["embedding"]) == pytest.approx(1.0)


def test_list_auto_pages_newest_first_with_after_cursor(emu: Emulator, client: OpenAI, submit) -> None:
    created = [submit(tickets(1)).id for _ in range(5)]
    listed = [batch.id for batch in client.batches.list(limit=2)]
    assert listed == list(reversed(created))

    page = client.batches.list(limit=2)
    assert page.has_more is True and len(page.data) == 2
    raw = client.batches.with_raw_response.list(limit=2).http_response.json()
    assert raw["first_id"] == created[-1] and raw["last_id"] == created[-2] and raw["has_more"] is True
    queries = [r["query"] for r in emu.requests("openai") if r["path"].endswith("/v1/batches") and r["method"] == "GET"]
    assert queries[:3] == ["limit=2", f"limit=2&after={created[-2]}", f"limit=2&after={created[-4]}"]


def test_cancel_leaves_partial_results_and_cancels_the_rest(emu: Emulator, client: OpenAI, submit) -> None:
    emu.set_scenario(completion_seconds=10)
    batch = submit(tickets(10))
    emu.advance(5.0)  # half of in_progress: 10 * (5 - 1) / 8 = 5 items done
    batch = client.batches.cancel(batch.id)
    assert batch.status == "cancelling" and batch.cancelling_at is not None
    emu.advance(1.0)
    batch = client.batches.retrieve(batch.id)
    assert batch.status == "cancelled" and batch.cancelled_at is not None
    assert (batch.request_counts.completed, batch.request_counts.failed) == (5, 0)
    assert len(read_jsonl(client, batch.output_file_id)) == 5
    errors = read_jsonl(client, batch.error_file_id)
    assert len(errors) == 5
    assert {(e["response"], e["error"]["code"]) for e in errors} == {(None, "batch_cancelled")}


def test_cancel_of_a_finished_batch_is_refused(emu: Emulator, client: OpenAI, submit) -> None:
    import openai

    emu.set_scenario(completion_seconds=0)
    batch = submit(tickets(1))
    with pytest.raises(openai.ConflictError):
        client.batches.cancel(batch.id)


def test_expired_scenario_writes_the_exact_expiry_lines(emu: Emulator, client: OpenAI, submit) -> None:
    emu.set_scenario(completion_seconds=4, batch_outcome="expired")
    batch = submit(tickets(6))
    emu.advance(4)
    batch = client.batches.retrieve(batch.id)
    assert batch.status == "expired" and batch.expired_at is not None
    assert len(read_jsonl(client, batch.output_file_id)) == 3
    expired = client.files.content(batch.error_file_id).text.splitlines()
    assert len(expired) == 3
    for row in expired:
        line = json.loads(row)
        expected = {
            "id": line["id"],
            "custom_id": line["custom_id"],
            "response": None,
            "error": {
                "code": "batch_expired",
                "message": "This request could not be executed before the completion window expired.",
            },
        }
        assert row == json.dumps(expected, separators=(",", ":"))


def test_cancelled_scenario_cancels_halfway(emu: Emulator, client: OpenAI, submit) -> None:
    emu.set_scenario(completion_seconds=2, batch_outcome="cancelled")
    batch = submit(tickets(8))
    emu.advance(3)
    batch = client.batches.retrieve(batch.id)
    assert batch.status == "cancelled"
    assert batch.request_counts.completed == 4 and len(read_jsonl(client, batch.error_file_id)) == 4


@pytest.mark.parametrize(
    ("lines", "code", "line_number"),
    [
        ([chat_line("a", "x"), chat_line("a", "y")], "duplicate_custom_id", 2),
        ([chat_line("a", "x"), {**chat_line("b", "y"), "url": "/v1/embeddings"}], "url_mismatch", 2),
        ([chat_line("a", "x"), {**chat_line("b", "y"), "method": "GET"}], "invalid_method", 2),
        ([chat_line("a", "x"), chat_line("b", "y", model="other-model")], "model_mismatch", 2),
        (b'{"custom_id": "a"\n', "invalid_json_line", 1),
        (b"\n", "empty_file", None),
    ],
)
def test_invalid_input_file_fails_the_batch_after_validating(
    emu: Emulator, client: OpenAI, submit, lines, code: str, line_number: int | None
) -> None:
    emu.set_scenario(completion_seconds=10)
    batch = submit(lines)
    assert batch.status == "validating"
    emu.advance(1.0)
    batch = client.batches.retrieve(batch.id)
    assert batch.status == "failed" and batch.failed_at is not None
    assert batch.output_file_id is None and batch.error_file_id is None
    assert batch.errors.data[0].code == code and batch.errors.data[0].line == line_number


def test_more_requests_than_the_limit_fail_the_batch(emu: Emulator, client: OpenAI, submit) -> None:
    emu.set_scenario(completion_seconds=0, max_requests_per_batch=2)
    batch = client.batches.retrieve(submit(tickets(3)).id)
    assert batch.status == "failed" and batch.errors.data[0].code == "too_many_tasks"


def test_failed_scenario_fails_a_valid_batch(emu: Emulator, client: OpenAI, submit) -> None:
    emu.set_scenario(completion_seconds=0, batch_outcome="failed")
    batch = client.batches.retrieve(submit(tickets(2)).id)
    assert batch.status == "failed" and batch.errors.data
    assert emu.ledger()["billed"] == []


def test_ledger_flags_duplicate_batches_and_double_billing(emu: Emulator, client: OpenAI, submit) -> None:
    emu.set_scenario(completion_seconds=0)
    submit(tickets(3), metadata={"job_key": "dag.task.run.-1", "chunk": "0"})
    submit(tickets(2), metadata={"job_key": "dag.task.run.-1", "chunk": "0"})
    submit(tickets(3), metadata={"job_key": "dag.task.run.-1", "chunk": "1"})
    submit(tickets(3))
    ledger = emu.ledger()

    assert [b["job_key"] for b in ledger["batches"]] == ["dag.task.run.-1"] * 3 + [None]
    assert [b["item_count"] for b in ledger["batches"]] == [3, 2, 3, 3]
    assert ledger["batches"][0]["model"] == "gpt-4o-mini" and ledger["batches"][0]["provider"] == "openai"
    ids = [b["batch_id"] for b in ledger["batches"]]
    assert ledger["duplicate_batches"] == [ids[:2]]
    assert len(ledger["billed"]) == 11
    doubled = Counter(item["custom_id"] for item in ledger["double_billed"])
    assert doubled == {"t-0": 1, "t-1": 1, "t-2": 1}
    t0 = next(item for item in ledger["double_billed"] if item["custom_id"] == "t-0")
    assert t0["batch_ids"] == [ids[0], ids[1], ids[2]]
