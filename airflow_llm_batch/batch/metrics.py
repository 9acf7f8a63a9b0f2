"""Which metrics a finished Results or final summary gives, under one prefix (``llm_batch.``).

Plain Python: a list of ``Metric`` values that ``airflow_llm_batch/metrics.py`` sends through
Airflow's ``Stats`` (StatsD, Datadog or OpenTelemetry, whichever the deployment configured). The
names are listed in ``docs/metrics.md``; plain StatsD has no tags, so what a dashboard splits by
(outcome, error type, gate) is in the name, and the dag, task, provider and model are tags for the
backends that take them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

PREFIX = "llm_batch"
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True)
class Metric:
    """``incr`` (a count), ``gauge`` (a level) or ``timing`` (milliseconds)."""

    kind: Literal["incr", "gauge", "timing"]
    name: str
    value: float


def _name(*parts: str) -> str:
    # StatsD names take letters, digits, ``_``, ``-`` and ``.`` (the separator); an error type from
    # a provider could carry anything else.
    return ".".join([PREFIX, *(_UNSAFE.sub("_", part) for part in parts)])


def results_metrics(summary: Mapping[str, Any]) -> list[Metric]:
    """One attempt's Results: items by outcome and error type, tokens, cost, batch age.

    Counted per attempt, so tokens and cost add up to what every round paid; the final task's
    ``step_metrics`` says how the step ended.
    """
    metrics = [
        Metric("incr", _name("items", "succeeded"), int(summary.get("succeeded") or 0)),
        Metric("incr", _name("items", "failed"), int(summary.get("failed") or 0)),
        Metric("incr", _name("items", "retryable"), int(summary.get("retryable") or 0)),
        Metric("incr", _name("items", "permanent"), int(summary.get("permanent") or 0)),
        Metric("incr", _name("tokens", "input"), int(summary.get("input_tokens") or 0)),
        Metric("incr", _name("tokens", "output"), int(summary.get("output_tokens") or 0)),
        Metric("incr", _name("batches"), len(summary.get("batch_ids") or [])),
    ]
    metrics += [
        Metric("incr", _name("errors", str(error_type)), int(count))
        for error_type, count in sorted((summary.get("by_error_type") or {}).items())
    ]
    cost = summary.get("cost") or {}
    if cost.get("batch") is not None:
        metrics.append(Metric("gauge", _name("cost", "batch_usd"), float(cost["batch"])))
        metrics.append(Metric("gauge", _name("cost", "savings_usd"), float(cost.get("savings") or 0.0)))
    if summary.get("batch_age_seconds") is not None:
        metrics.append(Metric("timing", _name("batch_age"), 1000.0 * float(summary["batch_age_seconds"])))
    return metrics + _gate_metrics(summary)


def step_metrics(summary: Mapping[str, Any]) -> list[Metric]:
    """The step's final task: one row per input id, after the retry rounds."""
    items, succeeded = int(summary.get("items") or 0), int(summary.get("succeeded") or 0)
    metrics = [
        Metric("incr", _name("step", "items", "succeeded"), succeeded),
        Metric("incr", _name("step", "items", "failed"), int(summary.get("failed") or 0)),
        Metric("gauge", _name("step", "attempts"), int(summary.get("attempts") or 1)),
    ]
    if items:
        metrics.append(Metric("gauge", _name("step", "success_rate"), round(succeeded / items, 4)))
    cost = summary.get("cost") or {}
    per_success = cost.get("per_succeeded_item")
    if per_success is None and cost.get("batch") is not None and succeeded:
        per_success = float(cost["batch"]) / succeeded
    if per_success is not None:
        metrics.append(Metric("gauge", _name("step", "cost_per_success_usd"), float(per_success)))
    return metrics + _gate_metrics(summary)


def _gate_metrics(summary: Mapping[str, Any]) -> list[Metric]:
    return [Metric("incr", _name("gate_tripped", str(gate["gate"])), 1) for gate in summary.get("gates") or []]
