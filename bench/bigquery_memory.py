"""BigQuery streaming memory: peak RSS of the Submit side (a query read page by page into request
files) and of the Results side (rows loaded into a table) for 10,000 and 100,000 rows, same run.

Run: ``python -m bench.bigquery_memory`` (``--json FILE`` for the bench runner). Each measurement
runs in a fresh process (so its peak is its own) against the emulator in another process (so the
emulator's tables never count). Bounded memory means the 100k peak stays within a few MB of the
10k peak: a page of rows, a row group and a load file's upload are held, never the whole source.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench._harness import EmulatorProcess, Row, emit, peak_rss_mb, scratch, timed

SIZES = (10_000, 100_000)
PROJECT = "bench-project"
PAGE_SIZE = 5_000


def seed(url: str, folder: Path) -> None:
    """One tickets table per size, loaded with a load job (not measured)."""
    from google.cloud import bigquery

    from airflow_llm_batch.io.bigquery import GoogleSettings

    client = GoogleSettings(project=PROJECT, bigquery_endpoint=f"{url}/bigquery", token="t").bigquery_client()
    client.create_dataset("bench")
    schema = [bigquery.SchemaField(name, "STRING") for name in ("ticket_id", "subject", "body")]
    for size in SIZES:
        path = folder / f"tickets-{size}.jsonl"
        with path.open("w") as stream:
            for n in range(size):
                body = f"The export button crashes after the sync; ticket {n} " + "details " * 30
                stream.write(json.dumps({"ticket_id": f"T-{n:08d}", "subject": f"Ticket {n}", "body": body}) + "\n")
        config = bigquery.LoadJobConfig(schema=schema, source_format="NEWLINE_DELIMITED_JSON")
        with path.open("rb") as stream:
            client.load_table_from_file(stream, f"{PROJECT}.bench.tickets_{size}", job_config=config).result()
        path.unlink()
    client.close()


def measure_source(url: str, size: int, folder: Path) -> dict[str, Any]:
    """The Submit task's work before its first provider call, with items from a BigQuery query."""
    from airflow_llm_batch.batch.backends import ClientConfig, create_backend
    from airflow_llm_batch.batch.backends.base import RequestSpec
    from airflow_llm_batch.batch.prepare import prepare_chunks
    from airflow_llm_batch.batch.records import Kind
    from airflow_llm_batch.batch.templates import PromptTemplate
    from airflow_llm_batch.io.bigquery import BigQuerySource, GoogleSettings

    settings = GoogleSettings(project=PROJECT, bigquery_endpoint=f"{url}/bigquery", token="t")
    source = BigQuerySource(query=f"SELECT * FROM `bench.tickets_{size}`", page_size=PAGE_SIZE, settings=settings)
    backend = create_backend("openai", ClientConfig(api_key="unused"))
    spec = RequestSpec(model="gpt-4.1-mini", kind=Kind.CHAT, system_prompt="Triage the ticket.")
    with timed() as elapsed:
        prepared = prepare_chunks(
            source.iter_items(),
            id_field="ticket_id",
            spec=spec,
            backend=backend,
            out_dir=folder / f"requests-{size}",
            template=PromptTemplate("Subject: {subject}\n\n{body}"),
        )
    return {"rows": prepared.item_count, "seconds": elapsed[0], "peak_rss_mb": peak_rss_mb()}


def result_rows(size: int) -> Iterator[dict[str, Any]]:
    from airflow_llm_batch.batch.records import ItemResult

    for n in range(size):
        output = {"category": "bug", "priority": "high", "reason": f"crash report number {n}"}
        yield ItemResult(id=f"T-{n:08d}", status="succeeded", text=json.dumps(output), json=output).to_row()


def measure_sink(url: str, size: int) -> dict[str, Any]:
    """The Results task's BigQuery write: staging load files, load jobs, one replacing transaction."""
    from airflow_llm_batch.batch.records import JobKey
    from airflow_llm_batch.io.bigquery import GoogleSettings
    from airflow_llm_batch.io.bigquery_sink import BigQuerySink

    settings = GoogleSettings(project=PROJECT, bigquery_endpoint=f"{url}/bigquery", token="t")
    sink = BigQuerySink(f"bench.labels_{size}", settings=settings)
    with timed() as elapsed:
        sink.prepare(JobKey("bench", "results", f"run-{size}"), None)
        written = sink.write(result_rows(size))
    return {"rows": written["rows"], "seconds": elapsed[0], "peak_rss_mb": peak_rss_mb()}


def child(path: str, url: str, size: int, folder: Path) -> None:
    result = measure_source(url, size, folder) if path == "source" else measure_sink(url, size)
    print(json.dumps(result))


def run_child(path: str, url: str, size: int, folder: Path) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.bigquery_memory", "--child", path, "--url", url]
    command += ["--rows", str(size), "--work", str(folder)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", type=Path, help="write the rows here (the bench runner reads them)")
    parser.add_argument("--work", type=Path, help="scratch folder (default: a temporary one)")
    parser.add_argument("--child", choices=("source", "sink"), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.url, args.rows, args.work)
        return
    rows: list[Row] = []
    with scratch(args.work) as folder, EmulatorProcess(folder, completion_seconds=1.0) as emulator:
        seed(emulator.url, folder)
        print(f"{'path':<8}{'rows':>10}{'peak RSS':>12}{'seconds':>10}")
        for path in ("source", "sink"):
            measured = {size: run_child(path, emulator.url, size, folder) for size in SIZES}
            for result in measured.values():
                print(f"{path:<8}{result['rows']:>10,}{result['peak_rss_mb']:>10.1f} MB{result['seconds']:>10.2f}")
            small, large = (measured[size]["peak_rss_mb"] for size in SIZES)
            growth = large - small
            print(f"{path}: 100k vs 10k peak RSS {large / small:.2f}x ({growth:+.1f} MB for 10x the rows)")
            rows.append(
                Row(
                    figure=f"BigQuery {path}: peak RSS at 100,000 rows",
                    value=large,
                    unit="MB",
                    reference=small,
                    reference_label="at 10,000 rows",
                    target="flat (ratio <= 1.15)",
                    met=large / small <= 1.15,
                )
            )
    if args.json:
        emit(rows, args.json)


if __name__ == "__main__":
    main()
