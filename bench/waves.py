"""Benchmark 6, waves: 1M items (20 chunks of 50,000) through a queue quota of 3 concurrent batches.

Under the quota, 20 chunks need 7 waves (3, 3, 3, 3, 3, 3, 2); the emulator (a process of its own,
holding the same quota) takes ``completion_seconds`` per batch once created, and some seconds to
accept a create of 50,000 lines (it parses and checks the whole file then, as OpenAI does while
``validating``; one process, so a step's creates are accepted one after the other). The emulator's
own time for 7 waves is therefore 7 x (batch time + the mean time it took to accept one wave
step's creates), measured in the same run; what is left of the wall time is the package's:
noticing that a batch ended (at most one poll interval) and the rest of the worker's wave step.

Measured: the whole loop as the package runs it, the first wave created by the submit step
(``submit_prepared``), then, each time the real completion trigger fires in an asyncio loop (as
the triggerer runs it), the sensor's wave step on the worker (``advance_waves`` on the sensor's own
wave record, read back each resume as a new sensor try does: record what ended, create the next
batches). The ratio against 7 x the batch time alone is in the note.
Airflow's own scheduling between deferral and resume is not in this figure (see ``bench/e2e.py``
for a real DAG run); the worker seconds of each wave step are reported beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

from bench._harness import EmulatorProcess, Row, benchmark_args, emit, scratch

CONN_ID = "bench_waves"
CHUNKS = 20
QUOTA_BATCHES = 3


def _items(count: int) -> Any:
    return ({"id": f"item-{n:07d}", "text": f"ticket {n} about an invoice that was paid twice"} for n in range(count))


async def _first_event(trigger: Any) -> dict[str, Any]:
    async for event in trigger.run():
        return dict(event.payload)
    raise RuntimeError("the trigger ended without an event")


async def _waves(
    manifest: Any, layout: Any, backend: Any, poll_interval: float, steps: list[dict[str, float]], creates: list[float]
) -> int:
    """Trigger, then the sensor's wave step, until every chunk is submitted and every batch ended."""
    from airflow_llm_batch.batch.record_store import FileRecordStore
    from airflow_llm_batch.batch.wave_record import advance_waves, load_wave_record, recorded_statuses
    from airflow_llm_batch.triggers.completion import LLMBatchCompletionTrigger

    store = FileRecordStore(layout.waves_file)  # the sensor's record on Airflow 3.1/3.2
    resumes = 0
    while True:
        ended = recorded_statuses(load_wave_record(store, manifest))
        running = [b for b in manifest.batch_ids if b not in ended]
        if not running and not manifest.pending:
            return resumes
        trigger = LLMBatchCompletionTrigger(
            conn_id=CONN_ID,
            provider="openai",
            batch_ids=running,
            deadline=manifest.deadline,
            poll_interval=poll_interval,
            submitted_at=manifest.submitted_at,
            pending_chunks=len(manifest.pending),
        )
        event = await _first_event(trigger)

        def wave_step(statuses: dict[str, Any]) -> None:
            began, cpu, before = time.perf_counter(), time.process_time(), len(creates)
            records = load_wave_record(store, manifest)
            report = advance_waves(manifest, records, statuses, backend, path_of=Path, lease_file=layout.lease_file)
            if report.created:
                wall = time.perf_counter() - began
                steps.append({"wall": wall, "cpu": time.process_time() - cpu, "creates": sum(creates[before:])})

        await asyncio.to_thread(wave_step, event["batches"])
        resumes += 1


def run(items: int, completion_seconds: float, poll_interval: float, work: Path) -> dict[str, Any]:
    from airflow_llm_batch.batch.backends import create_backend
    from airflow_llm_batch.batch.backends.base import ClientConfig, RequestSpec
    from airflow_llm_batch.batch.job import JobLayout, submit_prepared
    from airflow_llm_batch.batch.prepare import prepare_chunks
    from airflow_llm_batch.batch.quota import QueueQuota
    from airflow_llm_batch.batch.records import JobKey, Kind
    from airflow_llm_batch.batch.templates import PromptTemplate

    quota = f"openai,concurrent_batches={QUOTA_BATCHES}"
    with EmulatorProcess(work, completion_seconds, ("--queue-quota", quota)) as emulator:
        os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = json.dumps(
            {"conn_type": "llm_batch_openai", "host": emulator.openai_base_url, "password": "bench"}
        )
        config = ClientConfig(api_key="bench", base_url=emulator.openai_base_url)
        backend = create_backend("openai", config, {"max_requests": -(-items // CHUNKS)})
        spec = RequestSpec(model="gpt-4.1-mini", kind=Kind.CHAT)
        key = JobKey("bench", "waves", "run")
        layout = JobLayout.for_job(work / "work", key, 1)
        prepared = prepare_chunks(
            _items(items),
            id_field="id",
            spec=spec,
            backend=backend,
            out_dir=layout.requests_dir,
            template=PromptTemplate("Topic of: {text}"),
        )
        assert len(prepared.chunks) == CHUNKS, len(prepared.chunks)
        creates: list[float] = []
        create = backend.submit_chunk

        def timed_create(*args: Any) -> str:
            began = time.perf_counter()
            try:
                return str(create(*args))
            finally:
                creates.append(time.perf_counter() - began)

        backend.submit_chunk = timed_create  # type: ignore[method-assign]
        steps: list[dict[str, float]] = []
        started = time.perf_counter()
        cpu = time.process_time()
        manifest = submit_prepared(
            prepared,
            backend=backend,
            spec=spec,
            job_key=key,
            layout=layout,
            conn_id=CONN_ID,
            attempt=1,
            timeout_seconds=24 * 3600,
            quota=QueueQuota(concurrent_batches=QUOTA_BATCHES),
        )
        steps.append({"wall": time.perf_counter() - started, "cpu": time.process_time() - cpu, "creates": sum(creates)})
        # One event loop for every trigger, as in a triggerer (its shared client stays warm); the
        # worker's wave step runs beside it in a thread, as a resumed sensor runs in a worker.
        resumes = asyncio.run(_waves(manifest, layout, backend, poll_interval, steps, creates))
        elapsed = time.perf_counter() - started
        backend.close()
    return {
        "items": items,
        "elapsed": elapsed,
        # Per wave: the batch time, plus the emulator accepting the creates of one submit step.
        "ideal": 7 * (completion_seconds + statistics.mean(step["creates"] for step in steps)),
        "batch_time_only": 7 * completion_seconds,
        "create_seconds": statistics.mean(step["creates"] for step in steps),
        "waves": manifest.wave,
        "resumes": resumes,
        "batches": len(manifest.batches),
        "steps": steps,
    }


def _add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--completion-seconds", type=float, default=40.0)
    parser.add_argument("--poll-interval", type=float, default=0.25)


def main() -> None:
    args = benchmark_args(__doc__ or "", _add_args)
    with scratch(args.work) as work:
        result = run(args.items, args.completion_seconds, args.poll_interval, work)
    ratio = result["elapsed"] / result["ideal"]
    walls = [step["wall"] for step in result["steps"]]
    cpus = [step["cpu"] for step in result["steps"]]
    n = f"{result['items']:,} items, {CHUNKS} chunks, quota {QUOTA_BATCHES} batches"
    rows = [
        Row(
            f"waves {n}: wall time",
            result["elapsed"],
            "s",
            result["ideal"],
            f"7 waves x the emulator's batch time ({args.completion_seconds:g} s + "
            f"{result['create_seconds']:.1f} s to accept a step's creates)",
            target="<= 1.05x",
            met=ratio <= 1.05,
            note=(
                f"{result['batches']} batches in {len(result['steps'])} submit steps ({result['resumes']} sensor "
                f"resumes); poll interval {args.poll_interval:g} s; Airflow's deferral round trip not included; "
                f"against 7 x the batch time alone ({result['batch_time_only']:.0f} s): "
                f"{result['elapsed'] / result['batch_time_only']:.2f}x"
            ),
        ),
        Row(
            f"waves {n}: worker seconds per wave",
            statistics.mean(walls),
            "s",
            note=(
                f"wall per submit step (upload + create of its chunks, mostly the emulator accepting them): max "
                f"{max(walls):.2f} s; CPU per step "
                f"mean {statistics.mean(cpus):.2f} s, max {max(cpus):.2f} s; the first step includes the state "
                "records of every chunk"
            ),
        ),
    ]
    emit(rows, args.json)


if __name__ == "__main__":
    main()
