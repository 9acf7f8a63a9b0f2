"""Azure OpenAI batches through the ``openai`` package's Azure client, on the emulated resource.

Both ways Azure exposes the API (the ``/openai/v1/`` path, and the versioned path with
``api-version``), keys and Microsoft Entra ID tokens, Azure's line paths and file expiry. The
fault tests run on Azure too: ``test_faults_on_every_provider.py``.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import openai
import pytest

from airflow_llm_batch.batch.backends.azure_openai import FILE_EXPIRY_SECONDS, AzureOpenAIBackend
from airflow_llm_batch.batch.backends.base import ClientConfig, RequestSpec
from airflow_llm_batch.batch.records import Kind
from airflow_llm_batch.batch.schema import ResponseSchema
from airflow_llm_batch.exceptions import ConfigurationError
from tests.integration.harness import KEY, collect_rows, submit_items, wait_for

SCHEMA = {"type": "object", "properties": {"label": {"type": "string", "enum": ["a", "b"]}}, "required": ["label"]}
CHAT = RequestSpec(model="gpt-4o-mini", kind=Kind.CHAT, response_schema=ResponseSchema.coerce(SCHEMA))
ITEMS = [{"id": f"i{n}", "text": f"message {n}"} for n in range(6)]
VERSION = "2025-04-01-preview"


def _backend(emulator, secret="azure-key", **extra) -> AzureOpenAIBackend:
    config = ClientConfig(api_key=secret, base_url=emulator.azure_endpoint, extra={"max_retries": 0, **extra})
    return AzureOpenAIBackend(config)


@pytest.mark.parametrize(
    ("extra", "path", "query"),
    [
        ({}, "/azure/openai/v1/batches", ""),
        ({"api_version": VERSION}, "/azure/openai/batches", f"api-version={VERSION}"),
    ],
    ids=["v1-path", "api-version"],
)
def test_a_structured_job_on_azure_gives_the_same_rows(llm_batch_emulator, tmp_path, extra, path, query):
    llm_batch_emulator.set_scenario(completion_seconds=0.3, api_key="azure-key")
    backend = _backend(llm_batch_emulator, **extra)
    layout, manifest = submit_items(backend, tmp_path, ITEMS, CHAT, KEY)
    wait_for(backend, manifest)
    summary, rows = collect_rows(backend, layout, manifest, ResponseSchema.coerce(SCHEMA).validator())
    assert summary["succeeded"] == 6 and {r["provider"] for r in rows} == {"azure_openai"}
    assert all(r["json"]["label"] in ("a", "b") and r["model"] == "gpt-4o-mini" for r in rows)
    creates = [r for r in llm_batch_emulator.requests("azure_openai") if r["method"] == "POST" and r["path"] == path]
    assert len(creates) == 1 and all(query in r["query"] for r in llm_batch_emulator.requests("azure_openai"))
    line = json.loads((layout.requests_dir / "chunk-00000.jsonl").read_text().splitlines()[0])
    assert line["url"] == "/chat/completions"  # Azure's spelling, without /v1
    batch = backend.client.batches.retrieve(manifest.batch_ids[0])
    uploaded = backend.client.files.retrieve(batch.input_file_id)
    assert uploaded.expires_at == uploaded.created_at + FILE_EXPIRY_SECONDS  # the 500-file cap does not apply
    assert backend.find_batches(KEY) == {0: manifest.batch_ids[0]}  # Azure keeps batch metadata
    backend.close()


@pytest.mark.parametrize("api_version", ["v1", VERSION])
def test_an_entra_id_token_is_sent_as_a_bearer_token(llm_batch_emulator, tmp_path, api_version):
    llm_batch_emulator.set_scenario(completion_seconds=0.2, api_key="entra-token")
    backend = _backend(llm_batch_emulator, secret="entra-token", auth="entra_id", api_version=api_version)
    layout, manifest = submit_items(backend, tmp_path, ITEMS[:2], CHAT, KEY)
    wait_for(backend, manifest)
    assert collect_rows(backend, layout, manifest, None)[0]["succeeded"] == 2
    wrong = _backend(llm_batch_emulator, secret="stale-token", auth="entra_id", api_version=api_version)
    with pytest.raises(openai.AuthenticationError):
        wrong.client.batches.list(limit=1)


def test_embeddings_on_azure(llm_batch_emulator, tmp_path):
    llm_batch_emulator.set_scenario(completion_seconds=0.2)
    backend = _backend(llm_batch_emulator)
    spec = RequestSpec(model="text-embedding-3-small", kind=Kind.EMBEDDING)
    layout, manifest = submit_items(backend, tmp_path, ITEMS, spec, KEY)
    wait_for(backend, manifest)
    summary, rows = collect_rows(backend, layout, manifest, None)
    assert summary["succeeded"] == 6 and all(len(r["embedding"]) == 256 for r in rows)
    assert json.loads((layout.requests_dir / "chunk-00000.jsonl").read_text().splitlines()[0])["url"] == "/embeddings"


def test_what_azure_cannot_take_is_refused_before_any_call(llm_batch_emulator, tmp_path):
    llm_batch_emulator.set_scenario(completion_seconds=0.2)
    responses = RequestSpec(model="gpt-5-pro", kind=Kind.CHAT)  # served on /v1/responses only
    with pytest.raises(ConfigurationError, match="not the Responses API"):
        submit_items(_backend(llm_batch_emulator), tmp_path, ITEMS, responses, KEY)
    with pytest.raises(ConfigurationError, match="no API key"):
        _ = _backend(llm_batch_emulator, secret=None).client
    with pytest.raises(ConfigurationError, match="resource endpoint"):
        _ = AzureOpenAIBackend(ClientConfig(api_key="k")).client
    assert llm_batch_emulator.requests("azure_openai") == []


def test_the_versioned_path_needs_an_api_version(llm_batch_emulator):
    request = urllib.request.Request(f"{llm_batch_emulator.azure_endpoint}/openai/batches", headers={"api-key": "k"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    assert refused.value.code == 400
    assert json.loads(refused.value.read())["error"]["code"] == "MissingApiVersionParameter"
