"""Benchmark 4, triggerer: N completion triggers for N batches in one event loop, against the emulator.

What a busy triggerer does: many deferred sensors, each with its own trigger, polling in one
asyncio loop. Here ``LLMBatchCompletionTrigger.run()`` instances run side by side against the
emulator (in a process of its own, so its work never counts), while a ticker task measures how
late the loop wakes it: the event-loop lag, what every other trigger of the triggerer suffers.
The same is measured, each in a fresh process of its own, for the references:

- ``threaded``: the pattern the official providers use, written here: a sync SDK client per
  trigger, built on the loop, each status call sent to a thread with ``asyncio.to_thread``;
- ``providers-openai``: ``OpenAIBatchTrigger`` of ``apache-airflow-providers-openai``;
- ``common-ai``: ``LLMBatchTrigger`` of ``apache-airflow-providers-common-ai`` (adapter ``openai``).

The two peers are optional: they run when installed in this environment (neither is a
dependency of this package), and the table says which ones ran.

Also counted: HTTP status requests per batch per poll round (from the emulator's request log)
and the growth of resident memory while the triggers run. Before the baseline, the SDK is
imported and one status call made with each kind of client: a triggerer pays for the imports and
the first build of the SDK's response models once per process, not per trigger.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench._harness import (
    EmulatorProcess,
    Row,
    benchmark_args,
    current_rss_mb,
    emit,
    peak_rss_mb,
    scratch,
)

CONN_ID = "bench_triggerer"
TICK_SECONDS = 0.01
_STATUS_PATH = re.compile(r"^/openai/v1/batches/(batch_[0-9a-f]+)$")
_TERMINAL = {"completed", "failed", "expired", "cancelled"}


def create_batches(emulator: EmulatorProcess, count: int) -> list[str]:
    """``count`` one-request batches, created with the real SDK (setup, not measured)."""
    from openai import OpenAI

    client = OpenAI(api_key="bench", base_url=emulator.openai_base_url, max_retries=0)
    line = {
        "custom_id": "r-1",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": "hi"}]},
    }
    uploaded = client.files.create(file=("one.jsonl", json.dumps(line).encode(), "application/jsonl"), purpose="batch")
    ids = [
        client.batches.create(
            input_file_id=uploaded.id,
            endpoint="/v1/chat/completions",
            completion_window="24h",
            metadata={"bench": str(number)},
        ).id
        for number in range(count)
    ]
    client.close()
    return ids


class ThreadedTrigger:
    """The official providers' pattern, for comparison: a sync client, each call in a thread."""

    def __init__(self, base_url: str, batch_id: str, poll_interval: float) -> None:
        self.base_url = base_url
        self.batch_id = batch_id
        self.poll_interval = poll_interval
        self.rounds = 0

    async def run(self) -> Any:
        from openai import OpenAI

        client = OpenAI(api_key="bench", base_url=self.base_url)  # built in the loop, as a hook does
        try:
            while True:
                self.rounds += 1
                batch = await asyncio.to_thread(client.batches.retrieve, self.batch_id)
                if batch.status in _TERMINAL:
                    yield {"status": "success", "batch": batch.status}
                    return
                await asyncio.sleep(self.poll_interval)
        finally:
            client.close()


def _warm_up(base_url: str, batch_id: str) -> None:
    """Pay what a triggerer pays once per process, not per trigger: the SDK's lazy imports and
    the first build of its response models, for the sync and the async client; Airflow's
    connection lookup, sync and async (its first call imports the task SDK's supervisor module,
    which a triggerer has loaded from the start); then a full garbage collection of what the
    imports left behind, which would otherwise fall at a random point of whichever mode runs."""
    from airflow.sdk import BaseHook, Connection
    from openai import AsyncOpenAI, OpenAI

    with OpenAI(api_key="bench", base_url=base_url) as client:
        client.batches.retrieve(batch_id)

    async def retrieve() -> None:
        async with AsyncOpenAI(api_key="bench", base_url=base_url) as client:
            await client.batches.retrieve(batch_id)
        await Connection.async_get(CONN_ID)

    asyncio.run(retrieve())
    BaseHook.get_connection(CONN_ID)
    gc.collect()


def _ours(batch_ids: list[str], poll_interval: float) -> tuple[list[Any], Counter[int]]:
    from airflow_llm_batch.triggers.completion import LLMBatchCompletionTrigger

    rounds: Counter[int] = Counter()
    original = LLMBatchCompletionTrigger._poll_round

    async def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        rounds[id(self)] += 1
        return await original(self, *args, **kwargs)

    LLMBatchCompletionTrigger._poll_round = counted  # type: ignore[method-assign]
    now = time.time()
    triggers = [
        LLMBatchCompletionTrigger(
            conn_id=CONN_ID,
            provider="openai",
            batch_ids=[batch_id],
            deadline=now + 3600,
            poll_interval=poll_interval,
            submitted_at=now,
            totals={batch_id: 1},
        )
        for batch_id in batch_ids
    ]
    return triggers, rounds


def _peer_triggers(mode: str, base_url: str, batch_ids: list[str], poll_interval: float) -> list[Any]:
    """The peers' own triggers, each with a connection to the emulator as it documents one."""
    conn_id = f"bench_{mode.replace('-', '_')}"
    if mode == "providers-openai":
        from airflow.providers.openai.triggers.openai import OpenAIBatchTrigger

        _set_connection(conn_id, {"conn_type": "openai", "host": base_url, "password": "bench"})
        return [OpenAIBatchTrigger(conn_id, b, poll_interval, timeout=3600) for b in batch_ids]
    from airflow.providers.common.ai.triggers.llm_batch import LLMBatchTrigger

    # build_adapter_from_connection reads the key and the endpoint from password and host.
    _set_connection(conn_id, {"conn_type": "pydanticai", "host": base_url, "password": "bench"})
    end_time = time.time() + 3600
    return [
        LLMBatchTrigger(
            llm_conn_id=conn_id,
            adapter="openai",
            batch_id=b,
            poll_interval=int(poll_interval),
            end_time=end_time,
            cancel_on_kill=False,
            cancel_on_timeout=False,
            timeout=3600,
        )
        for b in batch_ids
    ]


def _set_connection(conn_id: str, fields: dict[str, Any]) -> None:
    os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(fields)


def installed_peers() -> list[str]:
    """The peer providers importable here; the benchmark runs each one it finds."""
    modules = {
        "providers-openai": "airflow.providers.openai.triggers.openai",
        "common-ai": "airflow.providers.common.ai.triggers.llm_batch",
    }
    found = []
    for mode, module in modules.items():
        try:
            if importlib.util.find_spec(module) is not None:
                found.append(mode)
        except ModuleNotFoundError:  # the parent package (airflow.providers.x) is missing
            continue
    return found


async def _drive(triggers: list[Any]) -> tuple[list[float], list[Any], float]:
    """Run every trigger to its first event while a ticker records how late the loop wakes it."""
    loop = asyncio.get_running_loop()
    lags: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        while not done.is_set():
            started = loop.time()
            await asyncio.sleep(TICK_SECONDS)
            lags.append(loop.time() - started - TICK_SECONDS)

    async def first_event(trigger: Any) -> Any:
        async for event in trigger.run():
            return event
        return None

    tick = asyncio.create_task(ticker())
    started = time.perf_counter()
    events = await asyncio.gather(*(first_event(trigger) for trigger in triggers))
    elapsed = time.perf_counter() - started
    done.set()
    await tick
    return lags, events, elapsed


def run_one(mode: str, count: int, completion_seconds: float, poll_interval: float, work: Path) -> dict[str, Any]:
    import openai  # noqa: F401 - imported once per triggerer process, before the baseline

    import airflow_llm_batch.triggers.completion  # noqa: F401

    with EmulatorProcess(work, completion_seconds) as emulator:
        conn = {"conn_type": "llm_batch_openai", "host": emulator.openai_base_url, "password": "bench"}
        _set_connection(CONN_ID, conn)
        batch_ids = create_batches(emulator, count)
        rounds: Counter[int] = Counter()
        if mode == "ours":
            triggers, rounds = _ours(batch_ids, poll_interval)
        elif mode == "threaded":
            triggers = [ThreadedTrigger(emulator.openai_base_url, b, poll_interval) for b in batch_ids]
        else:
            triggers = _peer_triggers(mode, emulator.openai_base_url, batch_ids, poll_interval)
        for module in LAZY_IMPORTS.get(mode, ()):  # what the first trigger of a triggerer imports
            importlib.import_module(module)
        _warm_up(emulator.openai_base_url, batch_ids[0])
        setup_requests = len(emulator.requests())
        baseline = current_rss_mb()
        lags, events, elapsed = asyncio.run(_drive(triggers))
        peak = peak_rss_mb()
        requests = emulator.requests()[setup_requests:]
    status_requests = sum(1 for r in requests if r["method"] == "GET" and _STATUS_PATH.match(r["path"]))
    if mode == "ours":
        polls = sum(rounds.values())
    elif mode == "threaded":
        polls = sum(trigger.rounds for trigger in triggers)
    else:  # the peers' polls are not counted from inside: one status request each
        polls = status_requests
    payloads = [getattr(event, "payload", event) for event in events]
    lags.sort()
    return {
        "mode": mode,
        "triggers": count,
        "succeeded": sum(1 for p in payloads if p and p["status"] == "success"),
        "elapsed": elapsed,
        "lag_p99_ms": 1000 * lags[int(0.99 * (len(lags) - 1))],
        "lag_max_ms": 1000 * lags[-1],
        "ticks": len(lags),
        "polls": polls,
        "status_requests": status_requests,
        "other_requests": len(requests) - status_requests,
        "memory_growth_mb": max(0.0, peak - baseline),
        "baseline_mb": baseline,
    }


def _add_args(parser: argparse.ArgumentParser) -> None:
    # 200: the size the peers were measured at (issue 12); --triggers 1000 for a bigger triggerer.
    parser.add_argument("--triggers", type=int, default=200)
    # 20 s: four poll rounds at 5 s, each mode run twice, in about five minutes for all four modes.
    parser.add_argument("--completion-seconds", type=float, default=20.0)
    # 5 s: twelve times the default poll interval (60 s).
    parser.add_argument("--poll-interval", type=float, default=5.0)
    parser.add_argument("--mode", choices=("ours", "threaded", *PEERS), help="run one mode in this process")
    parser.add_argument("--references", help="comma-separated modes to compare with (default: all available)")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each mode, alternated; the best is kept")


PEERS = ("providers-openai", "common-ai")
# Modules each mode imports on its first poll (in a thread or on the loop): a triggerer has them
# loaded after its first trigger, so they are imported before the baseline, as the SDK is.
LAZY_IMPORTS = {
    "ours": ("airflow_llm_batch.hooks.llm_batch", "airflow_llm_batch.batch.backends.openai"),
    "common-ai": ("airflow.providers.common.ai.batch.openai",),
}
LABELS = {
    "threaded": "sync client in a thread",
    "providers-openai": "providers-openai OpenAIBatchTrigger",
    "common-ai": "common-ai LLMBatchTrigger",
}


def _run_mode(mode: str, args: Any, work: Path) -> dict[str, Any]:
    """One mode in a fresh process: its own imports, its own peak memory."""
    command = [sys.executable, "-m", "bench.triggerer", "--mode", mode, "--work", str(work)]
    command += ["--triggers", str(args.triggers), "--completion-seconds", str(args.completion_seconds)]
    command += ["--poll-interval", str(args.poll_interval)]
    # The triggers' log lines (Airflow logs to stdout) go to a file, as in a triggerer.
    with (work / f"triggers-{mode}.log").open("wb") as log:
        subprocess.run(command, check=True, stdout=log, stderr=subprocess.STDOUT)
    result: dict[str, Any] = json.loads((work / f"result-{mode}.json").read_text())
    return result


def _best(tries: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the lowest p99, with the lowest maximum lag of all the runs."""
    best = dict(min(tries, key=lambda run: run["lag_p99_ms"]))
    best["lag_max_ms"] = min(run["lag_max_ms"] for run in tries)
    best["runs"] = len(tries)
    return best


def _lag_row(figure: str, key: str, ours: dict[str, Any], refs: dict[str, dict[str, Any]], note: str) -> Row:
    """Ours against the best reference of the run (the lowest figure), every reference in the note."""
    best = min(refs, key=lambda mode: refs[mode][key])
    others = "; ".join(f"{LABELS[m]}: {r[key]:,.1f} ms" for m, r in refs.items())
    return Row(
        figure,
        ours[key],
        "ms",
        refs[best][key],
        LABELS[best],
        target="<= best reference",
        met=ours[key] <= refs[best][key],
        note=f"best of {ours['runs']} alternated runs each; {others}{'; ' + note if note else ''}",
    )


def main() -> None:
    args = benchmark_args(__doc__ or "", _add_args)
    with scratch(args.work) as work:
        if args.mode:
            result = run_one(args.mode, args.triggers, args.completion_seconds, args.poll_interval, work)
            (work / f"result-{args.mode}.json").write_text(json.dumps(result))
            return
        references = args.references.split(",") if args.references else ["threaded", *installed_peers()]
        # Every mode runs ``--repeat`` times, the modes alternating (ours first in one pass, last
        # in the next), and each keeps its best: on a shared machine a run's tail is mostly the
        # other processes' doing, and the order must not favour anyone.
        runs: dict[str, list[dict[str, Any]]] = {}
        for number in range(args.repeat):
            order = ["ours", *references]
            for mode in order if number % 2 == 0 else order[::-1]:
                folder = work / f"run-{number}"
                folder.mkdir(exist_ok=True)
                runs.setdefault(mode, []).append(_run_mode(mode, args, folder))
        results = {mode: _best(tries) for mode, tries in runs.items()}
    ours = results.pop("ours")
    threaded = results.get("threaded") or next(iter(results.values()))
    label = LABELS["threaded" if "threaded" in results else next(iter(results))]
    n = f"{args.triggers:,} triggers"
    per_round = ours["status_requests"] / max(1, ours["polls"])
    fired = "; ".join(f"{LABELS[m]}: {r['succeeded']} in {r['elapsed']:.0f} s" for m, r in results.items())
    rows = [
        _lag_row(f"triggerer {n}: loop lag p99", "lag_p99_ms", ours, results, ""),
        _lag_row(f"triggerer {n}: loop lag max", "lag_max_ms", ours, results, ""),
        Row(
            f"triggerer {n}: status requests per batch per round",
            per_round,
            "requests",
            threaded["status_requests"] / max(1, threaded["polls"]),
            label,
            target="1",
            met=abs(per_round - 1) < 1e-9 and ours["succeeded"] == args.triggers,
            note=f"{ours['status_requests']:,} requests in {ours['polls']:,} batch polls; "
            f"ours: {ours['succeeded']}/{args.triggers} fired in {ours['elapsed']:.0f} s; {fired}",
        ),
        Row(
            f"triggerer {n}: memory growth",
            ours["memory_growth_mb"],
            "MB",
            threaded["memory_growth_mb"],
            label,
            target="<= 100 MB",
            met=ours["memory_growth_mb"] <= 100,
            note="; ".join(f"{LABELS[m]}: {r['memory_growth_mb']:,.1f} MB" for m, r in results.items()),
        ),
    ]
    emit(rows, args.json)


if __name__ == "__main__":
    main()
