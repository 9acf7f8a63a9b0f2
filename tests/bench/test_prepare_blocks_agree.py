"""The Submit pass a block at a time (``batch/prepare_blocks.py``) decides and writes exactly as
the per-item pass, and the pre-flight check of the template once decides as a check of every
item's own body would.

Seeded generated inputs, mostly usual items (so that blocks are taken) with unusual ones mixed
in at random places (so that blocks are handed to the per-item pass, before and after taken
ones); small blocks, chunk limits, in-memory id counts and a small context window, so that every
boundary is crossed. No timing.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from pathlib import Path
from typing import Any

import pytest

import airflow_llm_batch.batch.prepare as prepare
import airflow_llm_batch.batch.prepare_blocks as prepare_blocks
import airflow_llm_batch.batch.unique_ids as unique_ids
from airflow_llm_batch.batch.backends.base import ClientConfig, RequestSpec
from airflow_llm_batch.batch.backends.openai import OpenAIBackend
from airflow_llm_batch.batch.preflight import Preflight, PreflightSettings
from airflow_llm_batch.batch.records import Kind
from airflow_llm_batch.batch.schema import ResponseSchema
from airflow_llm_batch.batch.templates import PromptTemplate
from airflow_llm_batch.batch.unique_ids import SeenIds
from airflow_llm_batch.exceptions import InvalidInputError

SCHEMA = {
    "type": "object",
    "properties": {"category": {"type": "string", "enum": ["bug", "other"]}},
    "required": ["category"],
    "additionalProperties": False,
}
SPEC = RequestSpec(
    model="small-window",
    kind=Kind.CHAT,
    system_prompt="Triage {{ this }}.",
    parameters={"max_tokens": 20},
    response_schema=ResponseSchema.coerce(SCHEMA),
)
# A context window of 400 tokens: lines above 1,440 bytes are near it, above 1,600 over it.
SETTINGS = PreflightSettings(models={"small-window": {"context_window": 400}})
TEMPLATE = "Subject: {subject}\n\n{body} {{literal}}"


UNUSUAL_KINDS = 14


def _unusual(rng: random.Random, number: int, kind: int | None = None) -> dict[str, Any] | Any:
    """An item the block path must hand to the per-item pass (or that it handles as that pass does)."""
    kind = rng.randrange(UNUSUAL_KINDS) if kind is None else kind
    usual = {"id": f"T-{number}", "subject": "s", "body": "b"}
    return [
        ["not", "a", "mapping"],
        {**usual, "id": number},  # an integer id: kept, as its string
        {**usual, "id": "  "},
        {**usual, "id": True},
        {"subject": "s", "body": "b"},  # no id
        {**usual, "id": f"T-{rng.randrange(max(number, 1))}"},  # the id of an earlier item (maybe)
        {**usual, "id": "x" * 600},  # too long for the provider: mapped to a hash
        {k: v for k, v in usual.items() if k != "body"},  # a field missing
        {**usual, "body": {"nested": ["json"]}},  # a dict value: compact JSON
        {**usual, "body": 7},
        {**usual, "body": None},
        {**usual, "subject": "lone \ud800 surrogate"},
        {**usual, "body": "near the window " * 88},  # about 1,500 bytes a line: reported
        {**usual, "body": "over the window " * 120},  # refused
    ][kind]


def _items(rng: random.Random, count: int, unusual_share: float) -> list[Any]:
    pieces = ["a", '"', "\\", "\n", "é", "\u2028", "\U0001f600", "{body}", "\x00", " ", "}{"]
    items: list[Any] = []
    for number in range(count):
        if rng.random() < unusual_share:
            items.append(_unusual(rng, number))
            continue
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 20)))
        items.append({"id": f"T-{number}", "subject": text[:5], "body": text, "extra": rng.random()})
    return items


def _prepare(tmp_path: Path, items: list[Any], mode: str, limits: dict[str, int]) -> Any:
    """``blocks``: as shipped; ``per-item``: the line encoder one item at a time; ``general``:
    no line encoder (bodies and lines as dicts)."""
    backend = OpenAIBackend(ClientConfig(), OpenAIBackend.default_limits.with_overrides(limits))
    encoder = backend.line_encoder(SPEC)
    assert encoder is not None and encoder.encode_all is not None
    if mode == "per-item":
        backend.line_encoder = lambda spec: dataclasses.replace(encoder, encode_all=None)  # type: ignore[method-assign]
    elif mode == "general":
        backend.line_encoder = lambda spec: None  # type: ignore[method-assign]
    check = Preflight(backend, SPEC, SETTINGS)
    out = tmp_path / mode
    try:
        prepared = prepare.prepare_chunks(
            items,
            id_field="id",
            spec=SPEC,
            backend=backend,
            out_dir=out,
            template=PromptTemplate(TEMPLATE),
            preflight=check,
        )
    except InvalidInputError as err:
        return "refused", str(err), err.total, check.sizes
    files = {path.name: path.read_bytes() for path in sorted(out.iterdir())}
    return (
        prepared.fingerprint,
        prepared.item_count,
        [(c.index, c.count, c.bytes, c.model) for c in prepared.chunks],
        files,
        check.sizes,
    )


@pytest.fixture(autouse=True)
def _small(monkeypatch):
    monkeypatch.setattr(prepare_blocks, "BLOCK_ITEMS", 16)
    monkeypatch.setattr(prepare, "SeenIds", lambda: SeenIds(memory_ids=40, partitions=4))
    monkeypatch.setattr(unique_ids, "_FLUSH_BYTES", 40)  # spilled ids written to disk too, not only held


def _compare(tmp_path: Path, items: list[Any], limits: dict[str, int]) -> Any:
    results = [_prepare(tmp_path, items, mode, limits) for mode in ("blocks", "per-item", "general")]
    assert results[0] == results[1] == results[2]
    return results[0]


@pytest.mark.parametrize("kind", range(UNUSUAL_KINDS))
def test_one_unusual_item_among_usual_ones_is_decided_as_one_item_at_a_time(tmp_path, kind, caplog):
    """Each kind alone, a few times among hundreds of usual items: the block holding it must not
    be taken, or be taken only where the per-item pass would write the same."""
    rng = random.Random(kind)
    for round_ in range(6):
        items = _items(rng, rng.choice([50, 130, 300]), 0.0)
        for _ in range(rng.randint(1, 3)):
            position = rng.randrange(len(items))
            items[position] = _unusual(rng, position, kind)
        limits = rng.choice([{}, {"max_requests": 7}, {"max_bytes": 9_000}])
        with caplog.at_level(logging.WARNING):
            _compare(tmp_path / str(round_), items, limits)


@pytest.mark.parametrize("unusual_share", [0.0, 0.004, 0.03, 0.3])
def test_a_block_at_a_time_writes_and_refuses_as_one_item_at_a_time(tmp_path, unusual_share, caplog):
    rng = random.Random(int(unusual_share * 1000))
    outcomes = set()
    for round_ in range(12):
        items = _items(rng, rng.choice([0, 1, 15, 16, 17, 90, 400]), unusual_share)
        limits = rng.choice([{}, {"max_requests": 7}, {"max_bytes": 9_000}, {"max_requests": 16}])
        with caplog.at_level(logging.WARNING):
            results = [
                _prepare(tmp_path / str(round_), items, mode, limits) for mode in ("blocks", "per-item", "general")
            ]
        assert results[0] == results[1] == results[2]
        outcomes.add(results[0][0] == "refused")
    if unusual_share == 0.0:
        assert outcomes == {False}
    elif unusual_share >= 0.03:
        assert True in outcomes  # refusals were compared, not only written files


def test_the_block_path_takes_the_usual_blocks(tmp_path, monkeypatch):
    """Not a shortcut that never runs: usual blocks are taken, a block with an unusual item is not."""
    taken: list[bool] = []
    original = prepare_blocks.BlockTaker.__call__

    def spy(self: Any, block: list[Any], first_position: int) -> bool:
        taken.append(original(self, block, first_position))
        return taken[-1]

    monkeypatch.setattr(prepare_blocks.BlockTaker, "__call__", spy)
    items = _items(random.Random(1), 64, 0.0)
    items[20] = {**items[20], "body": 7}  # the second block of 16 goes one item at a time
    _prepare(tmp_path, items, "blocks", {})
    assert taken == [True, False, True, True]


# The pre-flight check: the template checked once refuses what each item's own body would ----
BAD_PARAMETERS = [
    {"max_tokenz": 10},  # unknown parameter
    {"temperature": "warm"},  # wrong type
    {"max_tokens": 10, "temperature": 0.2, "top_p": "1", "n": 1.5},  # several at once
    {"max_tokens": 10**6},  # above the model's output limit
    {"messages": [{"role": "robot", "content": "x"}]},  # a wrong role, in a list
    {
        "response_format": {
            "type": "json_schema",
            "json_schema": {
                "name": "x",
                "strict": True,
                "schema": {"type": "object", "properties": {"a": {"type": "string"}}},
            },
        }
    },
    {"max_tokens": 10},  # fine on gpt-4.1-mini; refused on a reasoning model (below)
    {"temperature": 0.5},  # likewise
    {},
]


@pytest.mark.parametrize("model", ["gpt-4.1-mini", "o3-mini", "an-unknown-model"])
@pytest.mark.parametrize("parameters", BAD_PARAMETERS)
def test_the_template_checked_once_refuses_what_each_items_own_body_would(parameters, model):
    backend = OpenAIBackend(ClientConfig())
    spec = RequestSpec(model=model, kind=Kind.CHAT, system_prompt="Be brief.", parameters=parameters)
    template = PromptTemplate(TEMPLATE)
    once = Preflight(backend, spec)
    try:
        once.check_template()
        every_item: list[str] = []
    except InvalidInputError as err:
        every_item = [problem.removeprefix("every item: ") for problem in err.problems]
    if BAD_PARAMETERS.index(parameters) < 3:  # the SDK's type refuses these on any model: not a vacuous match
        assert every_item
    # Each item's real body, rendered, judged whole by the per-body rules (as ``body_field=`` does).
    per_item = Preflight(backend, spec)
    for item in _items(random.Random(2), 20, 0.0):
        body = backend.build_body(spec, template.render(item))
        assert per_item.check_item_body(body) == ("; ".join(every_item) or None)
