"""The fast paths added for the benchmarks decide exactly as the general paths they shortcut.

Each fast path answers only when it is sure and hands everything else to the general path; these
tests compare the two on many generated inputs (seeded, so a failure repeats), with no timing.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import random
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from jsonschema import Draft202012Validator

import airflow_llm_batch.batch.backends.openai as openai_backend
from airflow_llm_batch.batch.backends.base import ClientConfig, RequestSpec
from airflow_llm_batch.batch.backends.openai import OpenAIBackend, parse_result_line
from airflow_llm_batch.batch.backends.openai_lines import read_chat_block
from airflow_llm_batch.batch.fingerprint import LineDigest
from airflow_llm_batch.batch.prepare import prepare_chunks
from airflow_llm_batch.batch.quick_schema import compile_check
from airflow_llm_batch.batch.records import ErrorType, ItemResult, ItemStatus, Kind
from airflow_llm_batch.batch.schema import OutputValidator, ResponseSchema
from airflow_llm_batch.batch.templates import PromptTemplate
from airflow_llm_batch.batch.unique_ids import SeenIds
from airflow_llm_batch.exceptions import InvalidInputError
from airflow_llm_batch.io.sinks import JsonlSink, ParquetSink, parquet_schema

TRIAGE = {
    "title": "ticket_triage",
    "type": "object",
    "properties": {
        "category": {"type": "string", "enum": ["billing", "bug", "other"]},
        "priority": {"type": "integer", "minimum": 1, "maximum": 4},
        "reason": {"type": "string", "maxLength": 20},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
        "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
    },
    "required": ["category", "priority", "reason"],
    "additionalProperties": False,
}


def _random_schema(rng: random.Random, depth: int = 0) -> Any:
    if depth > 2 or rng.random() < 0.15:
        return rng.choice([True, {}, {"type": "string"}, {"type": "integer"}, {"enum": ["a", None, 1, True]}])
    schema: dict[str, Any] = {}
    for _ in range(rng.randint(1, 4)):
        keyword = rng.choice(
            [
                "type",
                "properties",
                "required",
                "additionalProperties",
                "enum",
                "const",
                "minLength",
                "maxLength",
                "minimum",
                "exclusiveMaximum",
                "items",
                "maxItems",
                "anyOf",
                "allOf",
                "pattern",
                "$ref",
                "oneOf",
            ]
        )
        if keyword == "type":
            schema[keyword] = rng.choice(["string", "integer", "number", "boolean", "null", "array", "object"])
        elif keyword == "properties":
            schema[keyword] = {rng.choice("abc"): _random_schema(rng, depth + 1) for _ in range(rng.randint(0, 3))}
        elif keyword == "required":
            schema[keyword] = rng.sample(["a", "b", "c"], rng.randint(0, 2))
        elif keyword == "additionalProperties":
            schema[keyword] = rng.choice([False, True, _random_schema(rng, depth + 1)])
        elif keyword == "enum":
            schema[keyword] = rng.sample(["a", "b", None, 1, 1.0, True, False, [1]], rng.randint(1, 3))
        elif keyword == "const":
            schema[keyword] = rng.choice(["a", None, 1, True, 0.0])
        elif keyword in ("minLength", "maxLength", "maxItems"):
            schema[keyword] = rng.choice([0, 1, 2, 3])
        elif keyword in ("minimum", "exclusiveMaximum"):
            schema[keyword] = rng.choice([0, 1, -1.5, 2.5])
        elif keyword == "items":
            schema[keyword] = _random_schema(rng, depth + 1)
        elif keyword in ("anyOf", "allOf", "oneOf"):
            schema[keyword] = [_random_schema(rng, depth + 1) for _ in range(rng.randint(1, 2))]
        elif keyword == "pattern":
            schema[keyword] = rng.choice(["^a", "b$", "[0-9]+"])
        else:
            schema[keyword] = rng.choice(["#/$defs/X", "#"])
    if rng.random() < 0.5:
        schema["$defs"] = {"X": _random_schema(rng, 1)}
    return schema


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth > 2 or roll < 0.4:
        return rng.choice([None, True, False, 0, 1, -1, 1.0, 2.5, 10**21, "", "a", "b", "ab", "9", "billing"])
    if roll < 0.65:
        return [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {rng.choice("abcd"): _random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))}


def test_the_quick_schema_check_never_says_valid_where_jsonschema_says_invalid():
    rng = random.Random(7)
    answered = 0
    for _ in range(700):
        schema = _random_schema(rng)
        try:
            Draft202012Validator.check_schema(schema)
        except Exception:
            continue
        check = compile_check(schema)
        if check is None:
            continue
        validator = Draft202012Validator(schema)
        for _ in range(10):
            value = _random_value(rng)
            if check(value):
                answered += 1
                assert validator.is_valid(value), (schema, value)
    assert answered > 500  # the check does answer for most of what it supports


def test_the_usual_response_schemas_get_a_quick_check_that_accepts_valid_output():
    check = compile_check(TRIAGE)
    assert check is not None
    assert check({"category": "bug", "priority": 2, "reason": "crash", "tags": ["ui"], "note": None})
    assert check({"category": "bug", "priority": 2.0, "reason": "crash"})  # 2.0 is an integer to jsonschema
    assert not check({"category": "refund", "priority": 2, "reason": "crash"})
    assert not check({"category": "bug", "priority": True, "reason": "crash"})
    assert compile_check({"type": "object", "not": {"required": ["a"]}}) is None  # "not": jsonschema decides


@pytest.mark.parametrize(
    "text",
    [
        '{"category": "bug", "priority": 2, "reason": "crash"}',
        '```json\n{"category": "bug", "priority": 2, "reason": "crash"}\n```',
        '{"category": "refund", "priority": 2, "reason": "crash"}',
        '{"category": "bug", "priority": 2, "reason": "a reason far longer than twenty characters"}',
        '{"category": "bug", "priority": 12345678901234567890123, "reason": "big"}',
        '{"category": "bug", "priority": NaN, "reason": "x"}',
        '{"category": "bug", "priority": 2, "reason": "\\ud800"}',
        '{"category": "bug", "priority": 2, "reason": "x"',
        "   ",
        None,
    ],
)
def test_output_validation_reads_and_judges_as_json_and_jsonschema_do(text):
    validator = OutputValidator(TRIAGE)
    reference = Draft202012Validator(TRIAGE)
    parsed, reason = validator.parse(text)
    if text is None or not text.strip():
        assert reason == "the model returned no text"
        return
    body = text.strip().removeprefix("```json\n").removesuffix("\n```")
    try:
        expected = json.loads(body)
    except json.JSONDecodeError as err:
        assert reason == f"not valid JSON ({err.msg} at char {err.pos})"
        return
    errors = list(reference.iter_errors(expected))
    assert (reason is None) == (not errors)
    if reason is None:
        assert repr(parsed) == repr(expected)  # same types too: big integers stay integers


def _mutated_lines(rng: random.Random, count: int) -> list[str | bytes]:
    base = {
        "id": "batch_req_1",
        "custom_id": "T-1",
        "response": {
            "status_code": 200,
            "request_id": "req_1",
            "body": {
                "id": "c",
                "object": "chat.completion",
                "created": 1,
                "model": "gpt",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": '{"a":1}', "refusal": None, "annotations": []},
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
            },
        },
        "error": None,
    }
    odd = [None, 0, 200, 200.0, 2**63, 2**64, 1.5, True, "", "x", "content_filter", [], [{}], {}, {"a": 1}]

    def mutate(value: Any) -> Any:
        if isinstance(value, dict):
            out = {}
            for key, item in value.items():
                roll = rng.random()
                if roll < 0.06:
                    continue
                out[key] = rng.choice(odd) if roll < 0.12 else mutate(item)
            return out
        if isinstance(value, list):
            return [mutate(item) for item in value] if rng.random() < 0.9 else rng.choice(odd)
        return value

    lines: list[str | bytes] = []
    for _ in range(count):
        line = json.dumps(mutate(base) if rng.random() < 0.85 else base)
        if rng.random() < 0.05:
            at = rng.randrange(len(line))
            line = line[:at] + rng.choice(['"', "}", "1e999", "1" + "0" * 320, "\\ud800"]) + line[at + 1 :]
        lines.append(line.encode("utf-8", "surrogatepass") if rng.random() < 0.5 else line)
    return lines


def test_the_usual_result_line_is_read_as_the_general_path_reads_it(monkeypatch):
    lines = _mutated_lines(random.Random(11), 3000)

    def outcome(line: str | bytes) -> Any:
        try:
            return parse_result_line(line, Kind.CHAT)
        except Exception as err:
            return type(err).__name__

    fast = [outcome(line) for line in lines]
    monkeypatch.setattr(openai_backend, "succeeded_chat_line", lambda line: None)
    assert [outcome(line) for line in lines] == fast


def test_a_block_of_lines_reads_each_line_as_the_one_line_path():
    lines = [
        line if isinstance(line, bytes) else line.encode("utf-8", "surrogatepass")
        for line in _mutated_lines(random.Random(12), 3000)
    ]
    read_one = functools.partial(parse_result_line, kind=Kind.CHAT)

    def one_line(line: bytes) -> Any:
        try:
            return read_one(line)
        except Exception as err:
            return type(err).__name__

    expected = [one_line(line) for line in lines]
    readable = [(line, outcome) for line, outcome in zip(lines, expected, strict=True) if not isinstance(outcome, str)]
    block = read_chat_block([line for line, _ in readable], read_one)
    assert [block.outcome(index) for index in range(len(block))] == [outcome for _, outcome in readable]
    assert 0 < len(block.others) < len(block)  # both kinds of line are there
    for line, outcome in zip(lines, expected, strict=True):
        if isinstance(outcome, str):  # the one-line path raises: so does a block holding the line
            with pytest.raises(Exception) as raised:
                read_chat_block([line], read_one)
            assert type(raised.value).__name__ == outcome


def _tickets(rng: random.Random, count: int) -> list[dict[str, Any]]:
    pieces = ["a", '"', "\\", "\n", "é", "\u2028", "\U0001f600", "{{ ds }}", "\x00", "\ud800", " "]
    tickets: list[dict[str, Any]] = []
    for number in range(count):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 12)))
        ticket: dict[str, Any] = {"id": rng.choice([f"T-{number}", f'q"{number}', number, f"T-{rng.randint(0, 9)}"])}
        ticket["subject"] = text
        ticket["body"] = rng.choice([text, 5, None, b"\xff", text * 3])
        tickets.append(ticket)
    return tickets


def _prepare(tmp_path: Path, tickets: list[dict[str, Any]], spec: RequestSpec, fast: bool) -> Any:
    backend = OpenAIBackend(ClientConfig(), OpenAIBackend.default_limits.with_overrides({"max_requests": 5}))
    if not fast:
        backend.line_encoder = lambda spec: None  # type: ignore[method-assign]
    out = tmp_path / ("fast" if fast else "general")
    try:
        prepared = prepare_chunks(
            tickets,
            id_field="id",
            spec=spec,
            backend=backend,
            out_dir=out,
            template=PromptTemplate("{subject}: {body}"),
        )
    except InvalidInputError as err:
        return str(err), err.total
    files = {path.name: path.read_bytes() for path in sorted(out.iterdir())}
    return prepared.fingerprint, prepared.item_count, files


@pytest.mark.parametrize(
    "spec",
    [
        RequestSpec(
            model="gpt-4.1-mini",
            kind=Kind.CHAT,
            system_prompt='Be "brief" \\ é',
            parameters={"max_tokens": 9},
            response_schema=ResponseSchema.coerce(TRIAGE),
        ),
        RequestSpec(model="gpt-4.1-mini", kind=Kind.CHAT, parameters={"model": "gpt-4o"}),
        RequestSpec(model="gpt-4.1-mini", kind=Kind.CHAT, parameters={"messages": [{"role": "user", "content": "x"}]}),
    ],
)
def test_request_lines_from_fragments_are_the_bytes_of_the_general_path(tmp_path, spec):
    rng = random.Random(3)
    for round_ in range(15):
        tickets = _tickets(rng, rng.randint(0, 30))
        if round_ % 2:  # also rounds without bad input, so that files get written and compared
            tickets = [t for t in tickets if isinstance(t["body"], str) and "\ud800" not in t["subject"]]
            tickets = list({str(t["id"]): t for t in tickets}.values())
        assert _prepare(tmp_path / str(round_), tickets, spec, True) == _prepare(
            tmp_path / str(round_), tickets, spec, False
        )


def test_duplicates_found_after_the_pass_read_as_those_found_at_once(tmp_path, monkeypatch):
    import airflow_llm_batch.batch.prepare as prepare

    spec = RequestSpec(model="gpt-4.1-mini", kind=Kind.CHAT)
    rng = random.Random(5)
    for round_ in range(60):
        tickets = _tickets(rng, rng.randint(0, 40))
        outcomes = []
        for memory_ids in (10**9, 0, 3):
            monkeypatch.setattr(prepare, "SeenIds", lambda memory_ids=memory_ids: SeenIds(memory_ids, partitions=4))
            outcomes.append(_prepare(tmp_path / f"{round_}-{memory_ids}", tickets, spec, True))
        assert outcomes[0] == outcomes[1] == outcomes[2]


def test_the_fingerprint_is_blake2b_of_the_lines_in_order():
    rng = random.Random(1)
    lines = [rng.randbytes(rng.randint(0, 5000)) for _ in range(2000)]
    digest, reference = LineDigest(), hashlib.blake2b(digest_size=16)
    for line in lines:
        digest.update(line)
        reference.update(line)
    assert digest.hexdigest() == reference.hexdigest()


def _rows(count: int) -> list[ItemResult]:
    rng = random.Random(4)
    rows = []
    for number in range(count):
        if rng.random() < 0.3:
            error = rng.choice(list(ErrorType))
            rows.append(ItemResult.failure(f"T-{number}", error, rng.choice([None, "é"]), provider="openai", attempt=2))
        else:
            rows.append(
                ItemResult(
                    id=f"T-{number}",
                    status=ItemStatus.SUCCEEDED,
                    text=rng.choice([None, "t", "\U0001f600"]),
                    json=rng.choice([None, {"a": [1, 2.5, None, "é"]}, [], 3]),
                    embedding=rng.choice([None, [0.5, 0.25]]),
                    provider="openai",
                    model="m",
                    batch_id="b",
                    input_tokens=rng.choice([None, 5]),
                    output_tokens=7,
                    finish_reason="stop",
                )
            )
    return rows


def test_result_files_hold_what_the_rows_hold(tmp_path):
    rows = _rows(23_456)  # more than two row groups, and a partial one
    parquet = ParquetSink(tmp_path / "results.parquet")
    jsonl_sink = JsonlSink(tmp_path / "results.jsonl")
    for row in rows:
        parquet.write(row)
        jsonl_sink.write(row)
    parquet.close()
    jsonl_sink.close()
    expected = []
    for row in rows:
        data = row.to_row()
        data["json"] = None if data["json"] is None else orjson.dumps(data["json"]).decode()
        expected.append(data)
    assert pq.read_table(tmp_path / "results.parquet").equals(pa.Table.from_pylist(expected, schema=parquet_schema()))
    lines = (tmp_path / "results.jsonl").read_bytes().splitlines()
    assert lines == [orjson.dumps(row.to_row()) for row in rows]


def test_triggers_of_one_loop_share_one_backend_per_connection(monkeypatch):
    from airflow_llm_batch.triggers.shared_backends import SharedBackends

    conn = {"conn_type": "llm_batch_openai", "host": "http://127.0.0.1:9/openai/v1", "password": "k-1"}
    monkeypatch.setenv("AIRFLOW_CONN_SHARED_A", json.dumps(conn))
    monkeypatch.setenv("AIRFLOW_CONN_SHARED_B", json.dumps({**conn, "password": "k-2"}))
    pool = SharedBackends()
    closed: list[Any] = []

    async def scenario() -> tuple[Any, ...]:
        first, second = await asyncio.gather(pool.acquire("shared_a", None), pool.acquire("shared_a", None))
        other = await pool.acquire("shared_b", None)
        for backend in (first, second, other):
            backend._backend.aclose = lambda backend=backend: _closed(backend)
        await pool.release(first)
        open_after_one = list(closed)
        await pool.release(second)
        await pool.release(other)
        return first, second, other, open_after_one

    async def _closed(backend: Any) -> None:
        closed.append(backend)

    first, second, other, open_after_one = asyncio.run(scenario())
    assert first is second and first is not other  # one per connection content
    assert open_after_one == []  # still used by the second trigger
    assert closed == [first, other]  # closed by the last user
    assert asyncio.run(pool.acquire("shared_a", None)) is not first  # another loop, another client
