"""Benchmark 7, reuse: N tickets of which a tenth changed since last night, looked up in the reuse store.

Night 1's requests are built (``prepare_chunks``, as in benchmark 2) and every answer stored as one
segment (``batch/reuse_store.py``; a row of about 400 bytes each). Night 2 changes the body of
every tenth ticket. Timed on night 2's request lines, read from its files in both loops:

- the bare fingerprint loop: fingerprint each line (``reuse.Fingerprints``);
- the lookup: open the store (list, read every key, build the index) and look every line up,
  a block of 1,024 lines at a time as the Submit pass does (``ReuseLookup.reused_all``).

The two loops take turns on each block of lines; reading the lines is not timed.

Then the whole Submit pass of night 2 with ``reuse=`` (lookup inside ``prepare_chunks``, the reused
rows written to ``reused.jsonl``) is run once, in a fresh process of its own as the Submit task
runs, and its chunk files are checked to hold exactly the changed tickets. That process's peak
resident set is the memory figure (each size in processes of its own).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

import orjson

from bench._harness import Row, benchmark_args, emit, peak_rss_mb, run_child, scratch, timed
from bench.submit import MODEL, PARAMETERS, PROMPT, SCHEMA, SYSTEM_PROMPT, write_items

CHANGED_EVERY = 10


def _spec_and_backend() -> tuple[Any, Any]:
    from airflow_llm_batch.batch.backends.base import ClientConfig, RequestSpec
    from airflow_llm_batch.batch.backends.openai import OpenAIBackend
    from airflow_llm_batch.batch.records import Kind
    from airflow_llm_batch.batch.schema import ResponseSchema

    spec = RequestSpec(MODEL, Kind.CHAT, SYSTEM_PROMPT, PARAMETERS, ResponseSchema.coerce(SCHEMA))
    return spec, OpenAIBackend(ClientConfig(api_key="unused", base_url="http://127.0.0.1:9/v1"))


def _prepare(items_path: Path, out_dir: Path, lookup: Any = None) -> Any:
    from airflow_llm_batch.batch.prepare import prepare_chunks
    from airflow_llm_batch.batch.templates import PromptTemplate
    from airflow_llm_batch.io.sources import iter_file_items

    spec, backend = _spec_and_backend()
    return prepare_chunks(
        iter_file_items(items_path),
        id_field="ticket_id",
        spec=spec,
        backend=backend,
        out_dir=out_dir,
        template=PromptTemplate(PROMPT),
        reuse=lookup,
    )


def _key() -> bytes:
    from airflow_llm_batch.batch.reuse import request_key

    spec, backend = _spec_and_backend()
    return request_key(backend.provider, spec.kind.value, spec.response_schema.schema)


def _lines(requests: Path) -> Any:
    from airflow_llm_batch.batch.jsonl import iter_lines

    for path in sorted(requests.glob("chunk-*[0-9].jsonl")):
        with path.open("rb") as stream:
            yield from iter_lines(stream)


def _store_night_1(requests: Path, store: Path) -> None:
    """Every answer of night 1 in one segment, as the Results task stores them."""
    from airflow_llm_batch.batch import jsonl
    from airflow_llm_batch.batch.records import ItemResult
    from airflow_llm_batch.batch.reuse import Fingerprints
    from airflow_llm_batch.batch.reuse_store import write_segment

    fingerprint = Fingerprints(_key())
    answer = {"category": "bug", "priority": "high", "reason": "The export crashes after the sync; blocks invoices."}

    def answers() -> Any:
        for line in _lines(requests):
            item_id = orjson.loads(line)["custom_id"]
            row = ItemResult(item_id, "succeeded", jsonl.dumps(answer).decode(), answer, provider="openai", model=MODEL)
            yield fingerprint(line), jsonl.dumps(row)

    write_segment(store, "night-1/attempt-1", answers())


def _change_a_tenth(source: Path, target: Path) -> int:
    """Night 2's tickets: every tenth one's body changed; return how many."""
    changed = 0
    with source.open("rb") as lines, target.open("wb") as out:
        for number, line in enumerate(lines):
            if number % CHANGED_EVERY == 0:
                ticket = orjson.loads(line)
                ticket["body"] += " (updated)"
                line = orjson.dumps(ticket) + b"\n"
                changed += 1
            out.write(line)
    return changed


def _submitted_exactly_the_changed(requests: Path, items: int) -> bool:
    """Whether the chunk files hold the changed tickets, each once, in input order (streamed: a set
    of a hundred thousand ids would count against the peak memory measured)."""
    expected = (f"T-{number:08d}" for number in range(0, items, CHANGED_EVERY))
    sent = (orjson.loads(line)["custom_id"] for line in _lines(requests))
    return all(a == b for a, b in zip(expected, sent, strict=False)) and sum(1 for _ in _lines(requests)) == len(
        range(0, items, CHANGED_EVERY)
    )


def _loops(requests: Path, key: bytes) -> dict[str, float]:
    """The bare fingerprint loop and the lookup (the store opened, then every line looked up), timed
    in turns a block of lines at a time as the Submit pass looks them up (the reading untimed).
    Wall and CPU seconds of each: on a shared machine the CPU time is the steadier figure."""
    from itertools import islice

    from airflow_llm_batch.batch.reuse import Fingerprints, ReuseLookup, ReuseSettings

    fingerprint = Fingerprints(key)
    with timed() as opened:
        lookup = ReuseLookup(requests.parent / "store", ReuseSettings(), key)
    times = {"bare": 0.0, "bare_cpu": 0.0, "lookup": opened[0], "lookup_cpu": opened[1], "open": opened[0]}
    lines = _lines(requests)
    while block := list(islice(lines, 1024)):
        with timed() as elapsed:
            [fingerprint(line) for line in block]
        times["bare"] += elapsed[0]
        times["bare_cpu"] += elapsed[1]
        with timed() as elapsed:
            lookup.reused_all(block)
        times["lookup"] += elapsed[0]
        times["lookup_cpu"] += elapsed[1]
    times["found"] = lookup.hits
    return times


def measure(items: int, work: Path) -> dict[str, Any]:
    night_1, night_2 = work / "night-1.jsonl", work / "night-2.jsonl"
    write_items(night_1, items)
    _prepare(night_1, work / "requests-1")
    _store_night_1(work / "requests-1", work / "store")
    shutil.rmtree(work / "requests-1")
    changed = _change_a_tenth(night_1, night_2)
    _prepare(night_2, work / "requests-2")  # every line of night 2, for the two loops
    key = _key()
    loops = _loops(work / "requests-2", key)
    assert loops["found"] == items - changed, (loops["found"], items, changed)
    shutil.rmtree(work / "requests-2")
    submit = run_child("bench.reuse", work, "submit.json", "--submit", str(items), "--changed", str(changed))
    return {
        "items": items,
        "changed": changed,
        "bare_seconds": loops["bare"],
        "seconds": loops["lookup"],
        "bare_cpu_seconds": loops["bare_cpu"],
        "cpu_seconds": loops["lookup_cpu"],
        "open_seconds": loops["open"],
        **submit,
    }


def submit_pass(items: int, changed: int, work: Path) -> dict[str, Any]:
    """Night 2's Submit pass with ``reuse=``, in a process of its own as the Submit task runs: the
    lookup opened, the requests prepared (the reused items left out), the reused rows written.
    Its peak memory is the figure (the process that wrote night 1's store is not the Submit task's)."""
    from airflow_llm_batch.batch.reuse import ReuseLookup, ReuseSettings

    with timed() as submit_time:
        lookup = ReuseLookup(work / "store", ReuseSettings(), _key())
        prepared = _prepare(work / "night-2.jsonl", work / "requests-3", lookup)
    with timed() as rows_time:
        written = lookup.write_reused(work / "reused.jsonl")
    peak = peak_rss_mb()
    exact = _submitted_exactly_the_changed(work / "requests-3", items)
    assert exact and prepared.item_count == changed, "exactly the changed items are submitted"
    assert written == items - changed
    return {
        "submitted": prepared.item_count,
        "submit_seconds": submit_time[0],
        "reused_rows_seconds": rows_time[0],
        "peak_mb": peak,
    }


def rows_of(runs: list[dict[str, Any]]) -> list[Row]:
    runs = sorted(runs, key=lambda run: run["items"])
    small, big = runs[0], runs[-1]
    rate, bare_rate = big["items"] / big["seconds"], big["items"] / big["bare_seconds"]
    rows = [
        Row(
            f"reuse {big['items']:,} items, {big['changed']:,} changed: submitted",
            big["submitted"],
            "items",
            big["changed"],
            "changed since the last run",
            target="exactly the changed ones",
            met=big["submitted"] == big["changed"],
        ),
        Row(
            f"reuse {big['items']:,} items: lookup throughput",
            rate,
            "items/s",
            bare_rate,
            "bare fingerprint loop, same lines",
            ratio=rate / bare_rate,
            target=">= 300,000/s; >= 1/3 of the bare loop's speed",
            met=rate >= 300_000 and rate / bare_rate >= 1 / 3,
            note=f"the lookup's time includes opening the store ({big['items']:,} keys read, the index built): "
            f"{big['open_seconds']:.2f} s; in CPU time {big['items'] / big['cpu_seconds']:,.0f}/s, "
            f"{big['bare_cpu_seconds'] / big['cpu_seconds']:.2f} of the bare loop's speed; the whole Submit pass with "
            f"reuse: {big['submit_seconds']:.1f} s, then the {big['items'] - big['changed']:,} reused rows written "
            f"in {big['reused_rows_seconds']:.1f} s",
        ),
    ]
    if len(runs) > 1:
        growth = big["peak_mb"] / small["peak_mb"]
        rows.append(
            Row(
                f"reuse {big['items']:,} items: peak memory",
                big["peak_mb"],
                "MB",
                small["peak_mb"],
                f"peak at {small['items']:,} items",
                ratio=growth,
                target="<= 300 MB; flat (<= 1.1x)",
                met=big["peak_mb"] <= 300 and growth <= 1.1,
                note="resident set of the Submit pass's own process (the lookup opened, the requests prepared, the "
                "reused rows written)",
            )
        )
    return rows


def _add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", default="200000,1000000", help="item counts, each run in a fresh process")
    parser.add_argument("--one", type=int, help="(internal) measure one size in this process")
    parser.add_argument("--submit", type=int, help="(internal) night 2's Submit pass of this size, in this process")
    parser.add_argument("--changed", type=int, help="(internal) with --submit: the changed items")


def main() -> None:
    args = benchmark_args(__doc__ or "", _add_args)
    with scratch(args.work) as work:
        if args.submit:
            (work / "submit.json").write_text(json.dumps(submit_pass(args.submit, args.changed, work)))
            return
        if args.one:
            (work / f"reuse-{args.one}.json").write_text(json.dumps(measure(args.one, work)))
            return
        sizes = [int(size) for size in args.sizes.split(",")]
        runs = [run_child("bench.reuse", work / str(n), f"reuse-{n}.json", "--one", str(n)) for n in sizes]
    emit(rows_of(runs), args.json)


if __name__ == "__main__":
    main()
