"""Benchmark 2, submit: N chat items to request files, against a bare loop writing the same bodies.

The items come from a JSONL file, as in a nightly DAG (``items="s3://.../tickets.jsonl"``): about
300-byte prompts after rendering, a response schema, the OpenAI backend's limits (50,000 requests
and 200 MB per file). What is timed is ``prepare_chunks``, the whole of the Submit task before its
first API call: read, render, validate, map ids, check sizes, chunk, write lines and id maps,
fingerprint, and the pre-flight check of the requests (``batch/preflight``). The bare loop reads
the same file and writes the same request lines, nothing else. The same pass with the pre-flight
check switched off (``preflight=False``) is timed too: the difference is the check's own share.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

import orjson

from bench._harness import Row, benchmark_args, emit, peak_rss_mb, rows_for, run_child, scratch, timed

MODEL = "gpt-4.1-mini"
SYSTEM_PROMPT = (
    "You triage customer support tickets. Answer with the ticket's category, its priority, "
    "and a one-line reason for both."
)
PROMPT = "Subject: {subject}\n\n{body}"
PARAMETERS = {"max_tokens": 200}
SCHEMA = {
    "title": "ticket_triage",
    "type": "object",
    "properties": {
        "category": {"type": "string", "enum": ["billing", "bug", "account", "feature_request", "other"]},
        "priority": {"type": "string", "enum": ["low", "medium", "high", "urgent"]},
        "reason": {"type": "string", "maxLength": 200},
    },
    "required": ["category", "priority", "reason"],
    "additionalProperties": False,
}
_TEXT = (
    "the export button crashes when I click it after the sync finished and the dashboard shows a blank "
    "page again since the last update so my team cannot send invoices to our customers please help today"
)


def write_items(path: Path, count: int) -> None:
    """``count`` tickets of about 300 bytes of prompt each, streamed to a JSONL file."""
    words = _TEXT.split(" ")
    with path.open("wb") as stream:
        lines: list[bytes] = []
        for number in range(count):
            start = number % len(words)
            body = " ".join((words[start:] + words[:start]) * 2)[:255] + f" #{number}"
            ticket = {"ticket_id": f"T-{number:08d}", "subject": f"Ticket {number} about billing", "body": body}
            lines.append(orjson.dumps(ticket))
            if len(lines) == 10_000:
                stream.write(b"\n".join(lines) + b"\n")
                lines.clear()
        if lines:
            stream.write(b"\n".join(lines) + b"\n")


def bare_loop(items_path: Path, out_path: Path) -> int:
    """Read the items and write the same request lines to one file: the least any submit can do."""
    response_format = {"type": "json_schema", "json_schema": {"name": SCHEMA["title"], "schema": SCHEMA}}
    system = {"role": "system", "content": SYSTEM_PROMPT}
    count = 0
    with items_path.open("rb") as source, out_path.open("wb") as out:
        buffer = bytearray()
        for raw in source:
            item = orjson.loads(raw)
            body = {
                "model": MODEL,
                "messages": [system, {"role": "user", "content": f"Subject: {item['subject']}\n\n{item['body']}"}],
                "max_tokens": 200,
                "response_format": response_format,
            }
            line = {"custom_id": item["ticket_id"], "method": "POST", "url": "/v1/chat/completions", "body": body}
            buffer += orjson.dumps(line)
            buffer += b"\n"
            count += 1
            if len(buffer) >= 1 << 20:
                out.write(buffer)
                buffer.clear()
        out.write(buffer)
    return count


def prepare(items_path: Path, out_dir: Path, check: bool = True) -> Any:
    """What the Submit task does before its first API call (``check``: with the pre-flight check)."""
    from airflow_llm_batch.batch.backends.base import ClientConfig, RequestSpec
    from airflow_llm_batch.batch.backends.openai import OpenAIBackend
    from airflow_llm_batch.batch.preflight import Preflight, PreflightSettings
    from airflow_llm_batch.batch.prepare import prepare_chunks
    from airflow_llm_batch.batch.records import Kind
    from airflow_llm_batch.batch.schema import ResponseSchema
    from airflow_llm_batch.batch.templates import PromptTemplate
    from airflow_llm_batch.io.sources import iter_file_items

    spec = RequestSpec(
        model=MODEL,
        kind=Kind.CHAT,
        system_prompt=SYSTEM_PROMPT,
        parameters=PARAMETERS,
        response_schema=ResponseSchema.coerce(SCHEMA),
    )
    backend = OpenAIBackend(ClientConfig(api_key="unused", base_url="http://127.0.0.1:9/v1"))
    return prepare_chunks(
        iter_file_items(items_path),
        id_field="ticket_id",
        spec=spec,
        backend=backend,
        out_dir=out_dir,
        template=PromptTemplate(PROMPT),
        preflight=Preflight(backend, spec, PreflightSettings(enabled=check)),
    )


def _add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", default="200000,1000000", help="item counts, each run in a fresh process")
    parser.add_argument("--repeat", type=int, default=3, help="time each loop this many times, keep the best")
    parser.add_argument("--one", type=int, help="(internal) measure one size in this process")
    parser.add_argument("--profile", type=Path, help="with --one: write a cProfile of the submit pass here")


def measure(items: int, repeat: int, work: Path, profile: Path | None) -> dict[str, Any]:
    """One size, in this process: the bare loop and the submit pass, alternately, best of ``repeat``."""
    items_path = work / "items.jsonl"
    write_items(items_path, items)
    if profile is not None:
        import cProfile

        cProfile.runctx("prepare(items_path, work / 'requests')", globals(), locals(), str(profile))
        return {}
    one_off = first_check_seconds()
    best, bare_best, unchecked_best, chunks = float("inf"), float("inf"), float("inf"), 0
    cpu = {"on": float("inf"), "off": float("inf"), "bare": float("inf")}  # best CPU seconds of each loop
    for attempt in range(repeat):
        with timed() as bare:
            bare_loop(items_path, work / "bare.jsonl")
        (work / "bare.jsonl").unlink()
        # Checked and unchecked passes in turns, so that a load change on the machine hits both.
        for check in (False, True) if attempt % 2 else (True, False):
            out = work / f"requests-{attempt}-{check}"
            with timed() as elapsed:
                prepared = prepare(items_path, out, check=check)
            assert prepared.item_count == items
            chunks = len(prepared.chunks)
            if check:
                best = min(best, elapsed[0])
            else:
                unchecked_best = min(unchecked_best, elapsed[0])
            mode = "on" if check else "off"
            cpu[mode] = min(cpu[mode], elapsed[1])
            if not (check and attempt == repeat - 1):
                shutil.rmtree(out)
        bare_best = min(bare_best, bare[0])
        cpu["bare"] = min(cpu["bare"], bare[1])
    peak_mb = peak_rss_mb()  # before the check is timed alone below, which holds every line's length
    last = work / f"requests-{repeat - 1}-True"
    per_item = per_item_check_seconds(last)
    shutil.rmtree(last)
    return {
        "items": items,
        "seconds": best,
        "bare_seconds": bare_best,
        "unchecked_seconds": unchecked_best,
        "check_one_off_seconds": one_off,
        "check_per_item_seconds": per_item,
        "cpu_seconds": cpu,
        "peak_mb": peak_mb,
        "chunks": chunks,
    }


def per_item_check_seconds(requests_dir: Path) -> float:
    """What the check does per item in the pass, timed alone on the pass's own request lines:
    the size comparison (``Preflight.size_threshold``), minus the same loop without it."""
    from airflow_llm_batch.batch.backends.base import ClientConfig, RequestSpec
    from airflow_llm_batch.batch.backends.openai import OpenAIBackend
    from airflow_llm_batch.batch.preflight import Preflight
    from airflow_llm_batch.batch.records import Kind

    check = Preflight(OpenAIBackend(ClientConfig(api_key="unused")), RequestSpec(MODEL, Kind.CHAT))
    lengths = [len(line) for path in sorted(requests_dir.glob("chunk-*[0-9].jsonl")) for line in path.open("rb")]
    threshold = check.size_threshold
    with timed() as checked:
        for length in lengths:
            if length > threshold:
                check.check_size("item", length)
    with timed() as empty:
        for _length in lengths:
            pass
    return max(checked[0] - empty[0], 0.0)


def first_check_seconds() -> float:
    """The check's one-off cost in a fresh process: loading and compiling the SDK's request type
    and judging the template's body once (what every Submit task pays once). ``openai`` itself
    is imported first, untimed: the backend imports it for its client in any case."""
    import openai  # noqa: F401

    from airflow_llm_batch.batch.backends.base import ClientConfig, RequestSpec
    from airflow_llm_batch.batch.backends.openai import OpenAIBackend
    from airflow_llm_batch.batch.preflight import Preflight
    from airflow_llm_batch.batch.records import Kind
    from airflow_llm_batch.batch.schema import ResponseSchema

    spec = RequestSpec(MODEL, Kind.CHAT, SYSTEM_PROMPT, PARAMETERS, ResponseSchema.coerce(SCHEMA))
    with timed() as elapsed:
        Preflight(OpenAIBackend(ClientConfig(api_key="unused")), spec).check_template()
    return elapsed[0]


def check_share_row(runs: list[dict[str, Any]]) -> Row:
    """The pre-flight check's own share of the submit pass at the biggest size (same run)."""
    big = max(runs, key=lambda run: run["items"])
    share = (big["seconds"] - big["unchecked_seconds"]) / big["seconds"]
    own = big["check_one_off_seconds"] + big["check_per_item_seconds"]
    cpu = big["cpu_seconds"]
    on, off = big["seconds"] / big["bare_seconds"], big["unchecked_seconds"] / big["bare_seconds"]
    return Row(
        f"submit {big['items']:,} items: pre-flight check's share",
        big["seconds"],
        "s",
        big["unchecked_seconds"],
        "the same pass, preflight=False",
        target="check on <= 3x bare loop time (row above)",
        note=f"the check's own work, timed alone: {own:.2f} s = {own / big['seconds']:.1%} of the pass (one-off per "
        "task, the SDK's request type loaded and compiled and the template's body judged once: "
        f"{big['check_one_off_seconds']:.2f} s; "
        f"per item, all items: {big['check_per_item_seconds']:.3f} s); the passes' difference, noisier: "
        f"{share:+.1%} ({big['seconds'] - big['unchecked_seconds']:+.2f} s); check on {on:.2f}x, off {off:.2f}x the "
        f"bare loop; in CPU time (the process's, both threads: the pass hashes its lines on a second one), "
        f"check on {cpu['on'] / cpu['bare']:.2f}x, off {cpu['off'] / cpu['bare']:.2f}x the bare loop's "
        f"{cpu['bare']:.2f} s",
    )


def main() -> None:
    args = benchmark_args(__doc__ or "", _add_args)
    with scratch(args.work) as work:
        if args.one:
            result = measure(args.one, args.repeat, work, args.profile)
            (work / f"submit-{args.one}.json").write_text(json.dumps(result))
            return
        sizes = [int(size) for size in args.sizes.split(",")]
        runs = [
            run_child("bench.submit", work / str(n), f"submit-{n}.json", "--one", str(n), "--repeat", str(args.repeat))
            for n in sizes
        ]
    emit([*rows_for("submit", "items", runs, rate_target=150_000), check_share_row(runs)], args.json)


if __name__ == "__main__":
    main()
