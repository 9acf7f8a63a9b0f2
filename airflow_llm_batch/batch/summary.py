"""Counting result rows for a summary: by status, retryable or permanent, error type; and tokens.

Tokens are what the providers bill, so every row that reports tokens was paid for, including a
failed one: an answer that broke the response schema (``invalid_output``) or a refusal the
provider still charges (Anthropic's ``stop_reason: "refusal"`` is a succeeded result). Those are
counted apart as *discarded*, so the summary can say what was paid for nothing (issue #16).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from airflow_llm_batch.batch.pricing import PriceTable, cost_summary, outcome_costs
from airflow_llm_batch.batch.records import ItemResult, ItemStatus


@dataclass
class ResultsSummary:
    """The counts and tokens of a Results or Consolidate summary (one way of counting for both)."""

    items: int = 0
    succeeded: int = 0
    failed: int = 0
    retryable: int = 0
    permanent: int = 0
    by_error_type: Counter[str] = field(default_factory=Counter)
    input_tokens: int = 0
    output_tokens: int = 0
    discarded_items: int = 0
    discarded_input_tokens: int = 0
    discarded_output_tokens: int = 0
    reused_items: int = 0
    reused_input_tokens: int = 0
    reused_output_tokens: int = 0

    def add(self, row: ItemResult) -> None:
        """One final row: counted, and its tokens added (a reused answer's apart: not billed now)."""
        self.count(row)
        if row.reused_from is not None:
            self.add_reused(row.input_tokens or 0, row.output_tokens or 0)
        else:
            self.add_spent(row.status, row.input_tokens or 0, row.output_tokens or 0)

    def add_reused(self, input_tokens: int, output_tokens: int) -> None:
        """An answer taken from the reuse store: its tokens were billed to the run that asked first."""
        self.reused_items += 1
        self.reused_input_tokens += input_tokens
        self.reused_output_tokens += output_tokens

    def add_spent(self, status: str, input_tokens: int, output_tokens: int) -> None:
        """One row's tokens; a failed row that reports tokens is a billed answer that was discarded."""
        self.add_tokens(input_tokens, output_tokens)
        if status != ItemStatus.SUCCEEDED and (input_tokens or output_tokens):
            self.discarded_items += 1
            self.discarded_input_tokens += input_tokens
            self.discarded_output_tokens += output_tokens

    def count(self, row: ItemResult) -> None:
        """One final row counted by status and error (its tokens not added)."""
        self.items += 1
        if row.status == ItemStatus.SUCCEEDED:
            self.succeeded += 1
        else:
            self.failed += 1
            self.by_error_type[row.error_type or "unknown"] += 1
            if row.retryable:
                self.retryable += 1
            else:
                self.permanent += 1

    def add_tokens(self, input_tokens: int, output_tokens: int) -> None:
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens

    def add_usual(self, count: int, input_tokens: int, output_tokens: int) -> None:
        """``count`` succeeded rows with these tokens in all (a block's usual rows)."""
        self.items += count
        self.succeeded += count
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens

    def counts(self) -> dict[str, Any]:
        """The summary's counts, in the order the XCom value shows them."""
        return {
            "items": self.items,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "retryable": self.retryable,
            "permanent": self.permanent,
            "by_error_type": dict(sorted(self.by_error_type.items())),
        }

    def cost(self, provider: str, model: str, prices: PriceTable | None) -> dict[str, Any]:
        """The summary's ``cost``: every billed token at batch prices, per succeeded item (answered in
        this run: reused answers cost nothing now), discarded, and what reuse saved."""
        cost = cost_summary(provider, model, self.input_tokens, self.output_tokens, prices)
        return outcome_costs(
            cost,
            model,
            prices,
            succeeded=self.succeeded - self.reused_items,
            discarded_items=self.discarded_items,
            discarded_input_tokens=self.discarded_input_tokens,
            discarded_output_tokens=self.discarded_output_tokens,
            reused=(self.reused_items, self.reused_input_tokens, self.reused_output_tokens),
        )
