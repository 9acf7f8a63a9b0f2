"""The reuse store (``batch/reuse_store.py``, ``batch/reuse.py``): append, look up, age, damage, writers."""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

import pytest

from airflow_llm_batch.batch import jsonl
from airflow_llm_batch.batch.prepare import prepare_chunks
from airflow_llm_batch.batch.records import ItemResult
from airflow_llm_batch.batch.reuse import Fingerprints, ReuseLookup, ReuseSettings, request_key
from airflow_llm_batch.batch.reuse_store import list_segments, write_segment
from airflow_llm_batch.batch.templates import PromptTemplate
from airflow_llm_batch.exceptions import ConfigurationError

KEY = request_key("openai", "chat", {"type": "object"})


def _line(item_id: str, text: str) -> bytes:
    return jsonl.dumps({"custom_id": item_id, "body": {"model": "m", "messages": [{"role": "user", "content": text}]}})


def _answers(items: dict[str, str], label: str = "run") -> list[tuple[bytes, bytes]]:
    fingerprint = Fingerprints(KEY)
    rows = {i: ItemResult(id=i, status="succeeded", text=f"answer {text}") for i, text in items.items()}
    return [(fingerprint(_line(item_id, text)), jsonl.dumps(rows[item_id])) for item_id, text in items.items()]


def _lookup(store, max_age=None) -> ReuseLookup:
    return ReuseLookup(store, ReuseSettings(max_age), KEY)


def test_an_appended_answer_is_found_and_a_changed_request_is_not(tmp_path):
    store = tmp_path / "reuse"
    assert write_segment(store, "night-1/attempt-1", _answers({"a": "one", "b": "two"})) == 2
    lookup = _lookup(store)
    assert lookup.reused(_line("a", "one"))
    assert not lookup.reused(_line("b", "two, changed"))
    assert not lookup.reused(_line("c", "one"))  # the same text for another item is another request
    assert not lookup.reused(_line("a", "one"))  # one answer for one item
    assert lookup.hits == 1
    written = lookup.write_reused(tmp_path / "reused.jsonl")
    rows = list(jsonl.read_jsonl(tmp_path / "reused.jsonl"))
    assert written == 1
    expected = ItemResult(id="a", status="succeeded", text="answer one", reused_from="night-1/attempt-1")
    assert rows == [expected.to_row()]


def test_the_newest_segment_answers_and_each_run_appends_its_own(tmp_path):
    store = tmp_path / "reuse"
    write_segment(store, "night-1/attempt-1", _answers({"a": "one"}), now=time.time() - 100)
    write_segment(store, "night-2/attempt-1", _answers({"a": "one", "b": "two"}))
    assert [s.reused_from for s in list_segments(store, None)] == ["night-2/attempt-1", "night-1/attempt-1"]
    lookup = _lookup(store)
    assert lookup.reused_all([_line("a", "one"), _line("b", "two"), _line("z", "new")]) == [True, True, False]
    lookup.write_reused(tmp_path / "reused.jsonl")
    assert {r["reused_from"] for r in jsonl.read_jsonl(tmp_path / "reused.jsonl")} == {"night-2/attempt-1"}


def test_answers_older_than_the_maximum_age_are_asked_again(tmp_path):
    store = tmp_path / "reuse"
    write_segment(store, "old/attempt-1", _answers({"a": "one"}), now=time.time() - timedelta(days=40).total_seconds())
    write_segment(store, "new/attempt-1", _answers({"b": "two"}))
    lookup = _lookup(store, timedelta(days=30).total_seconds())
    assert lookup.reused_all([_line("a", "one"), _line("b", "two")]) == [False, True]


@pytest.mark.parametrize("damage", ["garbage", "cut short"])
def test_a_damaged_segment_is_reported_and_left_out_never_an_error(tmp_path, caplog, damage):
    store = tmp_path / "reuse"
    write_segment(store, "good/attempt-1", _answers({"a": "one"}))
    write_segment(store, "bad/attempt-1", _answers({"b": "two"}))
    [bad] = [s.path for s in list_segments(store, None) if s.reused_from == "bad/attempt-1"]
    data = bad.read_bytes()
    bad.write_bytes(b"not parquet at all" if damage == "garbage" else data[: len(data) // 2])
    with caplog.at_level(logging.WARNING):
        lookup = _lookup(store)
    assert lookup.reused_all([_line("a", "one"), _line("b", "two")]) == [True, False]
    assert f"Reuse store segment {bad} cannot be read" in caplog.text


def test_a_store_that_cannot_be_read_at_all_submits_everything(tmp_path, caplog):
    store = tmp_path / "reuse"
    store.write_text("a file where the folder should be")
    with caplog.at_level(logging.WARNING):
        lookup = _lookup(store)
    assert not lookup.reused(_line("a", "one"))
    assert "cannot be listed" in caplog.text


def test_concurrent_writers_and_a_retried_attempt_leave_every_segment_whole(tmp_path):
    store = tmp_path / "reuse"
    items = {f"id-{i}": f"text {i}" for i in range(2000)}

    def write(label):
        write_segment(store, label, _answers(items, label))

    threads = [threading.Thread(target=write, args=(f"night-{n % 4}/attempt-1",)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    segments = list_segments(store, None)
    assert sorted(s.reused_from for s in segments) == [f"night-{n}/attempt-1" for n in range(4)]
    assert all(s.rows == 2000 for s in segments)
    assert not [p for p in store.iterdir() if p.name.startswith(".tmp-")]
    lookup = _lookup(store)
    assert all(lookup.reused_all([_line(i, t) for i, t in items.items()]))


def test_settings_take_true_a_timedelta_or_a_max_age(tmp_path):
    assert ReuseSettings.coerce(None) is None and ReuseSettings.coerce(False) is None
    assert ReuseSettings.coerce(True) == ReuseSettings(None)
    assert ReuseSettings.coerce(timedelta(days=1)) == ReuseSettings(86400.0)
    assert ReuseSettings.coerce({"max_age": timedelta(hours=1)}) == ReuseSettings(3600.0)
    with pytest.raises(ConfigurationError, match="only 'max_age'"):
        ReuseSettings.coerce({"max_age": 1, "store": "x"})
    with pytest.raises(ConfigurationError, match="positive"):
        ReuseSettings.coerce(timedelta(0))


def test_prepare_leaves_the_reused_items_out_of_the_chunk_files(tmp_path, openai_backend, chat_spec):
    items = [{"id": f"item-{i}", "text": f"text number {i}"} for i in range(3000)]
    template = PromptTemplate("Classify: {text}")
    key = request_key("openai", "chat", chat_spec.response_schema.schema)

    def prepare(out, lookup=None):
        return prepare_chunks(
            items, id_field="id", spec=chat_spec, backend=openai_backend, out_dir=out, template=template, reuse=lookup
        )

    first = prepare(tmp_path / "night-1")
    fingerprint = Fingerprints(key)
    answers = []
    for chunk in first.chunks:
        ids = [user for _, user in jsonl.read_jsonl(tmp_path / "night-1" / f"chunk-{chunk.index:05d}.ids.jsonl")]
        with chunk.path.open("rb") as stream:
            for user_id, line in zip(ids, jsonl.iter_lines(stream), strict=True):
                answers.append((fingerprint(line), jsonl.dumps(ItemResult(id=user_id, status="succeeded"))))
    write_segment(tmp_path / "reuse", "night-1/attempt-1", answers)
    for position in range(0, 3000, 10):  # every tenth ticket changed
        items[position] = {**items[position], "text": "changed"}
    lookup = ReuseLookup(tmp_path / "reuse", ReuseSettings(), key)
    second = prepare(tmp_path / "night-2", lookup)
    sent = [line["custom_id"] for c in second.chunks for line in jsonl.read_jsonl(c.path)]
    assert sent == [f"item-{i}" for i in range(0, 3000, 10)]
    assert second.item_count == 300 and lookup.hits == 2700


def test_the_cost_summary_prices_reused_answers_as_saved_not_billed():
    from airflow_llm_batch.batch.pricing import PriceTable, tokens_cost
    from airflow_llm_batch.batch.summary import ResultsSummary

    summary = ResultsSummary()
    summary.add(ItemResult("new", "succeeded", input_tokens=100, output_tokens=20))
    for n in range(3):
        summary.add(ItemResult(f"old-{n}", "succeeded", input_tokens=100, output_tokens=20, reused_from="r/attempt-1"))
    cost = summary.cost("openai", "gpt-4.1-mini", None)
    price = PriceTable.shipped().lookup("gpt-4.1-mini")[1]  # type: ignore[index]
    assert summary.succeeded == 4 and summary.input_tokens == 100  # reused tokens were billed elsewhere
    assert cost["billed_items"] == 1 and cost["reused_items"] == 3
    assert cost["batch"] == pytest.approx(tokens_cost(price, 100, 20), abs=1e-6)
    assert cost["per_succeeded_item"] == pytest.approx(cost["batch"], abs=1e-6)
    assert cost["saved"] == pytest.approx(tokens_cost(price, 300, 60), abs=1e-6)


def test_a_store_on_an_object_storage_path_works_the_same(tmp_path):
    from airflow.sdk import ObjectStoragePath

    store = ObjectStoragePath(f"file://{tmp_path}/work") / "_reuse" / "dag" / "task"
    assert write_segment(store, "night-1/attempt-1", _answers({"a": "one", "b": "two"})) == 2
    lookup = _lookup(store)
    assert lookup.reused_all([_line("a", "one"), _line("b", "changed")]) == [True, False]
    assert lookup.write_reused(ObjectStoragePath(f"file://{tmp_path}/reused.jsonl")) == 1
    assert [p.name for p in (tmp_path / "work" / "_reuse" / "dag" / "task").iterdir()] == [
        s.path.name for s in list_segments(store, None)
    ]
