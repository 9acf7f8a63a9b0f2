"""Output that is late, short or absent, as the real services sometimes serve it (real SDK clients).

Gemini reports SUCCEEDED before the output is set; OpenAI completes with no output file when every
item failed, serves an output file short of its counts, or sits in ``finalizing``.
"""

from __future__ import annotations

from typing import Any

import pytest
from emulator_test_helpers import chat_line, read_jsonl
from google import genai
from google.genai import types
from openai import OpenAI

from airflow_llm_batch.emulator import Emulator


@pytest.fixture
def gemini(emu: Emulator) -> genai.Client:
    return genai.Client(api_key="test-key", http_options=types.HttpOptions(base_url=emu.gemini_base_url))


def gemini_requests(count: int = 4) -> list[dict[str, Any]]:
    return [
        {"contents": [{"role": "user", "parts": [{"text": f"ticket {i}"}]}], "metadata": {"key": f"k{i}"}}
        for i in range(count)
    ]


def test_gemini_reports_succeeded_without_output_for_the_first_polls(emu: Emulator, gemini: genai.Client) -> None:
    emu.set_scenario(completion_seconds=10, gemini_late_output_polls=2)
    batch = gemini.batches.create(model="gemini-2.5-flash", src=gemini_requests())
    emu.advance(11)
    for _ in range(2):
        late = gemini.batches.get(name=batch.name)
        assert late.state == types.JobState.JOB_STATE_SUCCEEDED and late.done
        assert late.dest is None
    ready = gemini.batches.get(name=batch.name)
    assert ready.dest is not None and len(ready.dest.inlined_responses or []) == 4
    assert len(emu.ledger()["billed"]) == 4  # billed once, when it ended, however often it was read


def test_gemini_output_appears_only_seconds_after_the_end(emu: Emulator, gemini) -> None:
    emu.set_scenario(completion_seconds=10, gemini_late_output_seconds=30)
    batch = gemini.batches.create(model="gemini-2.5-flash", src=gemini_requests())
    emu.advance(11)
    assert gemini.batches.get(name=batch.name).dest is None
    assert [b.dest for b in gemini.batches.list() if b.name == batch.name] == [None]
    emu.advance(30)
    assert gemini.batches.get(name=batch.name).dest is not None


def test_openai_completes_with_a_null_output_file_when_every_item_failed(emu: Emulator, client: OpenAI, submit) -> None:
    emu.set_scenario(completion_seconds=1, item_errors={"server_error": 1.0})
    batch = submit([chat_line(f"t-{i}", "hello") for i in range(3)])
    emu.advance(2)
    done = client.batches.retrieve(batch.id)
    assert done.status == "completed" and done.output_file_id is None
    assert (done.request_counts.completed, done.request_counts.failed) == (0, 3)
    assert {line["custom_id"] for line in read_jsonl(client, done.error_file_id)} == {"t-0", "t-1", "t-2"}
    assert emu.ledger()["billed"] == []


def test_openai_output_file_is_short_of_its_counts_on_the_first_reads(emu: Emulator, client: OpenAI, submit) -> None:
    emu.set_scenario(completion_seconds=1, openai_short_output_reads=2)
    batch = submit([chat_line(f"t-{i}", "hello") for i in range(10)])
    emu.advance(2)
    done = client.batches.retrieve(batch.id)
    assert done.status == "completed" and done.request_counts.completed == 10
    first, second = read_jsonl(client, done.output_file_id), read_jsonl(client, done.output_file_id)
    assert len(first) == len(second) == 5  # whole lines, half of them
    full = read_jsonl(client, done.output_file_id)
    assert sorted(line["custom_id"] for line in full) == sorted(f"t-{i}" for i in range(10))
    assert {line["custom_id"] for line in first} <= {line["custom_id"] for line in full}


def test_openai_batch_sits_in_finalizing_for_the_extra_seconds(emu: Emulator, client: OpenAI, submit) -> None:
    emu.set_scenario(completion_seconds=10, finalizing_seconds=50)
    batch = submit([chat_line("t-0", "hello")])
    emu.advance(9.5)
    assert client.batches.retrieve(batch.id).status == "finalizing"
    emu.advance(50)
    stuck = client.batches.retrieve(batch.id)
    assert stuck.status == "finalizing" and stuck.output_file_id is None
    emu.advance(1)
    done = client.batches.retrieve(batch.id)
    assert done.status == "completed" and done.completed_at is not None
    assert done.completed_at - done.finalizing_at >= 50
