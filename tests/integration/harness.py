"""The core flow without Airflow, shared by every backend's integration tests.

prepare -> submit (state file) -> poll (the backend's async client) -> collect results, each step
one function, so a provider's test module only says what is particular to its provider.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from airflow_llm_batch.batch.backends.base import BatchBackend, RequestSpec
from airflow_llm_batch.batch.job import JobLayout, submit_prepared
from airflow_llm_batch.batch.manifest import Manifest
from airflow_llm_batch.batch.prepare import prepare_chunks
from airflow_llm_batch.batch.records import BatchStatus, JobKey
from airflow_llm_batch.batch.results import collect_results
from airflow_llm_batch.batch.schema import OutputValidator
from airflow_llm_batch.batch.templates import PromptTemplate
from airflow_llm_batch.io.sinks import open_sink

KEY = JobKey("dag", "submit", "manual__2026-11-21T00:00:00+00:00")
TEMPLATE = "Spam or ham? {text}"


def items(count: int, prefix: str = "msg/", text: str = "message {i}") -> list[dict[str, str]]:
    return [{"id": f"{prefix}{i}", "text": text.format(i=i)} for i in range(count)]


def submit_items(
    backend: BatchBackend,
    root: Path,
    rows: list[dict[str, Any]],
    spec: RequestSpec,
    key: JobKey = KEY,
    *,
    template: str | None = TEMPLATE,
    timeout_seconds: int = 3600,
    body_field: str | None = None,
    preflight: Any = None,
    **submit_kwargs: Any,
) -> tuple[JobLayout, Manifest]:
    """Prepare the rows as attempt 1 of ``key`` under ``root`` and create its batches.

    :param preflight: the request check (``batch/preflight``); default every rule on.
    """
    layout = JobLayout.for_job(root, key, 1)
    prepared = prepare_chunks(
        rows,
        id_field="id",
        spec=spec,
        backend=backend,
        out_dir=layout.requests_dir,
        template=PromptTemplate(template) if template is not None else None,
        body_field=body_field,
        preflight=preflight,
    )
    manifest = submit_prepared(
        prepared,
        backend=backend,
        spec=spec,
        job_key=key,
        layout=layout,
        conn_id="c",
        attempt=1,
        timeout_seconds=timeout_seconds,
        **submit_kwargs,
    )
    return layout, manifest


def wait_for(backend: BatchBackend, manifest: Manifest, timeout: float = 30.0) -> list[BatchStatus]:
    """Poll every batch with the async client until all have ended, as the trigger does."""

    async def poll() -> list[BatchStatus]:
        try:
            async with asyncio.timeout(timeout):
                while True:
                    statuses = await asyncio.gather(*(backend.aget_status(b) for b in manifest.batch_ids))
                    if all(s.ended for s in statuses):
                        return list(statuses)
                    await asyncio.sleep(0.05)
        finally:
            await backend.aclose()

    return asyncio.run(poll())


def collect_rows(
    backend: BatchBackend,
    layout: JobLayout,
    manifest: Manifest,
    validator: OutputValidator | None = None,
    output_format: str = "jsonl",
    **collect_kwargs: Any,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Collect into the job's results folder; the rows are read back when the sink is JSONL."""
    sink = open_sink(layout.results_dir, output_format)
    summary = collect_results(manifest, backend, layout, sink, validator, **collect_kwargs)
    rows: list[dict[str, Any]] = []
    if output_format == "jsonl":
        rows = [json.loads(line) for line in (layout.results_dir / "results.jsonl").read_text().splitlines()]
    return summary, rows
