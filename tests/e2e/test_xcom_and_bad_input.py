"""XCom carries control, never data; bad input fails before any API call."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.e2e

XCOM_LIMIT = 10 * 1024


def test_xcom_values_stay_under_10kb_for_10000_items(dag_runner):
    logical_date, _ = dag_runner.run("e2e_many_items")
    xcoms = dag_runner.xcoms("e2e_many_items", logical_date)
    assert ("submit", "return_value") in xcoms and ("results", "return_value") in xcoms
    sizes = {key: len(value) for key, value in xcoms.items()}
    assert all(size < XCOM_LIMIT for size in sizes.values()), sizes

    table = pq.read_table(dag_runner.job_dir("e2e_many_items", logical_date) / "results" / "results.parquet")
    ids = table.column("id").to_pylist()
    assert len(ids) == 10_000 and len(set(ids)) == 10_000
    assert len(set(table.column("batch_id").to_pylist())) == 10  # split by the lowered limit


def test_bad_input_fails_before_any_api_call_naming_item_and_field(dag_runner):
    _, run = dag_runner.run("e2e_bad_input", check=False)
    output = run.stdout + run.stderr
    assert run.returncode != 0
    for message in (
        # Positions count from 1, like the lines of a JSONL file.
        "item #2: id field 'ticket_id' is missing",
        "item #1: id field 'ticket_id' is empty",
        "'D-7': id field 'ticket_id' repeats the id of an earlier item",
        "item 'F-3': field 'body' is missing; the prompt template uses {body}",
        "item 'B-1': its request is",
        "above openai's limit of 2,000 bytes per request",
        "item 'U-1': field 'body' is not valid UTF-8",
        "model 'text-embedding-3-small' is not a chat model on openai",
    ):
        assert message in output, message
    provider_calls = [r for r in dag_runner.emulator.requests() if r.get("provider") == "openai"]
    assert provider_calls == []


def test_an_empty_source_is_a_clean_zero_item_run(dag_runner):
    logical_date, _ = dag_runner.run("e2e_empty_source")
    assert dag_runner.results("e2e_empty_source", logical_date) == []
    summary = json.loads(dag_runner.xcoms("e2e_empty_source", logical_date)[("results", "return_value")])
    assert summary["items"] == 0 and summary["batch_ids"] == []
    assert [r for r in dag_runner.emulator.requests() if r.get("provider") == "openai"] == []
