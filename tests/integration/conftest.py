"""A provider-neutral harness: the whole core flow through any backend against the emulator."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from airflow_llm_batch.batch.backends import create_backend
from airflow_llm_batch.batch.backends.base import BatchBackend, ClientConfig, RequestSpec
from airflow_llm_batch.batch.job import JobLayout, submit_prepared
from airflow_llm_batch.batch.manifest import Manifest
from airflow_llm_batch.batch.prepare import prepare_chunks
from airflow_llm_batch.batch.records import JobKey, Kind
from airflow_llm_batch.batch.results import collect_results
from airflow_llm_batch.batch.schema import ResponseSchema
from airflow_llm_batch.batch.templates import PromptTemplate
from airflow_llm_batch.io.sinks import open_sink

PROVIDERS = ("openai", "anthropic", "gemini")
MODELS = {"openai": "gpt-4.1-mini", "anthropic": "claude-haiku-4-5", "gemini": "gemini-2.5-flash"}
LABEL_SCHEMA = {
    "type": "object",
    "properties": {"label": {"type": "string", "enum": ["spam", "ham"]}},
    "required": ["label"],
}


def base_url(emulator: Any, provider: str) -> str:
    return {
        "openai": emulator.openai_base_url,
        "anthropic": emulator.anthropic_base_url,
        "gemini": emulator.gemini_base_url,
    }[provider]


@dataclass
class Flow:
    """One job through one backend: submit, wait (async client), collect."""

    backend: BatchBackend
    root: Path
    provider: str

    def submit(self, items: list[dict[str, Any]], key: JobKey | None = None) -> tuple[JobLayout, Manifest]:
        key = key or JobKey("dag", "submit", "run")
        spec = RequestSpec(
            model=MODELS[self.provider], kind=Kind.CHAT, response_schema=ResponseSchema.coerce(LABEL_SCHEMA)
        )
        layout = JobLayout.for_job(self.root, key, 1)
        prepared = prepare_chunks(
            items,
            id_field="id",
            spec=spec,
            backend=self.backend,
            out_dir=layout.requests_dir,
            template=PromptTemplate("Spam or ham? {text}"),
        )
        manifest = submit_prepared(
            prepared,
            backend=self.backend,
            spec=spec,
            job_key=key,
            layout=layout,
            conn_id="c",
            attempt=1,
            timeout_seconds=3600,
        )
        return layout, manifest

    def wait(self, manifest: Manifest) -> list[Any]:
        async def poll() -> list[Any]:
            while True:
                statuses = await asyncio.gather(*(self.backend.aget_status(b) for b in manifest.batch_ids))
                if all(s.ended for s in statuses):
                    return list(statuses)
                await asyncio.sleep(0.1)

        return asyncio.run(poll())

    def collect(self, layout: JobLayout, manifest: Manifest) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        sink = open_sink(layout.results_dir, "jsonl")
        summary = collect_results(manifest, self.backend, layout, sink, ResponseSchema.coerce(LABEL_SCHEMA).validator())
        rows = [json.loads(line) for line in (layout.results_dir / "results.jsonl").read_text().splitlines()]
        return summary, rows


@pytest.fixture(params=PROVIDERS)
def flow(request: pytest.FixtureRequest, llm_batch_emulator: Any, tmp_path: Path) -> Flow:
    provider = request.param
    llm_batch_emulator.set_scenario(completion_seconds=0.3)
    config = ClientConfig(api_key="k", base_url=base_url(llm_batch_emulator, provider), extra={"max_retries": 0})
    backend = create_backend(provider, config)
    flow = Flow(backend, tmp_path, provider)
    yield flow
    backend.close()
