"""Queue quotas and 429 on create, each provider refusing its own way, through the real SDK clients.

OpenAI accepts a batch over quota and fails it (``token_limit_exceeded``); Anthropic answers 429
``rate_limit_error``; Gemini and Vertex answer 429 ``RESOURCE_EXHAUSTED``. Nothing refused is billed.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import anthropic
import google.oauth2.credentials
import openai
import pytest
from emulator_test_helpers import chat_line
from google import genai
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery
from google.genai import errors, types

from airflow_llm_batch.emulator import Emulator, Scenario
from airflow_llm_batch.emulator.__main__ import parse_args, scenario_from_args

PROJECT = "quota-project"


def chunk(first: int, count: int = 5, model: str = "gpt-4o-mini") -> list[dict[str, Any]]:
    return [
        chat_line(f"t-{i}", f"Ticket {i}: my invoice is wrong", model, max_tokens=50)
        for i in range(first, first + count)
    ]


def patch_scenario(emu: Emulator, fields: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{emu.url}/_emulator/scenario",
        json.dumps(fields).encode(),
        {"content-type": "application/json"},
        method="PATCH",
    )
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read())


# OpenAI -------------------------------------------------------------------------------------------


def test_openai_accepts_a_batch_over_the_token_quota_then_fails_it_and_bills_nothing(
    emu: Emulator, client: openai.OpenAI, submit
) -> None:
    emu.set_scenario(completion_seconds=100)
    first = submit(chunk(0))
    tokens = emu.ledger()["batches"][0]["enqueued_tokens"]
    assert tokens > 5 * 50  # input tokens plus five max_tokens allowances of 50
    emu.update_scenario(queue_quotas=[{"provider": "openai", "model": "gpt-4o-mini", "enqueued_tokens": 2 * tokens}])
    second = submit(chunk(5))
    third = submit(chunk(10), metadata={"job_key": "j", "chunk": "2"})
    assert third.status == "validating"  # accepted first, as the real service does

    emu.advance(20)
    assert client.batches.retrieve(second.id).status == "in_progress"
    refused = client.batches.retrieve(third.id)
    assert refused.status == "failed" and refused.request_counts.total == 0
    assert refused.output_file_id is None and refused.error_file_id is None
    error = refused.errors.data[0]
    assert error.code == "token_limit_exceeded"
    assert error.message == (
        f"Enqueued token limit reached for gpt-4o-mini in organization org-emulator. Limit: {2 * tokens:,} "
        "enqueued tokens. Please try again once some in_progress batches have been completed."
    )

    emu.advance(100)  # the first two complete: capacity is free again, the chunk goes through
    again = submit(chunk(10), metadata={"job_key": "j", "chunk": "2"})
    emu.advance(101)
    assert client.batches.retrieve(first.id).status == "completed"
    assert client.batches.retrieve(again.id).status == "completed"
    ledger = emu.ledger()
    assert {b["batch_id"]: b["refused"] for b in ledger["batches"]}[third.id] == "token_limit_exceeded"
    assert not [item for item in ledger["billed"] if item["batch_id"] == third.id]
    assert ledger["billed_counts"]["openai"] == {f"t-{i}": 1 for i in range(15)}
    assert ledger["billed_twice"] == []
    [group] = ledger["same_input_batches"]
    assert [b["batch_id"] for b in group["batches"]] == [third.id, again.id]
    assert [b["billed"] for b in group["batches"]] == [0, 5]
    assert group["resubmitted_after_answers"] is False
    assert ledger["duplicate_batches"] == []  # the refused batch's chunk created again: expected

    resent = submit(chunk(10), metadata={"job_key": "j", "chunk": "2"})  # a chunk that has answers
    ledger = emu.ledger()
    assert ledger["duplicate_batches"] == [[again.id, resent.id]]
    assert [g["resubmitted_after_answers"] for g in ledger["same_input_batches"]] == [True]


def test_openai_request_quota_uses_the_request_twin_and_gives_each_key_its_own_queue(emu: Emulator, submit) -> None:
    emu.set_scenario(completion_seconds=100, queue_quotas=[{"provider": "openai", "enqueued_requests": 8}])
    ok = submit(chunk(0))
    other_model = submit(chunk(5, model="gpt-4.1-mini"))  # None model: the quota counts every model together
    emu.advance(20)
    assert other_model.id != ok.id
    with openai.OpenAI(api_key="second-key", base_url=emu.openai_base_url, max_retries=0) as second_key:
        uploaded = second_key.files.create(file=("in.jsonl", _jsonl(chunk(20)), "application/jsonl"), purpose="batch")
        own_queue = second_key.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        emu.advance(20)
        assert second_key.batches.retrieve(own_queue.id).status == "in_progress"  # its own queue of 8
    statuses = {b["batch_id"]: b["refused"] for b in emu.ledger()["batches"]}
    assert statuses[other_model.id] == "request_limit_exceeded" and statuses[ok.id] is None


def test_openai_quota_shrunk_at_runtime_over_http_refuses_the_next_batch(emu: Emulator, client, submit) -> None:
    emu.set_scenario(completion_seconds=100, queue_quotas=[{"provider": "openai", "concurrent_batches": 5}])
    running = [submit(chunk(5 * i)) for i in range(2)]
    answer = patch_scenario(emu, {"queue_quotas": [{"provider": "openai", "concurrent_batches": 2}]})
    assert answer["queue_quotas"][0]["concurrent_batches"] == 2
    refused = submit(chunk(10))
    emu.advance(20)
    assert [client.batches.retrieve(b.id).status for b in running] == ["in_progress", "in_progress"]
    assert client.batches.retrieve(refused.id).errors.data[0].code == "request_limit_exceeded"


def _jsonl(lines: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


# Anthropic ----------------------------------------------------------------------------------------


@pytest.fixture
def claude(emu: Emulator) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(api_key="test-key", base_url=emu.anthropic_base_url, max_retries=0) as client:
        yield client


def claude_requests(first: int, count: int = 5) -> list[dict[str, Any]]:
    return [
        {
            "custom_id": f"t-{i}",
            "params": {"model": "claude-haiku-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]},
        }
        for i in range(first, first + count)
    ]


def test_anthropic_answers_a_create_over_the_queue_quota_with_429_rate_limit_error(
    emu: Emulator, claude: anthropic.Anthropic
) -> None:
    emu.set_scenario(completion_seconds=100, queue_quotas=[{"provider": "anthropic", "enqueued_requests": 10}])
    claude.messages.batches.create(requests=claude_requests(0))  # type: ignore[arg-type]
    claude.messages.batches.create(requests=claude_requests(5))  # type: ignore[arg-type]
    with pytest.raises(anthropic.RateLimitError) as refused:
        claude.messages.batches.create(requests=claude_requests(10))  # type: ignore[arg-type]
    assert refused.value.status_code == 429 and refused.value.response.headers["retry-after"] == "1"
    body = refused.value.body
    assert isinstance(body, dict) and body["error"]["type"] == "rate_limit_error"
    assert "10 batch requests in the processing queue" in body["error"]["message"]
    assert len(list(claude.messages.batches.list())) == 2
    assert [r["reason"] for r in emu.ledger()["refused_creates"]] == ["enqueued_requests"]

    emu.advance(101)
    assert claude.messages.batches.create(requests=claude_requests(10)).processing_status == "in_progress"  # type: ignore[arg-type]


# Gemini Developer API and Vertex AI ---------------------------------------------------------------


@pytest.fixture
def gemini(emu: Emulator) -> genai.Client:
    return genai.Client(api_key="test-key", http_options=types.HttpOptions(base_url=emu.gemini_base_url))


def gemini_requests(count: int = 3) -> list[dict[str, Any]]:
    return [
        {"contents": [{"role": "user", "parts": [{"text": f"ticket {i}"}]}], "metadata": {"key": f"k{i}"}}
        for i in range(count)
    ]


def test_gemini_answers_a_create_over_the_quota_with_429_resource_exhausted(emu: Emulator, gemini) -> None:
    emu.set_scenario(completion_seconds=100, queue_quotas=[{"provider": "gemini", "concurrent_batches": 2}])
    for _ in range(2):
        gemini.batches.create(model="gemini-2.5-flash", src=gemini_requests())
    with pytest.raises(errors.ClientError) as refused:
        gemini.batches.create(model="gemini-2.5-flash", src=gemini_requests())
    assert refused.value.code == 429 and refused.value.status == "RESOURCE_EXHAUSTED"
    assert "You exceeded your current quota" in str(refused.value.message)
    details = refused.value.details["error"]["details"]
    assert details[0]["@type"] == "type.googleapis.com/google.rpc.QuotaFailure"
    assert details[0]["violations"][0]["quotaValue"] == "2"
    assert len(list(gemini.batches.list())) == 2

    emu.update_scenario(queue_quotas=[{"provider": "gemini", "model": "gemini-2.5-pro", "enqueued_tokens": 1}])
    gemini.batches.create(model="gemini-2.5-flash", src=gemini_requests())  # another model's quota: no limit
    with pytest.raises(errors.ClientError, match="429"):
        gemini.batches.create(model="gemini-2.5-pro", src=gemini_requests())


@pytest.fixture
def vertex(emu: Emulator) -> Iterator[genai.Client]:
    bq = bigquery.Client(
        project=PROJECT, credentials=AnonymousCredentials(), client_options={"api_endpoint": emu.bigquery_url}
    )
    bq.create_dataset("d")
    schema = [bigquery.SchemaField("key", "STRING"), bigquery.SchemaField("request", "JSON")]
    rows = [{"key": "k0", "request": {"contents": [{"role": "user", "parts": [{"text": "ticket"}]}]}}]
    bq.load_table_from_json(rows, f"{PROJECT}.d.requests", job_config=bigquery.LoadJobConfig(schema=schema)).result()
    yield genai.Client(
        vertexai=True,
        project=PROJECT,
        location="us-east5",
        credentials=google.oauth2.credentials.Credentials(token="token"),
        http_options=types.HttpOptions(base_url=emu.vertex_base_url),
    )
    bq.close()


def vertex_job(vertex: genai.Client, model: str, table: str) -> Any:
    return vertex.batches.create(
        model=model, src=f"bq://{PROJECT}.d.requests", config={"dest": f"bq://{PROJECT}.d.{table}"}
    )


def test_vertex_runs_four_claude_jobs_at_once_by_default_and_answers_the_fifth_with_429(emu: Emulator, vertex) -> None:
    emu.set_scenario(completion_seconds=100)
    for n in range(4):
        vertex_job(vertex, "publishers/anthropic/models/claude-sonnet-4-5", f"out{n}")
    with pytest.raises(errors.ClientError) as refused:
        vertex_job(vertex, "publishers/anthropic/models/claude-sonnet-4-5", "out4")
    assert refused.value.code == 429 and refused.value.status == "RESOURCE_EXHAUSTED"
    assert "concurrent batch prediction jobs" in str(refused.value.message)
    vertex_job(vertex, "gemini-2.5-flash", "gemini_out")  # Gemini models are not under the Claude limit

    emu.update_scenario(vertex_claude_concurrent_jobs=None)
    vertex_job(vertex, "publishers/anthropic/models/claude-sonnet-4-5", "out5")
    emu.update_scenario(vertex_claude_concurrent_jobs=2)
    emu.advance(101)  # all ended: two may run again, the third is refused
    for n in (6, 7):
        vertex_job(vertex, "publishers/anthropic/models/claude-sonnet-4-5", f"out{n}")
    with pytest.raises(errors.ClientError, match="429"):
        vertex_job(vertex, "publishers/anthropic/models/claude-sonnet-4-5", "out8")


# 429 on create, for every provider ----------------------------------------------------------------


def test_create_429_refuses_the_first_creates_of_one_provider_then_lets_them_through(
    emu: Emulator, client, submit, claude, gemini
) -> None:
    emu.set_scenario(create_429={"openai": 1, "anthropic": None, "gemini": 2})
    with pytest.raises(openai.RateLimitError):
        submit(chunk(0))
    assert submit(chunk(0)).status == "validating"
    for _ in range(3):
        with pytest.raises(anthropic.RateLimitError):
            claude.messages.batches.create(requests=claude_requests(0))  # type: ignore[arg-type]
    for _ in range(2):
        with pytest.raises(errors.ClientError, match="RESOURCE_EXHAUSTED"):
            gemini.batches.create(model="gemini-2.5-flash", src=gemini_requests())
    gemini.batches.create(model="gemini-2.5-flash", src=gemini_requests())
    assert len(client.batches.list().data) == 1  # retrieves and lists are never refused
    refused = [r["status"] for r in emu.requests() if r["status"] == 429]
    assert len(refused) == 1 + 3 + 2
    reasons = [(r["provider"], r["reason"]) for r in emu.ledger()["refused_creates"]]
    assert reasons == [("openai", "create_429")] + [("anthropic", "create_429")] * 3 + [("gemini", "create_429")] * 2


def test_create_429_refuses_vertex_job_creates(emu: Emulator, vertex) -> None:
    emu.set_scenario(create_429={"vertex": 1})
    with pytest.raises(errors.ClientError, match="429"):
        vertex_job(vertex, "gemini-2.5-flash", "a")
    assert vertex_job(vertex, "gemini-2.5-flash", "a").name


# Setting the switches: CLI, markers ---------------------------------------------------------------


def test_the_command_line_sets_quotas_and_edges() -> None:
    args = parse_args(
        [
            "--queue-quota", "openai,model=gpt-4o-mini,enqueued_tokens=2000000",
            "--queue-quota", "anthropic,enqueued_requests=100000",
            "--create-429", "gemini=2", "--create-429", "vertex",
            "--vertex-claude-concurrent-jobs", "none",
            "--gemini-late-output-polls", "3", "--openai-short-output-reads", "1", "--finalizing-seconds", "5",
        ]
    )  # fmt: skip
    scenario = scenario_from_args(args)
    assert [(q.provider, q.model, q.enqueued_tokens, q.enqueued_requests) for q in scenario.queue_quotas] == [
        ("openai", "gpt-4o-mini", 2_000_000, None),
        ("anthropic", None, None, 100_000),
    ]
    assert scenario.create_429 == {"gemini": 2, "vertex": None}
    assert scenario.vertex_claude_concurrent_jobs is None
    assert (scenario.gemini_late_output_polls, scenario.openai_short_output_reads, scenario.finalizing_seconds) == (
        3,
        1,
        5.0,
    )
    assert Scenario.from_dict(json.loads(json.dumps(scenario.to_dict()))) == scenario


@pytest.mark.llm_batch_scenario(create_429={"openai": None}, completion_seconds=7)
def test_a_marker_sets_the_scenario_of_one_test(emu: Emulator) -> None:
    assert emu.scenario.create_429 == {"openai": None} and emu.scenario.completion_seconds == 7


def test_without_a_marker_the_scenario_is_the_default(emu: Emulator) -> None:
    assert emu.scenario == Scenario()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"queue_quotas": [{"provider": "azure", "concurrent_batches": 1}]}, "provider 'azure'"),
        ({"queue_quotas": [{"provider": "openai"}]}, "at least one of"),
        ({"queue_quotas": [{"provider": "openai", "enqueued_tokens": -1}]}, "enqueued_tokens"),
        ({"queue_quotas": [{"provider": "openai", "tokens": 1}]}, "unexpected keyword"),
        ({"create_429": {"mistral": 1}}, "create_429"),
        ({"gemini_late_output_polls": -1}, "gemini_late_output_polls"),
    ],
)
def test_bad_quota_switches_name_the_field(fields: dict, message: str) -> None:
    from airflow_llm_batch.emulator import ScenarioError

    with pytest.raises(ScenarioError, match=message):
        Scenario.from_dict(fields)
