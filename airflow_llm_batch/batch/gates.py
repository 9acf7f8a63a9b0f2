"""Quality gates: is a finished step good enough to pass downstream?

Two gates, judged on a Results or Consolidate summary (plain Python, no Airflow):

- ``min_success_rate``: the share of items that succeeded. Below it, the task fails (``"fail"``,
  the default) or logs a warning and succeeds (``"warn"``), as the user chose.
- ``max_batch_age``: seconds from the submit to the results. A batch that took longer is reported
  (the wait task also warns while it runs); it never fails the task, since failing cannot make the
  batch faster and its results are already paid for.

Each tripped gate is recorded in the summary's ``gates`` list with the limit, the value and the
reason, so the XCom and the dashboard say which gate tripped and why.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from airflow_llm_batch.exceptions import ConfigurationError, QualityGateError

ACTIONS = ("fail", "warn")
TOP_ERROR_TYPES = 3


@dataclass(frozen=True)
class QualityGates:
    """What the user asked of a step's results.

    :param min_success_rate: 0..1; ``None`` for no gate.
    :param max_batch_age: seconds (or a ``timedelta``) from submit to results; ``None`` for no gate.
    :param on_breach: ``"fail"`` or ``"warn"``, for ``min_success_rate``.
    """

    min_success_rate: float | None = None
    max_batch_age: float | None = None
    on_breach: str = "fail"

    @classmethod
    def of(cls, min_success_rate: Any = None, max_batch_age: Any = None, on_breach: str = "fail") -> QualityGates:
        """Checked arguments (an operator calls this when the DAG is parsed): errors say what to change."""
        if on_breach not in ACTIONS:
            raise ConfigurationError(f"on_gate_breach must be 'fail' or 'warn', not {on_breach!r}")
        if min_success_rate is not None and not 0.0 <= float(min_success_rate) <= 1.0:
            raise ConfigurationError(
                f"min_success_rate is a share between 0 and 1 (0.95 for 95%), not {min_success_rate!r}"
            )
        return cls(None if min_success_rate is None else float(min_success_rate), seconds_of(max_batch_age), on_breach)

    @property
    def any(self) -> bool:
        return self.min_success_rate is not None or self.max_batch_age is not None


def seconds_of(age: Any) -> float | None:
    """``None``, seconds, or a ``timedelta`` as seconds (must be more than 0)."""
    if age is None:
        return None
    seconds = age.total_seconds() if isinstance(age, timedelta) else float(age)
    if seconds <= 0:
        raise ConfigurationError(f"max_batch_age must be more than 0 seconds, not {age!r}")
    return seconds


def _top_errors(by_error_type: Mapping[str, int]) -> str:
    top = sorted(by_error_type.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_ERROR_TYPES]
    return ", ".join(f"{name} {count}" for name, count in top) or "none"


def judge(summary: Mapping[str, Any], gates: QualityGates) -> list[dict[str, Any]]:
    """The gates this summary trips, each ``{gate, limit, value, action, reason}``; empty if none."""
    tripped: list[dict[str, Any]] = []
    items, succeeded = int(summary.get("items") or 0), int(summary.get("succeeded") or 0)
    # No items: no rate to judge (an empty input is not a failed one).
    if gates.min_success_rate is not None and items > 0 and succeeded / items < gates.min_success_rate:
        rate = succeeded / items
        tripped.append(
            {
                "gate": "min_success_rate",
                "limit": gates.min_success_rate,
                "value": round(rate, 4),
                "action": gates.on_breach,
                "reason": (
                    f"success rate {rate:.1%} ({succeeded} of {items} items) is below min_success_rate "
                    f"{gates.min_success_rate:.1%}; top error types: {_top_errors(summary.get('by_error_type') or {})}"
                ),
            }
        )
    age = summary.get("batch_age_seconds")
    if gates.max_batch_age is not None and age is not None and float(age) > gates.max_batch_age:
        tripped.append(
            {
                "gate": "max_batch_age",
                "limit": gates.max_batch_age,
                "value": round(float(age), 1),
                "action": "warn",
                "reason": (
                    f"the batches took {timedelta(seconds=round(float(age)))} from submit to results, "
                    f"past max_batch_age {timedelta(seconds=round(gates.max_batch_age))}"
                ),
            }
        )
    return tripped


def record_gates(summary: dict[str, Any], gates: QualityGates | None, log: logging.Logger) -> dict[str, Any]:
    """Put the tripped gates in ``summary["gates"]`` (when any gate is set) and warn for each."""
    if gates is None or not gates.any:
        return summary
    summary["gates"] = judge(summary, gates)
    for gate in summary["gates"]:
        log.warning("Quality gate %s tripped (%s): %s", gate["gate"], gate["action"], gate["reason"])
    return summary


def enforce_gates(summary: dict[str, Any]) -> None:
    """Raise when a recorded gate says fail.

    :raises QualityGateError: carries the summary (with its ``gates``) for the task to keep.
    """
    failing = [g for g in summary.get("gates") or [] if g["action"] == "fail"]
    if failing:
        reasons = "; ".join(f"{g['gate']}: {g['reason']}" for g in failing)
        raise QualityGateError(
            f"quality gate failed: {reasons}. The results are written ({summary.get('output_uri')}); "
            "to pass them on with a warning instead, set on_gate_breach='warn'",
            summary,
        )
