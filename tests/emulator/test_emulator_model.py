"""The emulator's deterministic model: schema-satisfying JSON, summaries, tokens, embeddings."""

from __future__ import annotations

import json
import math
from typing import Literal

import jsonschema
import pytest
from pydantic import BaseModel, Field

from airflow_llm_batch.emulator import fake_llm


class Address(BaseModel):
    city: str = Field(min_length=3, max_length=8)
    zip_code: str | None = None


class Node(BaseModel):
    label: str
    children: list[Node] = []
    parent: Node | None = None


class Person(BaseModel):
    name: str
    age: int = Field(ge=18, le=30)
    score: float = Field(gt=0, lt=1)
    active: bool
    role: Literal["admin", "editor", "viewer"]
    addresses: list[Address] = Field(min_length=2, max_length=3)
    home: Address
    tree: Node


def test_structured_output_satisfies_a_pydantic_schema_with_defs_and_recursion() -> None:
    schema = Person.model_json_schema()
    reply = fake_llm.chat("system", "Alice Smith is an editor in Paris", schema)
    value = json.loads(reply.text)
    jsonschema.validate(value, schema)
    Person.model_validate(value)
    assert value["role"] == "editor" and len(value["addresses"]) == 2
    assert value["home"]["zip_code"] is None or isinstance(value["home"]["zip_code"], str)
    assert value["tree"] == {"label": "Alice Smith is an editor"}  # optional recursive fields left out
    assert reply.text == json.dumps(value, separators=(",", ":"))


def test_strings_come_from_the_user_text_and_respect_max_length() -> None:
    schema = {
        "type": "object",
        "properties": {"title": {"type": "string", "maxLength": 10}, "body": {"type": "string"}},
    }
    value = fake_llm.structured_value(schema, "Quarterly revenue grew by ten percent this year")
    assert value == {"title": "Quarterly", "body": "Quarterly revenue grew by ten"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Refund my BILLING charge, the billing is wrong", "billing"),
        ("Categories: billing, technical, account. Ticket: my account is locked, account access", "account"),
        ("the not applicable option", "not_applicable"),
    ],
)
def test_enum_prefers_the_value_the_text_mentions_most(text: str, expected: str) -> None:
    schema = {"enum": ["billing", "technical", "account", "not_applicable"]}
    assert fake_llm.structured_value(schema, text) == expected


def test_enum_without_a_mention_is_still_deterministic() -> None:
    schema = {"type": "string", "enum": ["red", "green", "blue"]}
    picks = {fake_llm.structured_value(schema, f"item number {i}") for i in range(30)}
    assert picks == {"red", "green", "blue"}
    assert fake_llm.structured_value(schema, "item number 3") == fake_llm.structured_value(schema, "item number 3")


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "integer", "minimum": 5, "maximum": 7},
        {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 3},
        {"type": "integer", "minimum": 10, "multipleOf": 5},
        {"type": "number", "minimum": -2.5, "maximum": -2.0},
        {"type": "number", "exclusiveMaximum": 0},
        {"type": ["string", "null"], "format": "date-time"},
        {"type": "string", "format": "uuid"},
        {"type": "string", "minLength": 40},
        {"anyOf": [{"type": "null"}, {"type": "integer", "minimum": 3}]},
        {"oneOf": [{"type": "boolean"}, {"type": "string"}]},
        {"allOf": [{"properties": {"a": {"type": "integer"}}, "required": ["a"]}, {"properties": {"b": {"const": 1}}}]},
        {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}], "minItems": 2},
        {"type": "array", "items": {"type": "string"}, "minItems": 3, "uniqueItems": True},
    ],
)
def test_scalar_and_combinator_schemas_are_satisfied(schema: dict) -> None:
    for text in ("one", "some other words", ""):
        jsonschema.validate(fake_llm.structured_value(schema, text), schema)


def test_summary_and_token_counts_without_a_schema() -> None:
    text = " ".join(f"w{i}" for i in range(30))
    reply = fake_llm.chat("Be brief.", text)
    assert reply.text == "Summary: " + " ".join(f"w{i}" for i in range(12))
    assert reply.input_tokens == math.ceil((len("Be brief.") + len(text)) / 4)
    assert reply.output_tokens == math.ceil(len(reply.text) / 4)
    assert reply.finish_reason == "stop"


def test_max_tokens_cuts_the_reply_with_finish_reason_length() -> None:
    reply = fake_llm.chat(None, "a long text with many words to summarize here", max_tokens=2)
    assert reply.finish_reason == "length" and reply.output_tokens == 2 and len(reply.text) == 8


def test_broken_output_never_passes_the_schema() -> None:
    schema = Person.model_json_schema()
    variants = set()
    for i in range(20):
        text = fake_llm.broken_output(schema, f"person {i}")
        try:
            value = json.loads(text)
        except ValueError:
            variants.add("truncated")
            continue
        variants.add("missing field")
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(value, schema)
    assert variants == {"truncated", "missing field"}
    with pytest.raises(ValueError):
        json.loads(fake_llm.broken_output({"type": "integer", "minimum": 10, "maximum": 99}, "x"))


def test_embeddings_are_unit_length_deterministic_and_word_based() -> None:
    first = fake_llm.embed("the cat sat on the mat")
    assert len(first) == fake_llm.DEFAULT_DIMENSIONS
    assert math.sqrt(sum(x * x for x in first)) == pytest.approx(1.0, abs=1e-12)
    assert first == fake_llm.embed("the cat sat on the mat")
    assert len(fake_llm.embed("x", dimensions=8)) == 8 and fake_llm.embed("") != []

    def cosine(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    near, far = fake_llm.embed("the cat sat on a mat"), fake_llm.embed("quarterly revenue report")
    assert cosine(first, near) > cosine(first, far)
