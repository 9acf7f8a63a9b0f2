"""OpenAI-compatible hosts: the connection says what the host supports; the real openai client
talks to the emulated OpenAI playing a host without batch metadata (``openai_metadata``).

The fault tests (item errors, expiry, cancel, bursts, lost create response, re-attach) run on
this host too: ``test_faults_on_every_provider.py``.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from airflow_llm_batch.batch.backends.base import ClientConfig, RequestSpec
from airflow_llm_batch.batch.backends.openai import OpenAIBackend
from airflow_llm_batch.batch.backends.openai_compatible import OpenAICompatibleBackend
from airflow_llm_batch.batch.records import Kind
from airflow_llm_batch.exceptions import ConfigurationError
from airflow_llm_batch.hooks.llm_batch import backend_from_connection
from tests.integration.harness import KEY, collect_rows, submit_items, wait_for

SPEC = RequestSpec(model="gpt-4.1-mini", kind=Kind.CHAT)
ITEMS = [{"id": f"i{n}", "text": f"message {n}"} for n in range(5)]


def _backend(emulator, cls=OpenAICompatibleBackend, **extra):
    return cls(ClientConfig(api_key="k", base_url=emulator.openai_base_url, extra={"max_retries": 0, **extra}))


def _creates(emulator) -> list[dict]:
    return [r for r in emulator.requests("openai") if r["method"] == "POST" and r["path"].endswith("/batches")]


def test_a_host_that_refuses_metadata_runs_the_job_untagged(llm_batch_emulator, tmp_path):
    llm_batch_emulator.set_scenario(completion_seconds=0.2, openai_metadata="refused")
    backend = _backend(llm_batch_emulator)
    layout, manifest = submit_items(backend, tmp_path, ITEMS, SPEC, KEY)
    wait_for(backend, manifest)
    summary, rows = collect_rows(backend, layout, manifest, None)
    assert summary["succeeded"] == 5 and {r["provider"] for r in rows} == {"openai_compatible"}
    assert backend.find_batches(KEY) == {} and backend.console_url("b") is None
    batch = backend.client.batches.retrieve(manifest.batch_ids[0])
    uploaded = backend.client.files.retrieve(batch.input_file_id)
    assert uploaded.expires_at == uploaded.created_at + 30 * 86_400  # the host's own default: no expires_after sent
    backend.close()


def test_tags_sent_to_a_host_that_refuses_them_fail_with_what_to_set(llm_batch_emulator, tmp_path):
    llm_batch_emulator.set_scenario(completion_seconds=0.2, openai_metadata="refused")
    for backend in (_backend(llm_batch_emulator, OpenAIBackend), _backend(llm_batch_emulator, metadata="true")):
        with pytest.raises(ConfigurationError, match='set "metadata": false in the connection'):
            submit_items(backend, tmp_path / backend.provider, ITEMS, SPEC, KEY)
        backend.close()


def test_a_host_that_drops_metadata_re_attaches_from_the_record(llm_batch_emulator, tmp_path):
    llm_batch_emulator.set_scenario(completion_seconds=0.2, openai_metadata="dropped")
    backend = _backend(llm_batch_emulator, metadata=True)  # the host says it keeps them; it does not
    _, first = submit_items(backend, tmp_path, ITEMS, SPEC, KEY)
    assert backend.find_batches(KEY) == {}  # nothing comes back tagged
    _, second = submit_items(backend, tmp_path, ITEMS, SPEC, KEY)  # a retried submit: the record holds the id
    assert second.batch_ids == first.batch_ids and len(_creates(llm_batch_emulator)) == 1
    backend.close()


def test_an_endpoint_the_host_does_not_serve_is_refused_before_any_call(llm_batch_emulator, tmp_path):
    llm_batch_emulator.set_scenario(completion_seconds=0.2)
    backend = _backend(llm_batch_emulator, endpoints="chat")
    embedding = RequestSpec(model="text-embedding-3-small", kind=Kind.EMBEDDING)
    with pytest.raises(ConfigurationError, match="serves only"):
        submit_items(backend, tmp_path, ITEMS, embedding, KEY)
    responses = RequestSpec(model="gpt-4.1-mini", kind=Kind.CHAT, options={"endpoint": "responses"})
    with pytest.raises(ConfigurationError, match="serves only"):
        submit_items(backend, tmp_path / "r", ITEMS, responses, KEY)
    assert llm_batch_emulator.requests("openai") == []
    backend.close()


def test_the_connection_carries_the_host_and_its_limits():
    conn = SimpleNamespace(
        conn_type="llm_batch_openai_compatible",
        host="https://host.example/v1",
        password="k",
        extra_dejson={"limits": {"max_requests": 1000}, "metadata": "false", "endpoints": ["chat", "embeddings"]},
    )
    backend = backend_from_connection(conn)
    assert isinstance(backend, OpenAICompatibleBackend) and backend.limits.max_requests == 1000
    assert not backend.keeps_metadata
    no_host = backend_from_connection(SimpleNamespace(**{**vars(conn), "host": None}))
    with pytest.raises(ConfigurationError, match="needs the host's base URL"):
        _ = no_host.client
    bad_flag = backend_from_connection(SimpleNamespace(**{**vars(conn), "extra_dejson": {"metadata": "maybe"}}))
    with pytest.raises(ConfigurationError, match="must be true or false"):
        _ = bad_flag.keeps_metadata
