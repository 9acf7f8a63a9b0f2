"""Send a summary's metrics (``batch/metrics.py``) through Airflow's ``Stats``.

Whatever the deployment configured under ``[metrics]`` (StatsD, Datadog, OpenTelemetry, or
nothing) receives them; names in ``docs/metrics.md``. A metrics backend that fails never fails the
task: the numbers are also in the summary.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)


def _stats() -> Any:
    try:
        from airflow.sdk.observability.stats import Stats  # Airflow 3.2+
    except ImportError:  # Airflow 3.1
        from airflow.stats import Stats  # type: ignore[no-redef,unused-ignore]
    return Stats


def emit(summary: Mapping[str, Any] | None, context: Any, step: bool = False) -> None:
    """The metrics of a Results summary, or with ``step`` those of the final task's summary."""
    if not summary:
        return
    from airflow_llm_batch.batch.metrics import results_metrics, step_metrics

    ti = context["ti"]
    tags = {
        "dag_id": ti.dag_id,
        "task_id": ti.task_id,
        "provider": str(summary.get("provider") or ""),
        "model": str(summary.get("model") or ""),
    }
    try:
        stats = _stats()
        for metric in step_metrics(summary) if step else results_metrics(summary):
            if metric.kind == "incr":
                stats.incr(metric.name, int(metric.value), tags=tags)
            elif metric.kind == "gauge":
                stats.gauge(metric.name, metric.value, tags=tags)
            else:
                stats.timing(metric.name, metric.value, tags=tags)
    except Exception as error:  # a metrics backend is never a reason to fail a finished step
        log.warning("Could not send the llm_batch metrics: %s", error)


def emit_wave(report: Any, manifest: Any, context: Any) -> None:
    """What one step of a job's waves did (``batch/waves.py``'s ``WaveReport``), sent by the sensor."""
    ti = context["ti"]
    tags = {"dag_id": ti.dag_id, "task_id": ti.task_id, "provider": manifest.provider, "model": manifest.model}
    try:
        stats = _stats()
        stats.incr("llm_batch.waves.batches_created", len(report.created), tags=tags)
        stats.incr("llm_batch.waves.refused", report.refused, tags=tags)
        stats.gauge("llm_batch.waves.wave", report.wave, tags=tags)
        stats.gauge("llm_batch.waves.running", report.running, tags=tags)
        stats.gauge("llm_batch.waves.pending", report.pending, tags=tags)
    except Exception as error:  # as in ``emit``: metrics never fail the wait
        log.warning("Could not send the llm_batch wave metrics: %s", error)
