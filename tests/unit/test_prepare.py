from __future__ import annotations

import dataclasses

import pytest

from airflow_llm_batch.batch import jsonl
from airflow_llm_batch.batch.backends.base import ClientConfig
from airflow_llm_batch.batch.backends.openai import OpenAIBackend
from airflow_llm_batch.batch.prepare import IdMapper, prepare_chunks
from airflow_llm_batch.batch.templates import PromptTemplate
from airflow_llm_batch.exceptions import InvalidInputError


def _prepare(tmp_path, items, backend, spec, **kwargs):
    return prepare_chunks(
        items,
        id_field="id",
        spec=spec,
        backend=backend,
        out_dir=tmp_path / "requests",
        template=PromptTemplate("Classify: {text}"),
        **kwargs,
    )


def _items(n):
    return [{"id": f"item-{i}", "text": f"text number {i}"} for i in range(n)]


def test_each_item_becomes_one_openai_request_line_with_the_schema(tmp_path, openai_backend, chat_spec):
    prepared = _prepare(tmp_path, _items(3), openai_backend, chat_spec)
    assert prepared.item_count == 3
    [chunk] = prepared.chunks
    lines = list(jsonl.read_jsonl(chunk.path))
    assert [line["custom_id"] for line in lines] == ["item-0", "item-1", "item-2"]
    body = lines[1]["body"]
    assert lines[1]["url"] == "/v1/chat/completions" and lines[1]["method"] == "POST"
    assert body["model"] == "gpt-test"
    assert body["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "Classify: text number 1"},
    ]
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["schema"]["required"] == ["label", "score"]
    ids = list(jsonl.read_jsonl(tmp_path / "requests" / "chunk-00000.ids.jsonl"))
    assert ids == [["item-0", "item-0"], ["item-1", "item-1"], ["item-2", "item-2"]]


def test_chunks_respect_the_request_count_limit(tmp_path, chat_spec):
    backend = OpenAIBackend(ClientConfig(), OpenAIBackend.default_limits.with_overrides({"max_requests": 4}))
    prepared = _prepare(tmp_path, _items(10), backend, chat_spec)
    assert [c.count for c in prepared.chunks] == [4, 4, 2]
    assert sum(1 for c in prepared.chunks for _ in jsonl.read_jsonl(c.path)) == 10


def test_chunks_respect_the_byte_limit(tmp_path, openai_backend, chat_spec):
    probe = _prepare(tmp_path / "probe", _items(1), openai_backend, chat_spec)
    line_bytes = probe.chunks[0].bytes
    limits = dataclasses.replace(openai_backend.limits, max_bytes=line_bytes * 3 + 5)
    backend = OpenAIBackend(ClientConfig(), limits)
    prepared = _prepare(tmp_path / "real", _items(7), backend, chat_spec)
    assert [c.count for c in prepared.chunks] == [3, 3, 1]
    assert all(c.bytes <= limits.max_bytes for c in prepared.chunks)


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        ([{"text": "x"}], "item #1: id field 'id' is missing"),
        ([{"id": "  ", "text": "x"}], "item #1: id field 'id' is empty"),
        (
            [{"id": "a", "text": "x"}, {"id": "a", "text": "y"}],
            "item #2 'a': id field 'id' repeats the id of an earlier item",
        ),
        ([{"id": "a"}], "item 'a': field 'text' is missing; the prompt template uses {text}"),
        ([{"id": "a", "text": None}], "item 'a': field 'text' is null"),
        (["just a string"], "item #1: is a str, expected a mapping"),
    ],
)
def test_bad_items_fail_naming_the_item_and_the_field(tmp_path, openai_backend, chat_spec, items, expected):
    with pytest.raises(InvalidInputError) as err:
        _prepare(tmp_path, items, openai_backend, chat_spec)
    assert expected in str(err.value)


def test_all_problems_are_reported_together(tmp_path, openai_backend, chat_spec):
    items = [{"id": "a", "text": "ok"}, {"text": "no id"}, {"id": "b"}, {"id": "a", "text": "dup"}]
    with pytest.raises(InvalidInputError) as err:
        _prepare(tmp_path, items, openai_backend, chat_spec)
    assert err.value.total == 3
    assert "3 input problems, nothing was submitted" in str(err.value)


def test_a_request_above_the_providers_size_limit_is_refused(tmp_path, openai_backend, chat_spec):
    backend = OpenAIBackend(ClientConfig(), openai_backend.limits.with_overrides({"max_request_bytes": 300}))
    with pytest.raises(InvalidInputError, match=r"item 'big': its request is [\d,]+ bytes, above openai's limit"):
        _prepare(tmp_path, [{"id": "big", "text": "x" * 400}], backend, chat_spec)


def test_invalid_utf8_text_is_refused_naming_the_field(tmp_path, openai_backend, chat_spec):
    broken = b"caf\xe9".decode("utf-8", "surrogateescape")
    with pytest.raises(InvalidInputError, match="item 'u': field 'text' is not valid UTF-8"):
        _prepare(tmp_path, [{"id": "u", "text": broken}], openai_backend, chat_spec)


def test_an_empty_source_prepares_zero_chunks(tmp_path, openai_backend, chat_spec):
    prepared = _prepare(tmp_path, [], openai_backend, chat_spec)
    assert prepared.item_count == 0 and prepared.chunks == ()


def test_integer_ids_become_strings(tmp_path, openai_backend, chat_spec):
    prepared = _prepare(tmp_path, [{"id": 7, "text": "x"}], openai_backend, chat_spec)
    assert next(jsonl.read_jsonl(prepared.chunks[0].path))["custom_id"] == "7"


def test_the_fingerprint_changes_with_the_input(tmp_path, openai_backend, chat_spec):
    first = _prepare(tmp_path / "1", _items(3), openai_backend, chat_spec)
    same = _prepare(tmp_path / "2", _items(3), openai_backend, chat_spec)
    other = _prepare(tmp_path / "3", _items(4), openai_backend, chat_spec)
    assert first.fingerprint == same.fingerprint != other.fingerprint


def test_ids_a_provider_refuses_are_mapped_and_kept_unique():
    mapper = IdMapper(r"[a-zA-Z0-9_-]{1,64}", 64)
    assert mapper.custom_id("T-1") == "T-1"
    mapped = mapper.custom_id("tickets/2026/01 #7")
    assert mapped.startswith("h-") and len(mapped) <= 64
    assert mapper.custom_id("x" * 65) != mapper.custom_id("x" * 66)
    assert mapper.custom_id("tickets/2026/01 #7") == mapped  # stable
