"""``make demo``: the nightly ticket triage DAG, end to end, against the bundled emulator.

Starts the emulator on 127.0.0.1, runs ``airflow dags test nightly_ticket_triage`` in a throwaway
AIRFLOW_HOME on SQLite (under ``.demo/``), prints the summary and a few result rows, and stops
the emulator. Nothing here reaches the internet.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

from airflow_llm_batch.emulator import Emulator, Scenario
from airflow_llm_batch.testing import AirflowCommandError, AirflowSandbox

ROOT = Path(__file__).resolve().parent.parent
DAG_ID = "nightly_ticket_triage"
LOGICAL_DATE = "2026-11-21"


def main() -> int:
    home = ROOT / ".demo" / "airflow-home"
    shutil.rmtree(home, ignore_errors=True)
    started = time.monotonic()
    with Emulator(Scenario(completion_seconds=4.0)) as emulator:
        print(f"Emulator listening on {emulator.url} (127.0.0.1 only)")
        sandbox = AirflowSandbox(home, ROOT / "dags_examples")
        sandbox.set_connection(
            "llm_batch_openai", "llm_batch_openai", host=emulator.openai_base_url, password="demo-key"
        )
        print(f"AIRFLOW_HOME={home}: migrating the SQLite metadata DB ...")
        sandbox.migrate()
        print(f"Running `airflow dags test {DAG_ID} {LOGICAL_DATE}` ...")
        try:
            run = sandbox.dags_test(DAG_ID, LOGICAL_DATE)
        except AirflowCommandError as err:
            print(err, file=sys.stderr)
            return 1
        (home / "dags_test.log").write_text(run.stdout + run.stderr)
        requests = len(emulator.requests())
    summaries = sorted(sandbox.work_dir.glob(f"{DAG_ID}/*/submit/attempt-*/results/summary.json"))
    if not summaries:
        print("The DAG run finished but left no results summary; see .demo/airflow-home/dags_test.log", file=sys.stderr)
        return 1
    summary = json.loads(summaries[-1].read_text())
    _print_summary(summary, requests, time.monotonic() - started)
    return 0 if summary["items"] == 200 and summary["succeeded"] > 0 else 1


def _print_summary(summary: dict, requests: int, seconds: float) -> None:
    results_path = summary["output_uri"].removeprefix("file://")
    print()
    print(f"nightly_ticket_triage: done in {seconds:.0f} s ({requests} HTTP requests to the emulator)")
    print(f"  items       {summary['items']}")
    print(f"  succeeded   {summary['succeeded']}")
    print(f"  failed      {summary['failed']}  {summary['by_error_type'] or ''}")
    print(f"  tokens      {summary['input_tokens']} in / {summary['output_tokens']} out")
    print(f"  batches     {', '.join(summary['batch_ids'])}")
    print(f"  results     {results_path}")
    print()
    print("A few rows:")
    with open(results_path, encoding="utf-8") as rows:
        for _, line in zip(range(5), rows, strict=False):
            row = json.loads(line)
            print(f"  {row['id']}: {row['status']:<9} {json.dumps(row['json']) if row['json'] else row['error_type']}")


if __name__ == "__main__":
    sys.exit(main())
