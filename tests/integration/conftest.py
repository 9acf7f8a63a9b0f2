"""A provider-neutral harness: the whole core flow through any backend against the emulator."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from airflow_llm_batch.batch.backends import create_backend
from airflow_llm_batch.batch.backends.base import BatchBackend, ClientConfig, RequestSpec
from airflow_llm_batch.batch.job import JobLayout
from airflow_llm_batch.batch.manifest import Manifest
from airflow_llm_batch.batch.records import BatchStatus, JobKey, Kind
from airflow_llm_batch.batch.schema import ResponseSchema
from tests.integration.harness import collect_rows, submit_items, wait_for

PROVIDERS = ("openai", "anthropic", "gemini")
MODELS = {
    "openai": "gpt-4.1-mini",
    "anthropic": "claude-haiku-4-5",
    "gemini": "gemini-2.5-flash",
    "openai_compatible": "gpt-4.1-mini",
    "azure_openai": "gpt-4.1-mini",  # a deployment named after its model, as most are
    "openai_responses": "gpt-4.1-mini",
}
# Where the same fault tests also run: an OpenAI-compatible host that refuses batch ``metadata``
# (the emulated OpenAI in its ``openai_metadata="refused"`` mode), reached through the real client.
WITHOUT_TAGS = ("anthropic", "openai_compatible")
LABEL_SCHEMA = {
    "type": "object",
    "properties": {"label": {"type": "string", "enum": ["spam", "ham"]}},
    "required": ["label"],
}


def base_url(emulator: Any, provider: str) -> str:
    return {
        "openai": emulator.openai_base_url,
        "openai_compatible": emulator.openai_base_url,
        "azure_openai": emulator.azure_endpoint,
        "openai_responses": emulator.openai_base_url,
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
        spec = RequestSpec(
            model=MODELS[self.provider], kind=Kind.CHAT, response_schema=ResponseSchema.coerce(LABEL_SCHEMA)
        )
        return submit_items(self.backend, self.root, items, spec, key or JobKey("dag", "submit", "run"))

    def wait(self, manifest: Manifest) -> list[BatchStatus]:
        return wait_for(self.backend, manifest)

    def collect(self, layout: JobLayout, manifest: Manifest) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        return collect_rows(self.backend, layout, manifest, ResponseSchema.coerce(LABEL_SCHEMA).validator())


@pytest.fixture(params=PROVIDERS)
def flow(request: pytest.FixtureRequest, llm_batch_emulator: Any, tmp_path: Path) -> Iterator[Flow]:
    yield from flow_for(request.param, llm_batch_emulator, tmp_path)


def flow_for(provider: str, llm_batch_emulator: Any, tmp_path: Path) -> Iterator[Flow]:
    """A backend of ``provider`` on the emulator; an OpenAI-compatible host refuses batch metadata;
    ``openai_responses`` is OpenAI with every chat job on the Responses API."""
    metadata = "refused" if provider == "openai_compatible" else "kept"
    llm_batch_emulator.set_scenario(completion_seconds=0.3, openai_metadata=metadata)
    extra: dict[str, Any] = {"max_retries": 0}
    if provider == "openai_responses":  # OpenAI on /v1/responses, chosen by the connection's extra
        extra["endpoint"] = "responses"
    config = ClientConfig(api_key="k", base_url=base_url(llm_batch_emulator, provider), extra=extra)
    backend = create_backend(provider.removesuffix("_responses"), config)
    flow = Flow(backend, tmp_path, provider)
    yield flow
    backend.close()


TRIGGER_SECRET = "sk-trigger-secret-0123456789"


@pytest.fixture
def connection(monkeypatch, flow, llm_batch_emulator):
    """The trigger looks its connection up itself (async), here from an AIRFLOW_CONN_ variable."""
    conn = {
        "conn_type": f"llm_batch_{flow.provider}",
        "password": TRIGGER_SECRET,
        "host": base_url(llm_batch_emulator, flow.provider),
    }
    monkeypatch.setenv("AIRFLOW_CONN_TRIGGER_TEST", json.dumps(conn))
    return "trigger_test"
