"""A waiting trigger never imports a vendor SDK on the triggerer's event loop.

The first status call of a fresh client imports its SDK (0.3 s for ``openai``, about 1 s for
``google-genai``, up to 2 s for ``anthropic`` on a busy machine); on the event loop that stalls every
trigger of the triggerer, and Airflow logs "Triggerer's async thread was blocked". The trigger
builds its backend in a worker thread instead. Checked in a fresh interpreter (nothing imported
yet), with an import hook that records every vendor module imported on the loop's thread.
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.integration.test_trigger import ITEMS, _trigger

RUN_TRIGGER = r"""
import asyncio, json, sys, threading

VENDOR = ("openai", "anthropic", "google")
on_loop = []
loop_running = False


class RecordVendorImports:
    def find_spec(self, name, path=None, target=None):
        if loop_running and threading.current_thread() is threading.main_thread() and name.startswith(VENDOR):
            on_loop.append(name)
        return None


sys.meta_path.insert(0, RecordVendorImports())
from airflow_llm_batch.triggers.completion import LLMBatchCompletionTrigger

trigger = LLMBatchCompletionTrigger(**json.loads(sys.argv[1]))


async def main():
    global loop_running
    loop_running = True
    async for event in trigger.run():
        return event.payload


payload = asyncio.run(main())
already = sorted(m for m in sys.modules if m.startswith(VENDOR))
print(json.dumps({"status": payload["status"], "imported_on_loop": on_loop, "vendor_modules": len(already)}))
"""


def test_the_trigger_imports_no_vendor_sdk_on_the_event_loop(flow, connection):
    _, manifest = flow.submit(ITEMS)
    _, kwargs = _trigger(manifest, connection).serialize()
    done = subprocess.run(
        [sys.executable, "-c", RUN_TRIGGER, json.dumps(kwargs)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["status"] == "success"
    assert report["vendor_modules"] > 10  # the SDK was imported: by the worker thread
    assert report["imported_on_loop"] == []
