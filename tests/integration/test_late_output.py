"""Output that is late or short when the batch says it ended: read again, never call items missing.

Gemini can report SUCCEEDED before its output is set (tidyverse/ellmer#926); an OpenAI batch can
say ``completed`` while its output file holds fewer lines than its counts. Both through the real
SDK clients against the emulator's switches; the ledger shows nothing was paid twice.
"""

from __future__ import annotations

from typing import Any

import pytest

from airflow_llm_batch.batch.backends import create_backend
from airflow_llm_batch.batch.backends.base import ClientConfig, RequestSpec
from airflow_llm_batch.batch.records import Kind
from tests.integration.conftest import MODELS, base_url
from tests.integration.harness import collect_rows, items, submit_items, wait_for

ITEMS = items(30)


def backend_for(emulator: Any, provider: str) -> Any:
    return create_backend(provider, ClientConfig(api_key="k", base_url=base_url(emulator, provider)))


def collect(backend: Any, layout: Any, manifest: Any, grace: float) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    return collect_rows(backend, layout, manifest, late_output_grace=grace)


@pytest.mark.parametrize(
    ("provider", "switch"),
    [("gemini", {"gemini_late_output_polls": 3}), ("openai", {"openai_short_output_reads": 2})],
    ids=["gemini-succeeded-before-output", "openai-completed-with-fewer-lines"],
)
def test_late_or_short_output_is_read_again_and_no_item_is_missing(llm_batch_emulator, tmp_path, provider, switch):
    llm_batch_emulator.update_scenario(completion_seconds=0.3, **switch)
    backend = backend_for(llm_batch_emulator, provider)
    layout, manifest = submit_items(backend, tmp_path, ITEMS, RequestSpec(model=MODELS[provider], kind=Kind.CHAT))
    wait_for(backend, manifest)
    summary, rows = collect(backend, layout, manifest, grace=30.0)
    assert sorted(r["id"] for r in rows) == sorted(i["id"] for i in ITEMS)
    assert summary["succeeded"] == len(ITEMS) and "missing" not in summary["by_error_type"]
    ledger = llm_batch_emulator.ledger()
    assert ledger["billed_twice"] == [] and len(ledger["batches"]) == 1


def test_output_still_short_after_the_grace_period_makes_the_unread_items_missing(llm_batch_emulator, tmp_path):
    llm_batch_emulator.update_scenario(completion_seconds=0.3, openai_short_output_reads=1000)
    backend = backend_for(llm_batch_emulator, "openai")
    layout, manifest = submit_items(backend, tmp_path, ITEMS, RequestSpec(model=MODELS["openai"], kind=Kind.CHAT))
    wait_for(backend, manifest)
    summary, rows = collect(backend, layout, manifest, grace=1.0)
    assert len(rows) == len(ITEMS)
    assert summary["succeeded"] == len(ITEMS) // 2 and summary["by_error_type"] == {"missing": len(ITEMS) // 2}
