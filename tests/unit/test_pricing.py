"""The price table, the cost of a summary's tokens, and the estimate Submit makes before any API call."""

from __future__ import annotations

import json

import pytest

from airflow_llm_batch.batch.pricing import (
    DEFAULT_OUTPUT_TOKENS_PER_ITEM,
    PRICES_AS_OF,
    REALTIME_MULTIPLIER,
    SHIPPED_PRICES,
    PriceTable,
    cost_summary,
    estimate_cost,
    output_limit,
    parse_price_setting,
    tokens_cost,
)
from airflow_llm_batch.batch.retry import consolidate
from airflow_llm_batch.batch.summary import ResultsSummary
from airflow_llm_batch.exceptions import ConfigurationError
from airflow_llm_batch.io.sinks import open_sink


def test_the_shipped_table_prices_the_example_models_and_says_when_it_was_published():
    table = PriceTable.shipped()
    for model in ("gpt-4.1-mini", "claude-sonnet-4-5", "gemini-2.5-flash", "gemini-embedding-001"):
        name, price = table.lookup(model)
        assert name == model
        assert price.input > 0 and price.cached_input <= price.input
        assert PRICES_AS_OF in price.source


def test_every_shipped_row_is_a_batch_price_no_higher_for_cached_input():
    for model, (inp, out, cached) in SHIPPED_PRICES.items():
        assert inp > 0 and out >= 0 and 0 < cached <= inp, model


@pytest.mark.parametrize(
    ("model", "priced_as"),
    [
        ("gpt-4.1-mini-2025-04-14", "gpt-4.1-mini"),
        ("gpt-4.1-2025-04-14", "gpt-4.1"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("claude-3-5-haiku-latest", "claude-3-5-haiku"),
        ("models/gemini-2.5-flash", "gemini-2.5-flash"),
        ("publishers/google/models/gemini-2.5-flash-lite", "gemini-2.5-flash-lite"),
        ("gemini-2.5-flash-preview-09-2025", "gemini-2.5-flash"),
    ],
)
def test_snapshots_and_prefixed_names_cost_what_their_model_costs(model, priced_as):
    assert PriceTable.shipped().lookup(model)[0] == priced_as


def test_an_unlisted_model_is_not_priced_as_a_lookalike():
    table = PriceTable.shipped()
    assert table.lookup("gpt-4.1-mega") is None
    assert table.lookup("my-finetune") is None


def test_cost_is_tokens_times_batch_price_and_realtime_is_twice_that():
    cost = cost_summary("openai", "gpt-4.1-mini", input_tokens=1_000_000, output_tokens=500_000)
    assert cost["currency"] == "USD"
    assert cost["batch"] == pytest.approx(0.20 + 0.5 * 0.80)
    assert cost["realtime"] == pytest.approx(2 * cost["batch"])
    assert cost["savings"] == pytest.approx(cost["batch"])
    assert "gpt-4.1-mini" in cost["price_source"] and PRICES_AS_OF in cost["price_source"]
    assert set(REALTIME_MULTIPLIER) >= {"openai", "anthropic", "gemini"}


def test_cached_input_tokens_are_charged_at_the_cached_price():
    full = cost_summary("anthropic", "claude-haiku-4-5", 1_000_000, 0)
    cached = cost_summary("anthropic", "claude-haiku-4-5", 1_000_000, 0, cached_input_tokens=1_000_000)
    assert full["batch"] == pytest.approx(0.50)
    assert cached["batch"] == pytest.approx(0.05)


def test_an_unknown_model_has_no_cost_and_says_how_to_add_it():
    cost = cost_summary("openai", "my-finetune", 10, 10)
    assert cost["batch"] is None and cost["realtime"] is None
    assert "price_table" in cost["price_source"] and "my-finetune" in cost["price_source"]


def test_overrides_replace_a_model_and_name_their_source():
    table = PriceTable.shipped().with_overrides({"gpt-4.1-mini": {"input": 1, "output": 2}}, source="test prices")
    name, price = table.lookup("gpt-4.1-mini-2025-04-14")
    assert name == "gpt-4.1-mini"
    assert (price.input, price.output, price.cached_input) == (1.0, 2.0, 1.0)
    assert price.source == "test prices"
    assert cost_summary("openai", "gpt-4.1-mini", 1_000_000, 0, table)["price_source"] == "test prices: gpt-4.1-mini"


@pytest.mark.parametrize(
    "bad",
    [{"m": {"input": 1}}, {"m": {"input": -1, "output": 1}}, {"m": {"input": 1, "output": 1, "cache": 1}}, {"m": 3}],
)
def test_malformed_overrides_fail_naming_the_model_and_source(bad):
    with pytest.raises(ConfigurationError, match=r"^my source: .*'m'"):
        PriceTable.shipped().with_overrides(bad, source="my source")


def test_the_price_setting_takes_inline_json_or_a_file(tmp_path):
    inline = '{"m": {"input": 1, "output": 2}}'
    assert parse_price_setting(inline) == {"m": {"input": 1, "output": 2}}
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"m": {"input": 3, "output": 4}}))
    assert parse_price_setting(str(path)) == {"m": {"input": 3, "output": 4}}
    with pytest.raises(ConfigurationError, match="cannot read"):
        parse_price_setting(str(tmp_path / "missing.json"))
    with pytest.raises(ConfigurationError, match="not valid JSON"):
        parse_price_setting("{nope")


def test_the_estimate_counts_request_bytes_and_the_output_limit():
    estimate = estimate_cost(
        "gpt-4.1-mini", items=100, request_bytes=400_000, parameters={"max_tokens": 200}, embedding=False
    )
    assert estimate.input_tokens == 100_000
    assert estimate.output_tokens == 20_000
    assert estimate.batch_cost == pytest.approx((100_000 * 0.20 + 20_000 * 0.80) / 1e6)
    text = estimate.describe()
    assert "100 item(s)" in text and "max_tokens=200" in text and "bytes / 4" in text and "gpt-4.1-mini" in text


def test_without_an_output_limit_the_estimate_assumes_the_documented_default():
    assert output_limit({}, embedding=False)[0] == DEFAULT_OUTPUT_TOKENS_PER_ITEM
    assert output_limit({"generationConfig": {"maxOutputTokens": 64}}, embedding=False)[0] == 64
    assert output_limit({"max_tokens": 99}, embedding=True)[0] == 0


def test_no_estimate_for_a_model_without_a_price():
    assert estimate_cost("my-finetune", 1, 10, {}, embedding=False) is None


def test_the_final_summary_counts_a_discarded_answer_of_an_earlier_round_as_paid(tmp_path):
    def row(item_id, status, tokens, error_type=None):
        return {
            "id": item_id,
            "status": status,
            "error_type": error_type,
            "retryable": status == "failed",
            "input_tokens": tokens[0],
            "output_tokens": tokens[1],
            "attempt": 1,
        }

    rounds = {
        1: [
            row("a", "succeeded", (100, 50)),
            row("b", "failed", (100, 50), "invalid_output"),
            row("c", "failed", (None, None), "rate_limited"),
        ],
        2: [row("b", "succeeded", (100, 40)), row("c", "succeeded", (100, 40))],
    }
    files = []
    for attempt, rows in rounds.items():
        files.append(tmp_path / f"attempt-{attempt}.jsonl")
        files[-1].write_text("".join(json.dumps(r) + "\n" for r in rows))
    counted = ResultsSummary()
    result = consolidate(files, open_sink(tmp_path / "final", "jsonl"), counted)
    cost = counted.cost("openai", "gpt-4.1-mini", None)
    assert (result["succeeded"], result["failed"]) == (3, 0)
    assert cost["billed_items"] == 4 and cost["discarded"]["items"] == 1
    price = PriceTable.shipped().lookup("gpt-4.1-mini")[1]
    assert cost["discarded"]["batch"] == pytest.approx(tokens_cost(price, 100, 50), abs=1e-9)
    assert cost["batch"] == pytest.approx(tokens_cost(price, 400, 180), abs=1e-6)
    assert cost["per_succeeded_item"] == pytest.approx(cost["batch"] / 3, abs=1e-6)
