"""Benchmark 4, triggerer: N completion triggers for N batches in one event loop, against the emulator.

What a busy triggerer does: many deferred sensors, each with its own trigger, polling in one
asyncio loop. Here ``LLMBatchCompletionTrigger.run()`` instances run side by side against the
emulator (in a process of its own, so its work never counts), while a ticker task measures how
late the loop wakes it: the event-loop lag, what every other trigger of the triggerer suffers.
The same is measured for the pattern the official providers use: a sync SDK client per trigger,
each status call sent to a thread with ``asyncio.to_thread``.

Also counted: HTTP status requests per batch per poll round (from the emulator's request log)
and the growth of resident memory while the triggers run. Before the baseline, the SDK is
imported and one status call made with each kind of client: a triggerer pays for the imports and
the first build of the SDK's response models once per process, not per trigger.
"""

from __future__ import annotations

import argparse
import asyncio
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
    the first build of its response models, for the sync and the async client."""
    from openai import AsyncOpenAI, OpenAI

    with OpenAI(api_key="bench", base_url=base_url) as client:
        client.batches.retrieve(batch_id)

    async def retrieve() -> None:
        async with AsyncOpenAI(api_key="bench", base_url=base_url) as client:
            await client.batches.retrieve(batch_id)

    asyncio.run(retrieve())


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
        os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = json.dumps(
            {"conn_type": "llm_batch_openai", "host": emulator.openai_base_url, "password": "bench"}
        )
        batch_ids = create_batches(emulator, count)
        _warm_up(emulator.openai_base_url, batch_ids[0])
        setup_requests = len(emulator.requests())
        if mode == "ours":
            triggers, rounds = _ours(batch_ids, poll_interval)
        else:
            triggers = [ThreadedTrigger(emulator.openai_base_url, b, poll_interval) for b in batch_ids]
        baseline = current_rss_mb()
        lags, events, elapsed = asyncio.run(_drive(triggers))
        peak = peak_rss_mb()
        requests = emulator.requests()[setup_requests:]
    if mode == "ours":
        polls = sum(rounds.values())
        succeeded = sum(1 for event in events if event and event.payload["status"] == "success")
    else:
        polls = sum(trigger.rounds for trigger in triggers)
        succeeded = sum(1 for event in events if event and event["status"] == "success")
    status_requests = sum(1 for r in requests if r["method"] == "GET" and _STATUS_PATH.match(r["path"]))
    lags.sort()
    return {
        "mode": mode,
        "triggers": count,
        "succeeded": succeeded,
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
    parser.add_argument("--triggers", type=int, default=1000)
    parser.add_argument("--completion-seconds", type=float, default=30.0)
    # 5 s: twelve times the default poll interval (60 s), so 200 status requests a second.
    parser.add_argument("--poll-interval", type=float, default=5.0)
    parser.add_argument("--mode", choices=("ours", "threaded"), help="run one mode in this process")


def main() -> None:
    args = benchmark_args(__doc__ or "", _add_args)
    with scratch(args.work) as work:
        if args.mode:
            result = run_one(args.mode, args.triggers, args.completion_seconds, args.poll_interval, work)
            (work / f"result-{args.mode}.json").write_text(json.dumps(result))
            return
        results = {}
        for mode in ("ours", "threaded"):  # each in a fresh process: its own peak memory
            command = [sys.executable, "-m", "bench.triggerer", "--mode", mode, "--work", str(work)]
            command += ["--triggers", str(args.triggers), "--completion-seconds", str(args.completion_seconds)]
            command += ["--poll-interval", str(args.poll_interval)]
            # The triggers' log lines (Airflow logs to stdout) go to a file, as in a triggerer.
            with (work / f"triggers-{mode}.log").open("wb") as log:
                subprocess.run(command, check=True, stdout=log, stderr=subprocess.STDOUT)
            results[mode] = json.loads((work / f"result-{mode}.json").read_text())
    ours, threaded = results["ours"], results["threaded"]
    n = f"{args.triggers:,} triggers"
    per_round = {m: r["status_requests"] / max(1, r["polls"]) for m, r in results.items()}
    note = (
        f"{ours['succeeded']}/{args.triggers} fired in {ours['elapsed']:.0f} s; threaded: {threaded['elapsed']:.0f} s"
    )
    rows = [
        Row(
            f"triggerer {n}: loop lag p99",
            ours["lag_p99_ms"],
            "ms",
            threaded["lag_p99_ms"],
            "sync client in a thread",
            target="<= 50 ms",
            met=ours["lag_p99_ms"] <= 50,
            note=note,
        ),
        Row(
            f"triggerer {n}: loop lag max", ours["lag_max_ms"], "ms", threaded["lag_max_ms"], "sync client in a thread"
        ),
        Row(
            f"triggerer {n}: status requests per batch per round",
            per_round["ours"],
            "requests",
            per_round["threaded"],
            "sync client in a thread",
            target="1",
            met=abs(per_round["ours"] - 1) < 1e-9 and ours["succeeded"] == args.triggers,
            note=f"{ours['status_requests']:,} requests in {ours['polls']:,} batch polls",
        ),
        Row(
            f"triggerer {n}: memory growth",
            ours["memory_growth_mb"],
            "MB",
            threaded["memory_growth_mb"],
            "sync client in a thread",
            target="<= 100 MB",
            met=ours["memory_growth_mb"] <= 100,
        ),
    ]
    emit(rows, args.json)


if __name__ == "__main__":
    main()
