"""Issue #16 under real Airflow: a step with retry rounds leaves no file at OpenAI, and its final
summary's billed and discarded answers are the emulator's ledger."""

from __future__ import annotations

import json

import pytest
from openai import OpenAI

from airflow_llm_batch.batch.pricing import PriceTable, tokens_cost
from tests.e2e.conftest import API_KEY
from tests.e2e.test_retry_rounds import _attempt_rows, _final_rows

pytestmark = pytest.mark.e2e


def test_a_step_with_retry_rounds_cleans_up_and_its_cost_matches_the_ledger(dag_runner):
    emulator = dag_runner.emulator
    emulator.update_scenario(completion_seconds=1.0, item_errors={"server_error": 0.2}, invalid_output_rate=0.15)
    logical_date, _ = dag_runner.run("e2e_retry_rounds", env={"E2E_PROVIDER": "openai"})

    with OpenAI(api_key=API_KEY, base_url=emulator.openai_base_url, max_retries=0) as client:
        assert list(client.files.list()) == []  # every round's input, output and error files deleted
    rows = _final_rows(dag_runner, logical_date)
    assert len(rows) == len({r["id"] for r in rows}) == 60

    xcoms = dag_runner.xcoms("e2e_retry_rounds", logical_date)
    final = json.loads(xcoms[("classify.final", "return_value")])
    cost = final["cost"]
    billed = emulator.ledger()["billed"]
    attempts = [r for rows_of_attempt in _attempt_rows(dag_runner, logical_date) for r in rows_of_attempt]
    discarded = [r for r in attempts if r["error_type"] == "invalid_output"]
    assert discarded, "the scenario must break some answers"
    assert cost["billed_items"] == len(billed) == final["succeeded"] + len(discarded)
    assert cost["discarded"]["items"] == len(discarded)
    price = PriceTable.shipped().lookup("gpt-4.1-mini")[1]  # type: ignore[index]
    wasted = tokens_cost(price, sum(r["input_tokens"] for r in discarded), sum(r["output_tokens"] for r in discarded))
    assert cost["discarded"]["batch"] == pytest.approx(wasted, abs=1e-6)
    assert cost["per_succeeded_item"] == pytest.approx(cost["batch"] / final["succeeded"], abs=1e-6)

    # Each round's Results summary says what it deleted.
    rounds = [json.loads(v) for (task, key), v in xcoms.items() if task.endswith("results") and key == "return_value"]
    assert len(rounds) >= 2  # the first round and at least one retry round
    for summary in rounds:  # the input and output file at least, nothing kept
        assert summary["provider_cleanup"]["deleted"] >= 2 and summary["provider_cleanup"]["kept"] == []
