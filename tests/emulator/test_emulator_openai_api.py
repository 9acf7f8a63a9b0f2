"""The emulated OpenAI Files API, auth, parameter checks, HTTP faults and the async client."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

import openai
import pytest
from emulator_test_helpers import chat_line, jsonl, read_jsonl
from openai import AsyncOpenAI, OpenAI

from airflow_llm_batch.emulator import Emulator


def test_files_upload_retrieve_list_content_and_delete(emu: Emulator, client: OpenAI) -> None:
    content = jsonl([chat_line("a", "hello")])
    uploaded = client.files.create(file=("in.jsonl", content, "application/jsonl"), purpose="batch")
    assert uploaded.id.startswith("file-") and uploaded.bytes == len(content)
    assert (uploaded.filename, uploaded.purpose, uploaded.status) == ("in.jsonl", "batch", "processed")
    assert uploaded.expires_at == uploaded.created_at + 30 * 86_400

    assert client.files.retrieve(uploaded.id).id == uploaded.id
    assert client.files.content(uploaded.id).content == content
    other = client.files.create(file=("notes.txt", b"x", "text/plain"), purpose="user_data")
    assert [f.id for f in client.files.list()] == [other.id, uploaded.id]
    assert [f.id for f in client.files.list(purpose="batch")] == [uploaded.id]

    deleted = client.files.delete(uploaded.id)
    assert deleted.deleted is True and deleted.id == uploaded.id
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(uploaded.id)


def test_upload_with_expires_after_sets_the_expiry(client: OpenAI) -> None:
    uploaded = client.files.create(
        file=("in.jsonl", b"{}\n"), purpose="batch", expires_after={"anchor": "created_at", "seconds": 7200}
    )
    assert uploaded.expires_at == uploaded.created_at + 7200


def test_unknown_purpose_and_unknown_file_are_refused(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError):
        client.files.create(file=("in.jsonl", b"{}\n"), purpose="nonsense")  # type: ignore[arg-type]
    with pytest.raises(openai.NotFoundError):
        client.batches.create(input_file_id="file-missing", endpoint="/v1/chat/completions", completion_window="24h")


@pytest.mark.parametrize(
    ("endpoint", "metadata"),
    [
        ("/v1/moderations", None),  # a real endpoint the emulator does not serve
        ("/v1/chat/completions", {f"k{i}": "v" for i in range(17)}),
        ("/v1/chat/completions", {"k" * 65: "v"}),
        ("/v1/chat/completions", {"k": "v" * 513}),
    ],
)
def test_unsupported_endpoint_and_oversized_metadata_are_refused(
    client: OpenAI, submit, endpoint: str, metadata: dict | None
) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        submit([chat_line("a", "x")], endpoint=endpoint, metadata=metadata)
    assert raised.value.status_code == 400 and raised.value.body["message"]  # type: ignore[index]


def test_sixteen_metadata_pairs_are_accepted(submit) -> None:
    metadata = {f"k{i}": "v" * 512 for i in range(16)}
    assert submit([chat_line("a", "x")], metadata=metadata).metadata == metadata


def test_wrong_api_key_raises_authentication_error_without_echoing_it(emu: Emulator) -> None:
    emu.set_scenario(api_key="the-right-key")
    wrong = OpenAI(api_key="sk-wrong-secret", base_url=emu.openai_base_url, max_retries=0)
    with wrong, pytest.raises(openai.AuthenticationError) as raised:
        wrong.batches.list()
    assert "sk-wrong-secret" not in str(raised.value)
    with OpenAI(api_key="the-right-key", base_url=emu.openai_base_url, max_retries=0) as right:
        assert list(right.batches.list()) == []


def test_missing_bearer_token_is_refused(emu: Emulator) -> None:
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(f"{emu.openai_base_url}/batches")
    assert raised.value.code == 401
    assert set(json.loads(raised.value.read())["error"]) == {"message", "type", "param", "code"}


def test_request_log_records_requests_but_never_the_key(emu: Emulator) -> None:
    with OpenAI(api_key="sk-do-not-log", base_url=emu.openai_base_url, max_retries=0) as secret_client:
        secret_client.batches.list(limit=3)
    [record] = emu.requests()
    assert record["provider"] == "openai" and record["method"] == "GET"
    assert record["path"] == "/openai/v1/batches" and record["query"] == "limit=3"
    assert record["user_agent"].startswith("OpenAI/Python") and record["status"] == 200
    assert "sk-do-not-log" not in json.dumps(emu.requests())


def test_http_fault_429_on_create_raises_rate_limit_error_then_lets_through(
    emu: Emulator, client: OpenAI, submit
) -> None:
    emu.set_scenario(http_faults=[{"route": r"/v1/batches$", "method": "POST", "status": 429, "count": 1}])
    with pytest.raises(openai.RateLimitError) as raised:
        submit([chat_line("a", "x")])
    assert raised.value.code == "rate_limit_exceeded"
    batch = submit([chat_line("a", "x")])
    assert client.batches.retrieve(batch.id).id == batch.id
    assert len(emu.ledger()["batches"]) == 1


def test_http_fault_rate_fails_every_other_request(emu: Emulator, client: OpenAI) -> None:
    emu.set_scenario(http_faults=[{"route": r"/v1/batches", "method": "GET", "status": 503, "rate": 0.5}])
    outcomes = []
    for _ in range(4):
        try:
            client.batches.list()
            outcomes.append("ok")
        except openai.InternalServerError as error:
            outcomes.append(error.status_code)
    assert outcomes == [503, "ok", 503, "ok"]


def test_cancel_accepts_an_empty_json_body(emu: Emulator, submit) -> None:
    emu.set_scenario(completion_seconds=60)
    batch = submit([chat_line("a", "x")])
    request = urllib.request.Request(
        f"{emu.openai_base_url}/batches/{batch.id}/cancel",
        data=b"",
        method="POST",
        headers={"Authorization": "Bearer k", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request) as response:
        assert json.loads(response.read())["status"] == "cancelling"


def test_async_client_runs_a_batch_end_to_end(emu: Emulator) -> None:
    emu.set_scenario(completion_seconds=0.2)

    async def run() -> list[dict]:
        async with AsyncOpenAI(api_key="k", base_url=emu.openai_base_url, max_retries=0) as aclient:
            uploaded = await aclient.files.create(file=("in.jsonl", jsonl([chat_line("a", "hi")])), purpose="batch")
            batch = await aclient.batches.create(
                input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
            )
            while batch.status != "completed":
                await asyncio.sleep(0.05)
                batch = await aclient.batches.retrieve(batch.id)
            content = await aclient.files.content(batch.output_file_id)  # type: ignore[arg-type]
            return [json.loads(row) for row in content.content.splitlines()]

    [line] = asyncio.run(run())
    assert line["custom_id"] == "a" and line["response"]["body"]["choices"][0]["message"]["content"] == "Summary: hi"
    assert any(r["user_agent"].startswith("AsyncOpenAI") for r in emu.requests())


def test_unknown_route_is_a_parseable_404(client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.get("/nowhere", cast_to=object)


def test_a_new_client_reads_the_same_batch(emu: Emulator, client: OpenAI, submit) -> None:
    emu.set_scenario(completion_seconds=0)
    batch = submit([chat_line("a", "hi")])
    with OpenAI(api_key="other", base_url=emu.openai_base_url, max_retries=0) as second:
        assert read_jsonl(second, second.batches.retrieve(batch.id).output_file_id)[0]["custom_id"] == "a"
