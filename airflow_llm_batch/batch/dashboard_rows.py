"""The "LLM batches" view's rows: one per DAG run and step, from the summaries Airflow stores.

Plain Python, fed by the plugin (``airflow_llm_batch/plugins/``) with the return values of a
DAG's tasks. A step built by ``llm_batch_step`` is shown by its ``final`` summary (one row per
input id, after the retry rounds); a lone Results task by its own summary. A run still going has
no summary yet and shows as its tasks' progress.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def is_summary(value: Any) -> bool:
    """A Results or final summary of this package (other tasks' return values are left out)."""
    return isinstance(value, Mapping) and {"job_key", "items", "succeeded", "by_error_type"} <= value.keys()


def _step_of(task_id: str, summary: Mapping[str, Any]) -> str:
    """The TaskGroup of a step's task (``triage.final`` -> ``triage``), else the task itself."""
    if "attempts" in summary or "." in task_id:
        return task_id.rsplit(".", 1)[0]
    return task_id


def step_row(run_id: str, step: str, summary: Mapping[str, Any], batch_ids: list[str]) -> dict[str, Any]:
    items, succeeded = int(summary.get("items") or 0), int(summary.get("succeeded") or 0)
    cost = summary.get("cost") or {}
    batch_cost = cost.get("batch")
    return {
        "run_id": run_id,
        "step": step,
        "provider": summary.get("provider"),
        "model": summary.get("model"),
        "items": items,
        "succeeded": succeeded,
        "failed": int(summary.get("failed") or 0),
        "success_rate": round(succeeded / items, 4) if items else None,
        "by_error_type": dict(summary.get("by_error_type") or {}),
        "retries": max(0, int(summary.get("attempts") or summary.get("attempt") or 1) - 1),
        "cost": batch_cost,
        "savings": cost.get("savings"),
        "cost_per_success": _per_success(cost, succeeded),
        "turnaround_seconds": summary.get("batch_age_seconds"),
        "gates_set": "gates" in summary,  # no key: the task had no gate to judge
        "gates": list(summary.get("gates") or []),
        "batch_ids": batch_ids,
    }


def _per_success(cost: Mapping[str, Any], succeeded: int) -> float | None:
    """The summary's own cost per succeeded item; for summaries written before it had one, worked out."""
    if "per_succeeded_item" in cost:
        return cost["per_succeeded_item"]
    return round(cost["batch"] / succeeded, 6) if cost.get("batch") is not None and succeeded else None


def step_rows(entries: Iterable[tuple[str, str, Any]]) -> list[dict[str, Any]]:
    """``(run_id, task_id, return value)`` of a DAG's tasks -> one row per run and step.

    The final summary wins over the rounds' Results summaries of the same step; the batches of
    every round are listed.
    """
    chosen: dict[tuple[str, str], tuple[bool, Mapping[str, Any]]] = {}
    batches: dict[tuple[str, str], list[str]] = {}
    for run_id, task_id, value in entries:
        if not is_summary(value):
            continue
        key = (run_id, _step_of(task_id, value))
        batches.setdefault(key, []).extend(str(b) for b in value.get("batch_ids") or [])
        final = "attempts" in value
        if key not in chosen or (final and not chosen[key][0]):
            chosen[key] = (final, value)
        elif not final and not chosen[key][0] and int(value.get("attempt") or 1) == 1:
            chosen[key] = (False, value)  # without a final task: the first round's summary
    return [step_row(run_id, step, summary, batches[(run_id, step)]) for (run_id, step), (_, summary) in chosen.items()]
