"""Batch prices per model, and what a job's tokens cost at them (plain Python, no Airflow).

The shipped table holds the providers' **batch** prices in US dollars per 1 million tokens
(input, output, cached input), as published on their pricing pages in ``PRICES_AS_OF``:

- OpenAI: https://openai.com/api/pricing (the "Batch" column: 50% of the standard price).
- Anthropic: https://docs.anthropic.com/en/docs/about-claude/pricing ("Batch processing": 50% of
  the standard price; prompt-cache reads are 10% of the base input price, and the batch discount
  applies on top).
- Google Gemini Developer API: https://ai.google.dev/gemini-api/docs/pricing ("Batch": 50% of the
  standard price; prompts up to 200k tokens). Vertex AI batch prediction of Gemini models is
  priced the same way (50% of its online price), so ``vertex`` uses the same rows.

Where a page lists no batch price for cached input, the row holds half the standard cached-input
price. The table was written from those pages as known in ``PRICES_AS_OF`` and could not be re-checked
when it was committed (the build has no internet access). Prices change: override them with
``[llm_batch] price_table`` (a JSON file path or inline JSON) or the operators' ``prices=``
argument, in the same shape as ``SHIPPED_PRICES``::

    {"gpt-4.1-mini": {"input": 0.20, "output": 0.80, "cached_input": 0.05}}

The real-time cost of the same tokens is the batch cost times ``REALTIME_MULTIPLIER`` of the
provider: each of them documents its batch API as half the price of the real-time one.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from airflow_llm_batch.exceptions import ConfigurationError

CURRENCY = "USD"
PRICES_AS_OF = "2025-11"
SHIPPED_SOURCE = f"shipped price table (batch prices as published {PRICES_AS_OF})"

# Real-time price / batch price, per provider: "50% discount" (OpenAI Batch API), "50% of
# standard API prices" (Anthropic Message Batches), "50% of the standard cost" (Gemini Batch
# Mode), "50% discount" (Vertex AI batch inference for Gemini).
REALTIME_MULTIPLIER: dict[str, float] = {"openai": 2.0, "anthropic": 2.0, "gemini": 2.0, "vertex": 2.0}
DEFAULT_REALTIME_MULTIPLIER = 2.0

# Output tokens assumed per chat item when the request parameters set no output limit
# (``max_tokens`` and its provider spellings). Anthropic's backend sends 1024 in that case too.
DEFAULT_OUTPUT_TOKENS_PER_ITEM = 1024
OUTPUT_LIMIT_PARAMETERS = ("max_tokens", "max_completion_tokens", "max_output_tokens", "maxOutputTokens")
# Rough size of a token in the request files: about four characters of English text.
BYTES_PER_TOKEN = 4

# model -> (input, output, cached input), batch prices in USD per 1M tokens.
SHIPPED_PRICES: dict[str, tuple[float, float, float]] = {
    # OpenAI
    "gpt-5.1": (0.625, 5.00, 0.0625),
    "gpt-5": (0.625, 5.00, 0.0625),
    "gpt-5-mini": (0.125, 1.00, 0.0125),
    "gpt-5-nano": (0.025, 0.20, 0.0025),
    "gpt-4.1": (1.00, 4.00, 0.25),
    "gpt-4.1-mini": (0.20, 0.80, 0.05),
    "gpt-4.1-nano": (0.05, 0.20, 0.0125),
    "gpt-4o": (1.25, 5.00, 0.625),
    "gpt-4o-mini": (0.075, 0.30, 0.0375),
    "o3": (1.00, 4.00, 0.25),
    "o4-mini": (0.55, 2.20, 0.1375),
    "text-embedding-3-small": (0.01, 0.0, 0.01),
    "text-embedding-3-large": (0.065, 0.0, 0.065),
    # Anthropic
    "claude-opus-4-5": (2.50, 12.50, 0.25),
    "claude-opus-4-1": (7.50, 37.50, 0.75),
    "claude-opus-4": (7.50, 37.50, 0.75),
    "claude-sonnet-4-5": (1.50, 7.50, 0.15),
    "claude-sonnet-4": (1.50, 7.50, 0.15),
    "claude-3-7-sonnet": (1.50, 7.50, 0.15),
    "claude-haiku-4-5": (0.50, 2.50, 0.05),
    "claude-3-5-haiku": (0.40, 2.00, 0.04),
    "claude-3-haiku": (0.125, 0.625, 0.015),
    # Google Gemini (prompts up to 200k tokens)
    "gemini-2.5-pro": (0.625, 5.00, 0.0625),
    "gemini-2.5-flash": (0.15, 1.25, 0.015),
    "gemini-2.5-flash-lite": (0.05, 0.20, 0.005),
    "gemini-2.0-flash": (0.05, 0.20, 0.0125),
    "gemini-2.0-flash-lite": (0.0375, 0.15, 0.0375),
    "gemini-embedding-001": (0.075, 0.0, 0.075),
}

# A dated or tagged snapshot of a listed model costs what the model costs:
# gpt-4.1-mini-2025-04-14, claude-sonnet-4-5-20250929, gemini-2.5-flash-preview-09-2025, ...@001.
_SNAPSHOT_SUFFIX = re.compile(r"^(-\d{4}-\d{2}-\d{2}|-\d{8}|-\d{3}|-latest|-preview[-\w.]*|-exp[-\w.]*|@[\w.-]+)$")
_MODEL_PREFIXES = ("publishers/google/models/", "models/")


@dataclass(frozen=True)
class ModelPrice:
    """Batch prices of one model in USD per 1 million tokens.

    :param source: where the numbers come from (the shipped table, the config, an operator).
    """

    input: float
    output: float
    cached_input: float
    source: str = SHIPPED_SOURCE

    def per_million(self) -> dict[str, float]:
        return {"input": self.input, "output": self.output, "cached_input": self.cached_input}


class PriceTable:
    """Model name -> :class:`ModelPrice`. Later overrides win, model by model."""

    def __init__(self, prices: Mapping[str, ModelPrice]) -> None:
        self.prices = dict(prices)

    @classmethod
    def shipped(cls) -> PriceTable:
        return cls({model: ModelPrice(*row) for model, row in SHIPPED_PRICES.items()})

    def with_overrides(self, overrides: Mapping[str, Any] | None, source: str) -> PriceTable:
        """A copy with the models of ``overrides`` replaced (or added); ``source`` names where they came from."""
        if not overrides:
            return self
        if not isinstance(overrides, Mapping):
            raise ConfigurationError(f"{source}: prices must be a mapping of model name to prices, not {overrides!r}")
        prices = dict(self.prices)
        for model, row in overrides.items():
            prices[str(model)] = _parse_row(str(model), row, source)
        return PriceTable(prices)

    def lookup(self, model: str) -> tuple[str, ModelPrice] | None:
        """The table's name for ``model`` and its price; snapshots (``-2025-04-14``) match their model."""
        name = _bare_model_name(model)
        if name in self.prices:
            return name, self.prices[name]
        for candidate in sorted(self.prices, key=len, reverse=True):
            if name.startswith(candidate) and _SNAPSHOT_SUFFIX.match(name[len(candidate) :]):
                return candidate, self.prices[candidate]
        return None


def parse_price_setting(value: str, setting: str = "[llm_batch] price_table") -> dict[str, Any]:
    """The overrides a ``price_table`` setting holds: inline JSON (``{...}``) or the path of a JSON file."""
    text = value.strip()
    if not text.startswith("{"):
        try:
            with open(text, encoding="utf-8") as stream:
                text = stream.read()
        except OSError as err:
            raise ConfigurationError(f"{setting}: cannot read the price file {value!r}: {err}") from err
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigurationError(f"{setting}: not valid JSON ({err})") from err
    if not isinstance(data, dict):
        raise ConfigurationError(f"{setting}: expected a JSON object of model name to prices")
    return data


def realtime_multiplier(provider: str) -> float:
    return REALTIME_MULTIPLIER.get(provider, DEFAULT_REALTIME_MULTIPLIER)


def cost_summary(
    provider: str,
    model: str,
    input_tokens: int,
    output_tokens: int,
    table: PriceTable | None = None,
    cached_input_tokens: int = 0,
) -> dict[str, Any]:
    """The ``cost`` entry of a Results summary: what the tokens cost in batch and in real time.

    ``input_tokens`` includes ``cached_input_tokens`` (as the providers report them); the cached
    part is charged at the cached-input price. An unknown model gets ``None`` costs and a
    ``price_source`` that says how to add it.
    """
    found = (table or PriceTable.shipped()).lookup(model)
    if found is None:
        return {
            "currency": CURRENCY,
            "batch": None,
            "realtime": None,
            "savings": None,
            "price_source": f"no price for model {model!r}: add it to [llm_batch] price_table or prices=",
        }
    name, price = found
    batch = tokens_cost(price, input_tokens, output_tokens, cached_input_tokens)
    realtime = batch * realtime_multiplier(provider)
    return {
        "currency": CURRENCY,
        "batch": _money(batch),
        "realtime": _money(realtime),
        "savings": _money(realtime - batch),
        "price_source": f"{price.source}: {name}",
        "prices_per_million_tokens": price.per_million(),
    }


def outcome_costs(
    cost: dict[str, Any],
    model: str,
    table: PriceTable | None,
    *,
    succeeded: int,
    discarded_items: int,
    discarded_input_tokens: int,
    discarded_output_tokens: int,
    reused: tuple[int, int, int] = (0, 0, 0),
) -> dict[str, Any]:
    """``cost`` (from :func:`cost_summary`) with what the money bought, added in place and returned.

    ``per_succeeded_item`` is the batch cost divided by the succeeded rows: what one usable answer
    cost, discarded answers included. ``discarded`` is what the answers that were billed but not
    kept cost (output that broke the schema, refusals the provider charges for). ``billed_items``
    is the succeeded rows plus the discarded ones: the items the provider charged for.
    ``reused_items`` are the answers taken from the reuse store (``reused``: their count and the
    tokens they were billed when first asked) and ``saved`` what they would cost again at batch
    prices (``docs/reuse.md``).
    """
    found = (table or PriceTable.shipped()).lookup(model)
    batch = cost.get("batch")
    cost["billed_items"] = succeeded + discarded_items
    cost["per_succeeded_item"] = _money(batch / succeeded) if batch is not None and succeeded else None
    cost["discarded"] = {
        "items": discarded_items,
        "input_tokens": discarded_input_tokens,
        "output_tokens": discarded_output_tokens,
        "batch": _money(tokens_cost(found[1], discarded_input_tokens, discarded_output_tokens)) if found else None,
    }
    cost["reused_items"] = reused[0]
    cost["saved"] = _money(tokens_cost(found[1], reused[1], reused[2])) if found else None
    return cost


def tokens_cost(price: ModelPrice, input_tokens: int, output_tokens: int, cached_input_tokens: int = 0) -> float:
    """USD for the tokens at batch prices."""
    cached = min(max(cached_input_tokens, 0), input_tokens)
    return ((input_tokens - cached) * price.input + cached * price.cached_input + output_tokens * price.output) / 1e6


@dataclass(frozen=True)
class CostEstimate:
    """What a job will cost at most, estimated before any API call from its request files.

    :param input_tokens: request-file bytes / ``BYTES_PER_TOKEN``: the JSON envelope of each
        request (ids, model, schema) counts too, so the estimate leans high.
    :param output_tokens: the output limit per item times the items (an upper bound), or
        ``DEFAULT_OUTPUT_TOKENS_PER_ITEM`` per item when the parameters set no limit.
    """

    items: int
    input_tokens: int
    output_tokens: int
    output_tokens_per_item: int
    output_limit_source: str
    model_priced_as: str
    price: ModelPrice
    batch_cost: float

    def describe(self) -> str:
        return (
            f"${self.batch_cost:.4f} at batch prices for {self.items} item(s): ~{self.input_tokens} input tokens "
            f"(request files' bytes / {BYTES_PER_TOKEN}) and up to {self.output_tokens} output tokens "
            f"({self.output_tokens_per_item} per item, {self.output_limit_source}); "
            f"priced as {self.model_priced_as} at ${self.price.input:g} in / ${self.price.output:g} out "
            f"per 1M tokens ({self.price.source})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "currency": CURRENCY,
            "batch": _money(self.batch_cost),
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "model_priced_as": self.model_priced_as,
            "price_source": self.price.source,
        }


def output_limit(parameters: Mapping[str, Any], embedding: bool) -> tuple[int, str]:
    """Output tokens one item may produce, and where that number comes from."""
    if embedding:
        return 0, "embeddings produce no output tokens"
    sources = [parameters, parameters.get("generationConfig") or {}, parameters.get("generation_config") or {}]
    for source in sources:
        for name in OUTPUT_LIMIT_PARAMETERS:
            value = source.get(name) if isinstance(source, Mapping) else None
            if isinstance(value, int | float) and value >= 0:
                return int(value), f"from parameters {name}={int(value)}"
    return DEFAULT_OUTPUT_TOKENS_PER_ITEM, f"no max_tokens in parameters: assumed {DEFAULT_OUTPUT_TOKENS_PER_ITEM}"


def estimate_cost(
    model: str,
    items: int,
    request_bytes: int,
    parameters: Mapping[str, Any],
    embedding: bool,
    table: PriceTable | None = None,
) -> CostEstimate | None:
    """The job's batch cost at most, from its request files; ``None`` when the model has no price."""
    found = (table or PriceTable.shipped()).lookup(model)
    if found is None:
        return None
    name, price = found
    per_item, limit_source = output_limit(parameters, embedding)
    input_tokens = math.ceil(request_bytes / BYTES_PER_TOKEN)
    output_tokens = per_item * items
    return CostEstimate(
        items=items,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        output_tokens_per_item=per_item,
        output_limit_source=limit_source,
        model_priced_as=name,
        price=price,
        batch_cost=tokens_cost(price, input_tokens, output_tokens),
    )


def _bare_model_name(model: str) -> str:
    for prefix in _MODEL_PREFIXES:
        if model.startswith(prefix):
            return model[len(prefix) :]
    return model


def _parse_row(model: str, row: Any, source: str) -> ModelPrice:
    if not isinstance(row, Mapping):
        raise ConfigurationError(f"{source}: prices of {model!r} must be an object with input, output, cached_input")
    unknown = sorted(set(row) - {"input", "output", "cached_input"})
    if unknown or "input" not in row or "output" not in row:
        raise ConfigurationError(
            f"{source}: prices of {model!r} need 'input' and 'output' (and optionally 'cached_input'), "
            f"in USD per 1M tokens at batch prices; got {sorted(row)}"
        )
    values = {}
    for key in ("input", "output", "cached_input"):
        value = row.get(key, row["input"])
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ConfigurationError(f"{source}: {model!r} {key} must be a number >= 0, not {value!r}")
        values[key] = float(value)
    return ModelPrice(values["input"], values["output"], values["cached_input"], source=source)


def _money(value: float) -> float:
    return round(value, 6)
