"""Benchmark 3, results: N OpenAI result lines to a Parquet file, against a bare loop parsing them.

The lines are what OpenAI writes (``reference/provider-apis.md`` section 2.3), about 500 bytes
each with structured output: 98.4% succeed, 1% failed with HTTP errors (in the error file), 0.5%
hold output that breaks the schema, 0.1% of the ids get no line at all. What is timed is
``collect_results``, the whole of the Results task after the download: parse every line,
validate the output against the schema, reconcile with the submitted ids (``missing`` rows),
write Parquet and the failed ids, count. The files are read from local disk (the download is
benchmark 5's business) by the backend's own code: only the opening of a result file is replaced,
so the pass is the one the Results operator runs for an OpenAI chat batch into Parquet (its
columnar path, ``batch/results.py``). The bare loop reads the same files and parses each line,
nothing else.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from bench._harness import benchmark_args, emit, peak_rss_mb, rows_for, run_child, scratch, timed
from bench.submit import MODEL, SCHEMA

CHUNK = 50_000
_CATEGORIES = SCHEMA["properties"]["category"]["enum"]
_PRIORITIES = SCHEMA["properties"]["priority"]["enum"]


def _success_line(number: int, custom_id: str) -> bytes:
    category, priority = _CATEGORIES[number % 5], _PRIORITIES[number % 4]
    if number % 200 == 3:
        category = "refund"  # not in the schema's enum: an invalid_output row
    content = orjson.dumps(
        {"category": category, "priority": priority, "reason": f"Ticket {number} reports a crash of the export"}
    ).decode()
    record = {
        "id": f"batch_req_{number:032x}",
        "custom_id": custom_id,
        "response": {
            "status_code": 200,
            "request_id": f"req_{number:032x}",
            "body": {
                "id": f"chatcmpl-{number:029x}",
                "object": "chat.completion",
                "created": 1767225600,
                "model": "gpt-4.1-mini-2025-04-14",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content, "refusal": None},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 84, "completion_tokens": 24, "total_tokens": 108},
            },
        },
        "error": None,
    }
    return orjson.dumps(record)


def _error_line(number: int, custom_id: str) -> bytes:
    error = {"message": "Rate limit reached for requests.", "type": "requests", "code": "rate_limit_exceeded"}
    record = {
        "id": f"batch_req_{number:032x}",
        "custom_id": custom_id,
        "response": {"status_code": 429, "request_id": f"req_{number:032x}", "body": {"error": error}},
        "error": None,
    }
    return orjson.dumps(record)


def write_job(root: Path, count: int) -> list[Any]:
    """The id maps Submit writes and the files OpenAI returns, one pair per chunk of 50,000."""
    from airflow_llm_batch.batch.manifest import BatchEntry

    requests = root / "requests"
    requests.mkdir(parents=True)
    entries = []
    for chunk, start in enumerate(range(0, count, CHUNK)):
        numbers = range(start, min(count, start + CHUNK))
        with (
            (requests / f"chunk-{chunk:05d}.ids.jsonl").open("wb") as ids,
            (root / f"output-{chunk}.jsonl").open("wb") as output,
            (root / f"errors-{chunk}.jsonl").open("wb") as errors,
        ):
            for number in numbers:
                custom_id = f"T-{number:08d}"
                ids.write(orjson.dumps([custom_id, custom_id]) + b"\n")
                if number % 1000 == 7:
                    continue  # the provider returned nothing for it: a missing row
                if number % 100 == 5:
                    errors.write(_error_line(number, custom_id) + b"\n")
                else:
                    output.write(_success_line(number, custom_id) + b"\n")
        entries.append(BatchEntry(batch_id=f"batch_{chunk}", chunk=chunk, count=len(numbers)))
    return entries


def _file_backend(root: Path) -> Any:
    from airflow_llm_batch.batch.backends.base import ClientConfig
    from airflow_llm_batch.batch.backends.openai import RESULT_CHUNK_BYTES, OpenAIBackend
    from airflow_llm_batch.batch.records import BatchOutcome, BatchStatus

    class LocalFilesBackend(OpenAIBackend):
        """OpenAI's backend with the output and error files read from disk instead of downloaded:
        everything after the download (splitting, parsing, the columnar path) is the real one."""

        def get_status(self, batch_id: str) -> BatchStatus:
            chunk = batch_id.split("_")[1]
            return BatchStatus(
                batch_id=batch_id,
                state="completed",
                outcome=BatchOutcome.COMPLETED,
                total=CHUNK,
                done=CHUNK,
                failed=0,
                details={"output_file_id": f"output-{chunk}.jsonl", "error_file_id": f"errors-{chunk}.jsonl"},
            )

        @contextlib.contextmanager
        def _open_result_file(self, file_id: str) -> Iterator[Iterator[bytes]]:
            with (root / file_id).open("rb") as stream:
                yield iter(functools.partial(stream.read, RESULT_CHUNK_BYTES), b"")

    return LocalFilesBackend(ClientConfig(api_key="unused"))


def collect(root: Path, entries: list[Any], count: int) -> dict[str, Any]:
    """What the Results task does once the files are there."""
    from airflow_llm_batch.batch.job import JobLayout
    from airflow_llm_batch.batch.manifest import Manifest
    from airflow_llm_batch.batch.records import JobKey
    from airflow_llm_batch.batch.results import collect_results
    from airflow_llm_batch.batch.schema import OutputValidator
    from airflow_llm_batch.io.sinks import open_sink

    manifest = Manifest(
        job_key=JobKey("bench", "submit", "manual__2026-01-01"),
        provider="openai",
        conn_id="unused",
        model=MODEL,
        kind="chat",
        work_uri=str(root),
        attempt=1,
        item_count=count,
        batches=entries,
        submitted_at=0.0,
        deadline=0.0,
        has_schema=True,
    )
    layout = JobLayout(root)
    sink = open_sink(layout.results_dir, "parquet")
    return collect_results(manifest, _file_backend(root), layout, sink, OutputValidator(SCHEMA))


def bare_loop(root: Path) -> int:
    """Read every result line and parse it: the least any results step can do."""
    count = 0
    for path in sorted(root.glob("output-*.jsonl")) + sorted(root.glob("errors-*.jsonl")):
        with path.open("rb") as stream:
            for line in stream:
                orjson.loads(line)
                count += 1
    return count


def _add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", default="200000,1000000", help="line counts, each run in a fresh process")
    parser.add_argument("--repeat", type=int, default=3, help="time each loop this many times, keep the best")
    parser.add_argument("--one", type=int, help="(internal) measure one size in this process")
    parser.add_argument("--profile", type=Path, help="with --one: write a cProfile of the results pass here")
    parser.add_argument("--stages", action="store_true", help="with --one: print the time per line stage by stage")


def stages(root: Path, entries: list[Any], count: int, repeat: int) -> list[tuple[str, float]]:
    """Wall time per line of the pass cut short after each stage (best of ``repeat``)."""
    from airflow_llm_batch.batch.chunk_rows import ChunkRows
    from airflow_llm_batch.batch.job import JobLayout
    from airflow_llm_batch.batch.records import Kind
    from airflow_llm_batch.batch.schema import OutputValidator
    from airflow_llm_batch.io import sinks

    backend, validator = _file_backend(root), OutputValidator(SCHEMA)
    manifest = type("Manifest", (), {"model": MODEL, "provider": "openai", "attempt": 1})

    def read_blocks(reconcile: bool) -> None:
        for entry in entries:
            status = backend.get_status(entry.batch_id)
            rows = ChunkRows(manifest, JobLayout(root), entry.chunk, status, validator)  # type: ignore[arg-type]
            for block in backend.outcome_blocks(status, Kind.CHAT):
                if reconcile:
                    rows.block(block)
            if reconcile:
                for _ in rows.unseen_rows():
                    pass

    class NullSink:
        uri = "null"

        def write(self, row: Any) -> None: ...
        def write_block(self, block: Any) -> None: ...
        def close(self) -> None: ...

    def without_sink() -> None:
        real = sinks.open_sink
        sinks.open_sink = lambda *args, **kwargs: NullSink()  # type: ignore[assignment]
        try:
            collect(root, entries, count)
        finally:
            sinks.open_sink = real

    steps: list[tuple[str, Any]] = [
        ("bare loop: read a line, `orjson.loads`", lambda: bare_loop(root)),
        ("read 256 KiB pieces, split into blocks, decode into columns (`OutcomeBlock`)", lambda: read_blocks(False)),
        (
            "\\+ reconcile with the id map, typed check of the output, general rows (`RowBlock`)",
            lambda: read_blocks(True),
        ),
        ("\\+ the `collect_results` loop: summary counts, failed-items file", without_sink),
        ("\\+ the Parquet sink: Arrow arrays per block, zstd row groups", lambda: collect(root, entries, count)),
    ]
    best = {name: float("inf") for name, _ in steps}
    for _ in range(repeat):
        for name, step in steps:
            with timed() as elapsed:
                step()
            best[name] = min(best[name], elapsed[0])
    lines = bare_loop(root)
    return [(name, seconds / lines * 1e6) for name, seconds in best.items()]


def measure(lines: int, repeat: int, work: Path, profile: Path | None) -> dict[str, Any]:
    """One size, in this process: the bare loop and the results pass, alternately, best of ``repeat``."""
    root = work / "job"
    entries = write_job(root, lines)
    line_bytes = sum(path.stat().st_size for path in root.glob("*-*.jsonl"))
    if profile is not None:
        import cProfile

        cProfile.runctx("collect(root, entries, lines)", globals(), locals(), str(profile))
        return {}
    best, bare_best, read, summary = float("inf"), float("inf"), 0, {}
    for _ in range(repeat):
        with timed() as bare:
            read = bare_loop(root)
        with timed() as elapsed:
            summary = collect(root, entries, lines)
        best, bare_best = min(best, elapsed[0]), min(bare_best, bare[0])
    assert summary["items"] == lines, summary
    return {
        "items": lines,
        "count": read,
        "seconds": best,
        "bare_seconds": bare_best,
        "peak_mb": peak_rss_mb(),
        "note": f"{line_bytes / read:.0f} bytes a line; {summary['failed']:,} failed rows of {lines:,}",
    }


def main() -> None:
    args = benchmark_args(__doc__ or "", _add_args)
    with scratch(args.work) as work:
        if args.one and args.stages:
            root = work / "job"
            entries = write_job(root, args.one)
            for name, micros in stages(root, entries, args.one, args.repeat):
                print(f"| {name} | {micros:.2f} |")
            return
        if args.one:
            result = measure(args.one, args.repeat, work, args.profile)
            (work / f"results-{args.one}.json").write_text(json.dumps(result))
            return
        sizes = [int(size) for size in args.sizes.split(",")]
        runs = [
            run_child(
                "bench.results", work / str(n), f"results-{n}.json", "--one", str(n), "--repeat", str(args.repeat)
            )
            for n in sizes
        ]
    emit(rows_for("results", "lines", runs, rate_target=100_000), args.json)


if __name__ == "__main__":
    main()
