"""Cost truth (issue #16): the summary's billed, discarded and per-item cost agree with the provider's bill.

The emulator bills an item when its provider would (its ledger): answers that break the response
schema are billed everywhere, and so is an Anthropic refusal (a ``succeeded`` result with
``stop_reason: "refusal"``); an OpenAI content-filter error line is not. The summary must count
the same items and price exactly their tokens.
"""

from __future__ import annotations

import pytest

from airflow_llm_batch.batch.pricing import PriceTable, tokens_cost

ITEMS = [{"id": f"item-{n:03d}", "text": f"message {n}"} for n in range(60)]


def test_billed_and_discarded_answers_in_the_summary_match_the_providers_bill(flow, llm_batch_emulator):
    errors = {"content_filtered": 0.2} if flow.provider in ("openai", "anthropic") else {}
    # (Gemini's blocked answers report prompt tokens but the emulator bills no item for them:
    # the summary prices the tokens it is told about, so the count would differ by design.)
    llm_batch_emulator.update_scenario(invalid_output_rate=0.25, item_errors=errors)
    layout, manifest = flow.submit(ITEMS)
    flow.wait(manifest)
    summary, rows = flow.collect(layout, manifest)
    cost = summary["cost"]

    billed = {item["custom_id"] for item in llm_batch_emulator.ledger()["billed"]}
    succeeded = [r for r in rows if r["status"] == "succeeded"]
    invalid = [r for r in rows if r["error_type"] == "invalid_output"]
    refused = [r for r in rows if r["error_type"] == "content_filtered"]
    assert invalid, "the scenario must break some answers"
    assert cost["billed_items"] == len(billed) == summary["succeeded"] + cost["discarded"]["items"]
    if flow.provider == "anthropic":
        assert refused and cost["discarded"]["items"] == len(invalid) + len(refused)
    else:
        assert cost["discarded"]["items"] == len(invalid)

    discarded = [r for r in rows if r["status"] == "failed" and (r["input_tokens"] or r["output_tokens"])]
    price = PriceTable.shipped().lookup(manifest.model)[1]  # type: ignore[index]
    discarded_in = sum(r["input_tokens"] or 0 for r in discarded)
    discarded_out = sum(r["output_tokens"] or 0 for r in discarded)
    assert (cost["discarded"]["input_tokens"], cost["discarded"]["output_tokens"]) == (discarded_in, discarded_out)
    assert cost["discarded"]["batch"] == pytest.approx(tokens_cost(price, discarded_in, discarded_out), abs=1e-6)
    assert 0 < cost["discarded"]["batch"] < cost["batch"]
    assert cost["per_succeeded_item"] == pytest.approx(cost["batch"] / len(succeeded), abs=1e-6)


def test_every_answer_discarded_leaves_no_cost_per_succeeded_item(flow, llm_batch_emulator):
    llm_batch_emulator.update_scenario(invalid_output_rate=1.0)
    layout, manifest = flow.submit(ITEMS[:8])
    flow.wait(manifest)
    summary, _ = flow.collect(layout, manifest)
    assert summary["succeeded"] == 0
    assert summary["cost"]["per_succeeded_item"] is None
    assert summary["cost"]["discarded"]["items"] == 8 == len(llm_batch_emulator.ledger()["billed"])
    assert summary["cost"]["discarded"]["batch"] == pytest.approx(summary["cost"]["batch"], abs=1e-6)
