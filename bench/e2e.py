"""Benchmark 5, end to end: the triage DAG of ``bench/dags`` with 100,000 tickets, under real Airflow.

``airflow dags test`` in a throwaway ``AIRFLOW_HOME`` (SQLite) runs export -> submit -> wait
(deferred; the trigger runs inline) -> results (Parquet) against the emulator in a process of its
own, with batches that complete 3 seconds after they are created. The same DAG with 1,000
tickets is the reference: what every run costs whatever its size (task start-up, polling).

Per task: the wall time from the metadata DB, and where it goes, from the task log's timestamps:
the package's own work (preparing request files; reading results) against the provider's side
(here the emulator: validating uploads, generating outputs, serving files), whose CPU time is
read from /proc.
"""

from __future__ import annotations

import argparse
import re
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any

from bench._harness import ROOT, EmulatorProcess, Row, benchmark_args, emit, scratch, timed

DAG_ID = "bench_e2e_triage"
TASKS = ("export", "submit", "wait", "results")
_STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z")
_MARKERS = {
    "prepare_start": re.compile(r"Preparing requests for "),
    "prepared": re.compile(r"\d+ items in \d+ chunk\(s\)"),
    "submitted": re.compile(r"Submitted \d+ item\(s\)"),
    "results_start": re.compile(r"\[DAG TEST\] starting task_id=results\b"),
    "first_download": re.compile(r"GET \S+/files/\S+/content"),
    "results_done": re.compile(r"\d+ items: \d+ succeeded"),
}


def _marks(log: str) -> dict[str, float]:
    """The first time each marker appears in the run's log (after results start, for downloads)."""
    found: dict[str, float] = {}
    for line in log.splitlines():
        stamp = _STAMP.match(line)
        if not stamp:
            continue
        for name, pattern in _MARKERS.items():
            if name in found or not pattern.search(line):
                continue
            if name == "first_download" and "results_start" not in found:
                continue
            found[name] = datetime.fromisoformat(stamp.group(1)).timestamp()
    return found


def _upload_and_create(log: str, marks: dict[str, float]) -> tuple[float, float] | None:
    """Seconds spent uploading request files and creating batches, from the SDK's request log lines."""
    if "prepared" not in marks:
        return None
    upload = create = 0.0
    last = marks["prepared"]
    for line in log.splitlines():
        stamp = _STAMP.match(line)
        if not stamp or "HTTP Request: POST" not in line:
            continue
        at = datetime.fromisoformat(stamp.group(1)).timestamp()
        if at < last:
            continue
        if "/files " in line:
            upload += at - last
        elif "/batches " in line:
            create += at - last
        last = at
    return upload, create


def _durations(home: Path, logical_date: str) -> dict[str, float]:
    with sqlite3.connect(home / "airflow.db") as db:
        rows = db.execute(
            "SELECT ti.task_id, ti.duration FROM task_instance ti JOIN dag_run dr ON ti.run_id = dr.run_id "
            "AND ti.dag_id = dr.dag_id WHERE ti.dag_id = ? AND dr.logical_date LIKE ?",
            (DAG_ID, f"{logical_date}%"),
        ).fetchall()
    return {task: float(duration or 0) for task, duration in rows}


def run_dag(sandbox: Any, emulator: EmulatorProcess, items: int, logical_date: str) -> dict[str, Any]:
    cpu_before = emulator.cpu_seconds()
    with timed() as wall:
        result = sandbox.dags_test(DAG_ID, logical_date, env={"LLM_BATCH_BENCH_ITEMS": str(items)}, timeout=900)
    log = result.stdout + result.stderr
    (sandbox.home / f"dags-test-{items}.log").write_text(log)
    marks = _marks(log)
    return {
        "wall": wall[0],
        "tasks": _durations(sandbox.home, logical_date),
        "marks": marks,
        "upload_create": _upload_and_create(log, marks),
        "emulator_cpu": emulator.cpu_seconds() - cpu_before,
    }


def _submit_calls(run: dict[str, Any]) -> str:
    if run["upload_create"] is None:
        return "provider calls: n/a"
    upload, create = run["upload_create"]
    return (
        f"upload request files {upload:.1f} s; create batches {create:.1f} s (the emulator parses and "
        "validates each 50,000-line file, and meanwhile generates the outputs of the batches already done)"
    )


def _span(marks: dict[str, float], start: str, end: str) -> str:
    return f"{marks[end] - marks[start]:.1f} s" if start in marks and end in marks else "n/a"


def _add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--reference-items", type=int, default=1_000)
    parser.add_argument("--completion-seconds", type=float, default=3.0)


def main() -> None:
    from airflow_llm_batch.testing import AirflowSandbox

    args = benchmark_args(__doc__ or "", _add_args)
    with scratch(args.work) as work, EmulatorProcess(work, args.completion_seconds) as emulator:
        # PYTHONPATH: the DAG's export task reuses bench/submit.py's ticket generator.
        sandbox = AirflowSandbox(work / "airflow-home", ROOT / "bench" / "dags", env={"PYTHONPATH": str(ROOT)})
        sandbox.set_connection("bench_openai", "llm_batch_openai", host=emulator.openai_base_url, password="bench")
        sandbox.migrate()
        small = run_dag(sandbox, emulator, args.reference_items, "2026-01-01")
        big = run_dag(sandbox, emulator, args.items, "2026-01-02")
    marks = big["marks"]
    size, ref = f"{args.items:,}", f"{args.reference_items:,} items"
    notes = {
        "export": "writes the tickets file (the DAG's stand-in for a warehouse export)",
        "submit": f"prepare request files {_span(marks, 'prepare_start', 'prepared')}; " + _submit_calls(big),
        "wait": "deferred: the batches' completion time, then the emulator generates the outputs",
        "results": f"status + download + parse + validate + Parquet {_span(marks, 'first_download', 'results_done')}",
    }
    rows = [
        Row(
            f"e2e {size} items: DAG run wall time",
            big["wall"],
            "s",
            small["wall"],
            f"same DAG, {ref}",
            note=f"emulator CPU {big['emulator_cpu']:.1f} s of it (a provider's work, on the same 2 cores)",
        )
    ]
    rows += [
        Row(
            f"e2e {size} items: task {task}",
            big["tasks"].get(task, 0.0),
            "s",
            small["tasks"].get(task),
            ref,
            note=notes[task],
        )
        for task in TASKS
    ]
    emit(rows, args.json)


if __name__ == "__main__":
    main()
