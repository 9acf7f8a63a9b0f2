"""The Results task's columnar path writes exactly the rows of the one-line-at-a-time path.

An OpenAI chat batch into Parquet reads its result files in blocks of lines and writes the usual
lines as columns (``OutcomeBlock`` -> ``RowBlock``); every other line is built by the general path.
These tests run both paths over the same mixed files (seeded, so a failure repeats) and compare
the Parquet rows and row groups, the failed-items file and the summary (counts, tokens, cost).
"""

from __future__ import annotations

import contextlib
import functools
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest

import airflow_llm_batch.batch.backends.openai as openai_backend
from airflow_llm_batch.batch import jsonl
from airflow_llm_batch.batch.backends.base import ClientConfig
from airflow_llm_batch.batch.backends.openai import OpenAIBackend
from airflow_llm_batch.batch.job import JobLayout
from airflow_llm_batch.batch.manifest import BatchEntry, Manifest
from airflow_llm_batch.batch.records import BatchOutcome, BatchStatus, JobKey
from airflow_llm_batch.batch.results import collect_results
from airflow_llm_batch.batch.schema import OutputValidator
from airflow_llm_batch.batch.typed_output import compile_output_type
from airflow_llm_batch.io.sinks import ParquetSink

SCHEMA = {
    "type": "object",
    "properties": {
        "category": {"type": "string", "enum": ["billing", "bug", "other"]},
        "priority": {"type": "integer", "minimum": 1, "maximum": 4},
        "reason": {"type": "string", "maxLength": 40},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
        "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
    },
    "required": ["category", "priority", "reason"],
    "additionalProperties": False,
}
OUTPUTS = [
    '{"category":"bug","priority":2,"reason":"crash"}',  # the usual output: valid, compact, in order
    '{"category":"billing","priority":4,"reason":"é \\" \\\\ \U0001f600 \u2028","tags":["a"],"note":null}',
    '{"category": "bug", "priority": 2, "reason": "spaces"}',  # valid, not compact
    '{"priority":2,"category":"bug","reason":"order"}',  # valid, other key order
    '{"category":"bug","priority":2.0,"reason":"float two"}',  # valid (2.0 is an integer to jsonschema)
    '{"category":"bug","priority":2,"reason":"\\u00e9scaped"}',  # valid, escaped
    '```json\n{"category":"bug","priority":1,"reason":"fenced"}\n```',
    '{"category":"refund","priority":2,"reason":"not in the enum"}',
    '{"category":"bug","priority":9,"reason":"too high"}',
    '{"category":"bug","reason":"missing priority"}',
    '{"category":"bug","priority":2,"reason":"extra","mood":"sad"}',
    '{"category":"bug","priority":2,"reason":"a reason far longer than forty characters, surely"}',
    '{"category":"bug","priority":2,"reason":"dup key","reason":"x"}',
    '{"category":"bug","priority":true,"reason":"bool"}',
    '{"category":"bug","priority":2,"reason":"trailing"} ',
    "not json at all",
    '{"category":"bug"',
    "",
    None,
]
TEXTS = ["Hello there.", "", None, "multi\nline\r\ntext \u2028 é"]


def _chat_line(custom_id: str, rng: random.Random, free_text: bool) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": rng.choice(TEXTS if free_text else OUTPUTS)}
    message["refusal"] = rng.choice([None] * 12 + ["I can't help with that.", ""])
    choice = {"index": 0, "message": message, "finish_reason": rng.choice(["stop"] * 8 + ["length", "content_filter"])}
    usage = rng.choice(
        [
            {"prompt_tokens": rng.randint(1, 500), "completion_tokens": rng.randint(1, 99), "total_tokens": 9},
            {"prompt_tokens": 5, "completion_tokens": None},
            None,
        ]
    )
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1767225600,
        "model": rng.choice(["gpt-4.1-mini-2025-04-14"] * 6 + ["gpt-4.1-mini", None, ""]),
        "choices": [choice],
        "usage": usage,
    }
    if rng.random() < 0.03:
        body["service_tier"] = "default"
    if rng.random() < 0.03:
        body["something_new"] = 1  # an unknown field: the general path reads the line
    return {
        "id": "batch_req_1",
        "custom_id": custom_id,
        "response": {"status_code": 200, "request_id": "req_1", "body": body},
        "error": None,
    }


def _error_line(custom_id: str, rng: random.Random) -> dict[str, Any]:
    if rng.random() < 0.3:
        code = rng.choice(["batch_expired", "batch_cancelled", "something_else", None])
        return {"id": "b", "custom_id": custom_id, "response": None, "error": {"code": code, "message": "gone"}}
    status, code = rng.choice(
        [
            (429, "rate_limit_exceeded"),
            (500, "server_error"),
            (400, "invalid_request_error"),
            (401, "invalid_api_key"),
            (400, "content_policy_violation"),
            (400, "context_length_exceeded"),
        ]
    )
    error = {"message": f"HTTP {status} says no", "type": "requests", "code": code}
    return {"id": "b", "custom_id": custom_id, "response": {"status_code": status, "body": {"error": error}}}


def _write_job(root: Path, rng: random.Random, chunks: int, free_text: bool) -> list[BatchEntry]:
    """Id maps and result files with every kind of line, in a random order."""
    (root / "requests").mkdir(parents=True)
    entries = []
    for chunk in range(chunks):
        count = rng.randint(0, 400)
        ids = [f"T-{chunk}-{number}" for number in range(count)]
        id_map = [[f"c{chunk}-{number}", rng.choice([user_id, str(7 + number)])] for number, user_id in enumerate(ids)]
        (root / "requests" / f"chunk-{chunk:05d}.ids.jsonl").write_bytes(
            b"".join(orjson.dumps(pair) + b"\n" for pair in id_map)
        )
        output, errors = [], []
        for custom_id, _ in id_map:
            roll = rng.random()
            if roll < 0.05:
                continue  # no line: a missing (or expired, cancelled) row
            target = errors if roll < 0.15 else output
            line = _error_line(custom_id, rng) if target is errors else _chat_line(custom_id, rng, free_text)
            target.append(orjson.dumps(line))
            if rng.random() < 0.03:  # a duplicate, at once or later
                (target.insert(rng.randrange(len(target) + 1), target[-1]))
        for _ in range(rng.randint(0, 3)):
            output.insert(rng.randrange(len(output) + 1), orjson.dumps(_chat_line("c-unknown", rng, free_text)))
        if rng.random() < 0.3:
            output.insert(rng.randrange(len(output) + 1), b'{"custom_id": "c0-1", "response": {"status_')
        if rng.random() < 0.2:
            output.insert(rng.randrange(len(output) + 1), b"   ")  # a blank line
        for lines, name in ((output, "output"), (errors, "errors")):
            newline = rng.choice([b"\n"] * 4 + [b"\r\n"])
            data = b"".join(line + newline for line in lines)
            if lines and rng.random() < 0.5:  # a torn last line: the download ended mid-line
                data = data[: -rng.randint(2, len(lines[-1]))]
            (root / f"{name}-{chunk}.jsonl").write_bytes(data)
        entries.append(BatchEntry(batch_id=f"batch_{chunk}", chunk=chunk, count=count))
    return entries


class _LocalFilesBackend(OpenAIBackend):
    """OpenAI's backend with its result files read from a folder (in small pieces, so that lines
    and blocks get cut at many places)."""

    def __init__(self, root: Path, outcome: BatchOutcome, piece: int) -> None:
        super().__init__(ClientConfig(api_key="unused"))
        self.root, self.outcome, self.piece = root, outcome, piece

    def get_status(self, batch_id: str) -> BatchStatus:
        chunk = batch_id.split("_")[1]
        details = {"output_file_id": f"output-{chunk}.jsonl", "error_file_id": f"errors-{chunk}.jsonl"}
        return BatchStatus(batch_id, "ended", self.outcome, 0, 0, 0, details=details)

    @contextlib.contextmanager
    def _open_result_file(self, file_id: str) -> Iterator[Iterator[bytes]]:
        with (self.root / file_id).open("rb") as stream:
            yield iter(functools.partial(stream.read, self.piece), b"")


class _RowsOnlyParquetSink(ParquetSink):
    """The Parquet sink without ``write_block``: the Results task takes the one-line path."""

    write_block = None  # type: ignore[assignment]


def _collect(root: Path, entries: list[BatchEntry], sink_class: type, outcome: BatchOutcome, piece: int) -> Any:
    manifest = Manifest(
        job_key=JobKey("d", "t", "r"),
        provider="openai",
        conn_id="unused",
        model="gpt-4.1-mini",
        kind="chat",
        work_uri=str(root),
        attempt=2,
        item_count=sum(entry.count for entry in entries),
        batches=entries,
        submitted_at=0.0,
        deadline=0.0,
        has_schema=True,
    )
    layout = JobLayout(root)
    out = root / sink_class.__name__
    out.mkdir()
    validator = OutputValidator(SCHEMA) if (root / "with_schema").exists() else None
    summary = collect_results(
        manifest, _LocalFilesBackend(root, outcome, piece), layout, sink_class(out / "results.parquet"), validator
    )
    metadata = pq.ParquetFile(out / "results.parquet").metadata
    groups = [metadata.row_group(index).num_rows for index in range(metadata.num_row_groups)]
    failed = (layout.results_dir / "failed_items.jsonl").read_bytes()
    # The batch age is read off the clock: the two paths' runs differ in it by design.
    summary = {key: value for key, value in summary.items() if key not in ("output_uri", "batch_age_seconds")}
    return pq.read_table(out / "results.parquet"), groups, failed, summary


@pytest.mark.parametrize("free_text", [False, True], ids=["structured output", "free text"])
def test_the_columnar_path_writes_the_rows_of_the_one_line_path(tmp_path, monkeypatch, free_text):
    rng = random.Random(21)
    for round_ in range(12):
        root = tmp_path / str(round_)
        entries = _write_job(root, rng, chunks=rng.randint(1, 3), free_text=free_text)
        if not free_text:
            (root / "with_schema").touch()
        outcome = rng.choice([BatchOutcome.COMPLETED] * 3 + [BatchOutcome.EXPIRED, BatchOutcome.CANCELLED])
        piece = rng.choice([7, 300, 4096, 1 << 20])
        monkeypatch.setattr(
            openai_backend.jsonl, "line_blocks", functools.partial(_line_blocks, rng.choice([1, 5, 64]))
        )
        monkeypatch.setattr("airflow_llm_batch.io.sinks.PARQUET_ROW_GROUP", rng.choice([3, 50, 10_000]))
        general = _collect(root, entries, _RowsOnlyParquetSink, outcome, piece)
        results_dir = root / "results"
        results_dir.rename(root / "results-general")
        columnar = _collect(root, entries, ParquetSink, outcome, piece)
        table, groups, failed, summary = columnar
        assert table.equals(general[0]), round_
        assert (groups, failed, summary) == general[1:], round_
        assert summary["items"] == sum(entry.count for entry in entries)


_real_line_blocks = jsonl.line_blocks


def _line_blocks(lines_per_block: int, chunks: Any) -> Any:
    return _real_line_blocks(chunks, lines_per_block)


def test_the_mixed_files_hold_every_kind_of_row(tmp_path, monkeypatch):
    """The comparison above is only worth something if the files do hold every case."""
    rng = random.Random(21)
    root = tmp_path / "job"
    entries = _write_job(root, rng, chunks=3, free_text=False)
    (root / "with_schema").touch()
    table, _, failed, summary = _collect(root, entries, ParquetSink, BatchOutcome.COMPLETED, 4096)
    rows = table.to_pylist()
    errors = set(summary["by_error_type"])
    assert {"invalid_output", "rate_limited", "server_error", "auth", "invalid_request"} <= errors
    assert {"content_filtered", "context_length", "missing", "expired", "cancelled"} <= errors
    assert any(row["status"] == "succeeded" and row["json"] == row["text"] for row in rows)  # the usual row
    assert any(row["status"] == "succeeded" and row["json"] not in (None, row["text"]) for row in rows)
    assert any(row["input_tokens"] is None for row in rows) and summary["input_tokens"] > 0
    assert summary["cost"]["batch"] is not None
    assert len(failed.splitlines()) == summary["failed"]


def test_a_typed_check_is_made_only_for_schemas_it_can_mirror():
    assert compile_output_type(SCHEMA) is not None
    assert compile_output_type({"type": "object", "properties": {"x": {"type": "number"}}}) is None
    assert compile_output_type({"type": "object", "properties": {"x": {"pattern": "^a"}}}) is None
    assert compile_output_type({"type": "object", "properties": {"x": {"$ref": "#/$defs/X"}}}) is None
    assert compile_output_type({"type": "object", "properties": {"x": {"enum": [1, 2]}}}) is None
    assert compile_output_type({"type": "object", "required": ["y"], "properties": {}}) is None


def _random_schema(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth > 2 or roll < 0.5:
        return rng.choice(
            [
                {"type": "string"},
                {"type": "string", "maxLength": 2},
                {"type": "string", "minLength": 1},
                {"type": "string", "enum": ["a", "é", "\U0001f600"]},
                {"const": "a"},
                {"type": "integer"},
                {"type": "integer", "minimum": 0, "exclusiveMaximum": 3},
                {"type": "boolean"},
                {"type": "null"},
                {"type": ["string", "null"]},
                {"type": ["string", "null"], "enum": ["a", "b"]},
                {"type": ["null", "integer"], "maximum": 2},
                {"anyOf": [{"type": "null"}, {"enum": ["a", "b"]}]},
                {"anyOf": [{"type": "integer"}, {"type": "null"}]},
            ]
        )
    if roll < 0.7:
        return {"type": "array", "items": _random_schema(rng, depth + 1), "maxItems": rng.choice([1, 3])}
    properties = {key: _random_schema(rng, depth + 1) for key in rng.sample("abc", rng.randint(0, 3))}
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    schema["required"] = rng.sample(sorted(properties), rng.randint(0, len(properties)))
    if rng.random() < 0.8:
        schema["additionalProperties"] = False
    return schema


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth > 2 or roll < 0.5:
        return rng.choice([None, True, False, 0, 2, 3, -1, 2**63, 2**64, 1.0, "", "a", "ab", "abc", "é", "\U0001f600"])
    if roll < 0.7:
        return [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {key: _random_value(rng, depth + 1) for key in rng.sample("abcd", rng.randint(0, 3))}


def test_the_typed_check_answers_only_for_text_the_general_path_accepts_and_stores_as_is():
    rng = random.Random(9)
    answered = 0
    for _ in range(400):
        schema = {"type": "object", **_random_schema(rng, 1)} if rng.random() < 0.3 else _random_schema(rng)
        validator = OutputValidator(schema)
        texts = []
        for _ in range(25):
            value = _random_value(rng)
            if isinstance(schema.get("properties"), dict) and rng.random() < 0.5:
                value = {key: _random_value(rng, 2) for key in schema["properties"]}
            text = json.dumps(value, ensure_ascii=rng.random() < 0.2, separators=rng.choice([(",", ":"), (", ", ": ")]))
            texts.append(text)
        for text, stored in zip(texts, validator.stored_texts(texts), strict=True):
            if stored is None:
                continue
            answered += 1
            parsed, reason = validator.parse(text)
            assert reason is None and stored == text == orjson.dumps(parsed).decode(), (schema, text)
    assert answered > 300


def test_orjson_and_msgspec_write_every_character_alike():
    import msgspec

    characters = "".join(chr(code) for code in range(0x110000) if not 0xD800 <= code <= 0xDFFF)
    assert orjson.dumps(characters) == msgspec.json.encode(characters)
