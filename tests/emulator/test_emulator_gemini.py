"""The emulated Gemini Developer API, driven through the real ``google.genai`` client.

Most tests set a long ``completion_seconds`` and move the emulator's clock with ``emu.advance``,
so the timeline is exact and nothing sleeps. A few raw HTTP reads check what the SDK hides
(``batchStats``, the ``response`` mirror, ``/v1beta/`` and ``/download/`` paths).
"""

from __future__ import annotations

import io
import json
import urllib.error
import urllib.request
import warnings
from typing import Any

import jsonschema
import pytest
from google import genai
from google.genai import errors, types

from airflow_llm_batch.emulator import Emulator

KEY = "test-key"
SCHEMA = {
    "type": "object",
    "properties": {"label": {"type": "string", "enum": ["billing", "tech"]}, "why": {"type": "string"}},
    "required": ["label", "why"],
}


@pytest.fixture
def gemini(emu: Emulator) -> genai.Client:
    return genai.Client(api_key=KEY, http_options=types.HttpOptions(base_url=emu.gemini_base_url))


def inline(count: int, schema: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    config = {"response_mime_type": "application/json", "response_json_schema": schema} if schema else None
    return [
        {
            "contents": [{"role": "user", "parts": [{"text": f"ticket {i}: my billing is wrong"}]}],
            "metadata": {"key": f"k{i}"},
            **({"config": config} if config else {}),
        }
        for i in range(count)
    ]


def file_lines(count: int) -> bytes:
    rows = [{"key": f"f{i}", "request": {"contents": [{"parts": [{"text": f"doc {i} text"}]}]}} for i in range(count)]
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def upload(client: genai.Client, content: bytes) -> str:
    uploaded = client.files.upload(
        file=io.BytesIO(content), config={"mime_type": "application/jsonl", "display_name": "input"}
    )
    return str(uploaded.name)


def raw_get(emu: Emulator, path: str, key: str | None = KEY) -> Any:
    request = urllib.request.Request(f"{emu.gemini_base_url}{path}", headers={"x-goog-api-key": key} if key else {})
    with urllib.request.urlopen(request) as response:
        body = response.read()
    return json.loads(body) if path.find(":download") < 0 else body


def test_inline_batch_moves_from_pending_to_succeeded_with_keyed_responses(emu: Emulator, gemini) -> None:
    emu.set_scenario(completion_seconds=10)
    batch = gemini.batches.create(model="gemini-x", src=inline(4, SCHEMA), config={"display_name": "dn"})
    assert batch.name.startswith("batches/") and batch.state == types.JobState.JOB_STATE_PENDING
    assert batch.display_name == "dn"

    emu.advance(5)
    batch = gemini.batches.get(name=batch.name)
    assert batch.state == types.JobState.JOB_STATE_RUNNING and batch.dest is None

    emu.advance(5)
    batch = gemini.batches.get(name=batch.name)
    assert batch.state == types.JobState.JOB_STATE_SUCCEEDED and batch.end_time >= batch.create_time
    responses = batch.dest.inlined_responses
    assert [r.metadata["key"] for r in responses] == ["k0", "k1", "k2", "k3"]  # request order
    for entry in responses:
        jsonschema.validate(json.loads(entry.response.text), SCHEMA)
        assert entry.response.usage_metadata.prompt_token_count > 0


def test_the_operation_reports_stats_as_strings_and_mirrors_output_on_v1beta(emu: Emulator, gemini) -> None:
    emu.set_scenario(completion_seconds=1, item_errors={"server_error": 0.5})
    batch = gemini.batches.create(model="gemini-x", src=inline(10))
    emu.advance(2)
    operation = raw_get(emu, f"/v1beta/{batch.name}")
    stats = operation["metadata"]["batchStats"]
    assert operation["done"] is True and operation["metadata"]["state"] == "BATCH_STATE_SUCCEEDED"
    assert stats["requestCount"] == "10" and stats["pendingRequestCount"] == "0"
    assert int(stats["successfulRequestCount"]) + int(stats["failedRequestCount"]) == 10
    assert operation["response"]["inlinedResponses"] == operation["metadata"]["output"]["inlinedResponses"]
    errors_seen = [e["error"] for e in operation["response"]["inlinedResponses"]["inlinedResponses"] if "error" in e]
    assert len(errors_seen) == int(stats["failedRequestCount"]) > 0
    assert all(e == {"code": 500, "message": e["message"], "status": "INTERNAL"} for e in errors_seen)


def test_file_batch_uploads_runs_and_serves_its_responses_file(emu: Emulator, gemini) -> None:
    emu.set_scenario(completion_seconds=1)
    name = upload(gemini, file_lines(3))
    assert gemini.files.get(name=name).size_bytes == len(file_lines(3))
    batch = gemini.batches.create(model="gemini-x", src=name)
    emu.advance(2)
    batch = gemini.batches.get(name=batch.name)
    assert batch.dest.file_name.startswith("files/batch-")
    content = gemini.files.download(file=batch.dest.file_name)
    lines = [json.loads(row) for row in content.splitlines()]
    assert [line["key"] for line in lines] == ["f0", "f1", "f2"]
    assert lines[0]["response"]["candidates"][0]["content"]["parts"][0]["text"].startswith("Summary: doc 0")
    file_id = batch.dest.file_name.removeprefix("files/")
    assert raw_get(emu, f"/download/v1beta/files/{file_id}:download?alt=media") == content


def test_an_input_file_deletes_but_a_batch_output_file_is_refused_for_its_long_id(emu: Emulator, gemini) -> None:
    """python-genai#1759: get and download take ``files/batch-<36 characters>``, delete does not."""
    emu.set_scenario(completion_seconds=1)
    name = upload(gemini, file_lines(2))
    batch = gemini.batches.create(model="gemini-x", src=name)
    emu.advance(2)
    output = gemini.batches.get(name=batch.name).dest.file_name
    assert len(output.removeprefix("files/")) == 42
    gemini.files.delete(name=name)
    with pytest.raises(errors.ClientError) as refused:
        gemini.files.delete(name=output)
    assert refused.value.code == 400 and refused.value.status == "INVALID_ARGUMENT"
    assert "cannot be more than 40 characters" in str(refused.value)
    assert gemini.files.get(name=output).name == output and gemini.files.download(file=output)
    assert [f.name for f in gemini.files.list()] == [output]


def test_uploaded_input_files_cannot_be_downloaded(emu: Emulator, gemini) -> None:
    name = upload(gemini, file_lines(1))
    with pytest.raises(errors.ClientError) as raised:
        gemini.files.download(file=name)
    assert raised.value.code == 400


def test_embedding_batches_answer_inline_and_from_a_file_with_snake_case_file_name(emu: Emulator, gemini) -> None:
    emu.set_scenario(completion_seconds=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inline_batch = gemini.batches.create_embeddings(
            model="gemini-embedding-001",
            src={"inlined_requests": {"contents": ["a b", "c d"], "config": {"output_dimensionality": 8}}},
        )
        rows = [{"key": "e0", "request": {"content": {"parts": [{"text": "hello"}]}, "outputDimensionality": 4}}]
        file_name = upload(gemini, "".join(json.dumps(r) + "\n" for r in rows).encode())
        file_batch = gemini.batches.create_embeddings(model="gemini-embedding-001", src={"file_name": file_name})
    emu.advance(2)
    vectors = gemini.batches.get(name=inline_batch.name).dest.inlined_embed_content_responses
    assert [len(v.response.embedding.values) for v in vectors] == [8, 8]
    assert all(abs(sum(x * x for x in v.response.embedding.values) - 1) < 1e-6 for v in vectors)
    dest = gemini.batches.get(name=file_batch.name).dest
    [line] = [json.loads(row) for row in gemini.files.download(file=dest.file_name).splitlines()]
    assert line["key"] == "e0" and len(line["response"]["embedding"]["values"]) == 4


def test_list_pages_through_every_batch_newest_first(emu: Emulator, gemini) -> None:
    names = [gemini.batches.create(model="gemini-x", src=inline(1)).name for _ in range(5)]
    listed = [batch.name for batch in gemini.batches.list(config={"page_size": 2})]
    assert listed == list(reversed(names))
    first_page = raw_get(emu, "/v1/batches?pageSize=2")
    assert len(first_page["operations"]) == 2 and first_page["nextPageToken"]


def test_cancel_keeps_the_responses_of_items_already_done(emu: Emulator, gemini) -> None:
    emu.set_scenario(completion_seconds=10)
    batch = gemini.batches.create(model="gemini-x", src=inline(10))
    emu.advance(5.5)
    gemini.batches.cancel(name=batch.name)
    batch = gemini.batches.get(name=batch.name)
    assert batch.state == types.JobState.JOB_STATE_CANCELLED
    assert 0 < len(batch.dest.inlined_responses) < 10
    with pytest.raises(errors.ClientError) as raised:
        gemini.batches.cancel(name=batch.name)
    assert raised.value.status == "FAILED_PRECONDITION"


def test_an_expired_batch_has_no_results_and_a_failed_one_says_why(emu: Emulator, gemini) -> None:
    emu.set_scenario(completion_seconds=1, batch_outcome="expired")
    expired = gemini.batches.create(model="gemini-x", src=inline(4))
    emu.update_scenario(batch_outcome="failed")
    failed = gemini.batches.create(model="gemini-x", src=inline(4))
    emu.advance(2)
    expired = gemini.batches.get(name=expired.name)
    assert expired.state == types.JobState.JOB_STATE_EXPIRED and expired.dest is None
    assert gemini.batches.get(name=failed.name).state == types.JobState.JOB_STATE_FAILED
    operation = raw_get(emu, f"/v1/{failed.name}")
    assert operation["done"] and "batch_outcome=failed" in operation["error"]["message"]


def test_item_errors_safety_blocks_and_broken_output_come_back_per_item(emu: Emulator, gemini) -> None:
    emu.set_scenario(
        completion_seconds=1, item_errors={"rate_limited": 0.2, "content_filtered": 0.2}, invalid_output_rate=0.3
    )
    batch = gemini.batches.create(model="gemini-x", src=inline(60, SCHEMA))
    emu.advance(2)
    responses = gemini.batches.get(name=batch.name).dest.inlined_responses
    assert len(responses) == 60
    assert any(r.error is not None and r.error.code == 429 for r in responses)
    blocked = [r.response for r in responses if r.response is not None and r.response.text is None]
    assert blocked and all(
        (b.prompt_feedback and b.prompt_feedback.block_reason) or b.candidates[0].finish_reason == "SAFETY"
        for b in blocked
    )
    texts = [r.response.text for r in responses if r.response is not None and r.response.text]
    broken = 0
    for text in texts:
        try:
            jsonschema.validate(json.loads(text), SCHEMA)
        except (ValueError, jsonschema.ValidationError):
            broken += 1
    assert 0 < broken < len(texts)


def test_delete_forgets_the_batch(emu: Emulator, gemini) -> None:
    batch = gemini.batches.create(model="gemini-x", src=inline(1))
    gemini.batches.delete(name=batch.name)
    with pytest.raises(errors.ClientError) as raised:
        gemini.batches.get(name=batch.name)
    assert raised.value.code == 404


def test_a_wrong_key_is_refused_like_the_real_api_and_a_missing_one_too(emu: Emulator) -> None:
    emu.set_scenario(api_key=KEY)
    wrong = genai.Client(api_key="nope", http_options=types.HttpOptions(base_url=emu.gemini_base_url))
    with pytest.raises(errors.ClientError) as raised:
        wrong.batches.list()
    assert raised.value.code == 400 and raised.value.status == "INVALID_ARGUMENT"
    assert "API key not valid" in raised.value.message and "nope" not in str(raised.value)
    with pytest.raises(urllib.error.HTTPError) as missing:
        raw_get(emu, "/v1/batches", key=None)
    assert missing.value.code == 403


def test_an_injected_429_reaches_the_sdk_as_a_client_error(emu: Emulator, gemini) -> None:
    # google-genai 2.x calls v1beta by default, 3.x v1.
    emu.set_scenario(http_faults=[{"route": "/gemini/v1(beta)?/batches", "status": 429, "count": 1}])
    with pytest.raises(errors.ClientError) as raised:
        gemini.batches.list()
    assert raised.value.code == 429 and raised.value.status == "RESOURCE_EXHAUSTED"
    assert list(gemini.batches.list()) == []  # the fault fired once


def test_the_ledger_reads_the_job_key_from_the_display_name(emu: Emulator, gemini) -> None:
    emu.set_scenario(completion_seconds=0.5)
    display = "airflow:dag/task:job_key=abc123:chunk=0"
    gemini.batches.create(model="gemini-x", src=inline(3), config={"display_name": display})
    gemini.batches.create(model="gemini-x", src=inline(3), config={"display_name": display})
    emu.advance(1)
    ledger = emu.ledger()
    assert {b["job_key"] for b in ledger["batches"]} == {"abc123"}
    assert len(ledger["duplicate_batches"]) == 1 and len(ledger["double_billed"]) == 3
