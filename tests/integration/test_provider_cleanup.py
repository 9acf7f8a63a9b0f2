"""Provider storage hygiene (issue #16): after the results are written, the job's files are gone
at the provider, listed through the real SDK clients; a retry round still works after that.

OpenAI keeps no file of the job. Gemini keeps only the batch output file, which its API refuses
to delete (python-genai#1759), and the summary says so. Anthropic stores no files; with
``cleanup="after_results_and_batches"`` its batch is deleted too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from airflow_llm_batch.batch.backends import create_backend
from airflow_llm_batch.batch.finish import finish_results
from airflow_llm_batch.batch.records import JobKey
from airflow_llm_batch.batch.submit import submit_retry
from airflow_llm_batch.io.sinks import open_sink
from tests.integration.conftest import LABEL_SCHEMA, base_url
from tests.integration.harness import wait_for

ITEMS = [{"id": f"item-{n:03d}", "text": f"message {n}"} for n in range(30)]
RESULTS_KEY = JobKey("dag", "results", "run")


def _backend(flow: Any) -> Any:
    """A fresh backend, as every task builds its own from the connection."""
    backend = create_backend(flow.provider, flow.backend.config)
    if flow.provider == "gemini":
        # Small Gemini jobs travel inline, with no file at all; the file path is the one to clean.
        backend.config.extra["inline_max_bytes"] = 1
    return backend


def _finish(flow: Any, manifest: Any, cleanup: str = "after_results") -> dict[str, Any]:
    return finish_results(
        manifest,
        _backend(flow),
        path_of=Path,
        open_rows=lambda directory: open_sink(directory, "jsonl"),
        output_dir=None,
        table=None,
        job_key=RESULTS_KEY,
        prices=None,
        cleanup=cleanup,
    )


def _files_at_provider(flow: Any, emulator: Any) -> list[str]:
    """The file names the provider lists, through its own SDK."""
    url = base_url(emulator, flow.provider)
    if flow.provider == "openai":
        from openai import OpenAI

        with OpenAI(api_key="k", base_url=url) as client:
            return [f.id for f in client.files.list()]
    if flow.provider == "gemini":
        from google import genai

        client = genai.Client(api_key="k", http_options={"base_url": url})
        return [str(f.name) for f in client.files.list()]
    return []  # Anthropic has no file store


def _submit(flow: Any) -> tuple[Any, Any]:
    flow.backend.close()
    flow.backend = _backend(flow)
    layout, manifest = flow.submit(ITEMS)
    layout.schema_file.write_text(json.dumps(LABEL_SCHEMA))  # (the Submit task writes it beside the requests)
    flow.wait(manifest)
    return layout, manifest


def test_after_results_the_jobs_files_are_deleted_at_the_provider(flow, llm_batch_emulator):
    _, manifest = _submit(flow)
    before = _files_at_provider(flow, llm_batch_emulator)
    summary = _finish(flow, manifest)

    after = _files_at_provider(flow, llm_batch_emulator)
    cleanup = summary["provider_cleanup"]
    assert summary["succeeded"] == len(ITEMS)
    if flow.provider == "openai":
        assert len(before) == 2  # the input file and the output file (no error file: nothing failed)
        assert after == [] and sorted(cleanup["deleted_ids"]) == sorted(before) and cleanup["kept"] == []
    elif flow.provider == "gemini":
        [output] = [name for name in before if name.startswith("files/batch-")]
        assert len(before) == 2 and after == [output]
        assert cleanup["deleted"] == 1 and [k["id"] for k in cleanup["kept"]] == [output]
        assert "python-genai#1759" in cleanup["kept"][0]["reason"]
    else:
        assert cleanup == {"deleted": 0, "deleted_ids": [], "kept": []}


def test_cleanup_never_keeps_every_file(flow, llm_batch_emulator):
    _, manifest = _submit(flow)
    before = _files_at_provider(flow, llm_batch_emulator)
    summary = _finish(flow, manifest, cleanup="never")
    assert "provider_cleanup" not in summary
    assert _files_at_provider(flow, llm_batch_emulator) == before


def test_a_later_try_of_the_results_task_returns_the_kept_summary(flow, llm_batch_emulator):
    _, manifest = _submit(flow)
    first = _finish(flow, manifest)
    requests_before = len(llm_batch_emulator.requests())
    again = _finish(flow, manifest)
    assert again == first
    assert len(llm_batch_emulator.requests()) == requests_before  # nothing asked of the provider


def test_a_retry_round_works_after_cleanup(flow, llm_batch_emulator):
    llm_batch_emulator.update_scenario(item_errors={"server_error": 0.3})
    layout, manifest = _submit(flow)
    first = _finish(flow, manifest)
    assert first["retryable"] > 0
    llm_batch_emulator.update_scenario(item_errors={})
    retry_key = JobKey("dag", "retry_1_submit", "run")
    backend = _backend(flow)
    retry = submit_retry(first, backend, layout.root, Path(first["failed_items_uri"]), retry_key, timeout_seconds=3600)
    wait_for(_backend(flow), retry)
    second = _finish(flow, retry)
    assert second["items"] == first["retryable"] and second["succeeded"] == second["items"]
    if flow.provider == "openai":
        assert _files_at_provider(flow, llm_batch_emulator) == []


@pytest.mark.parametrize("flow", ["anthropic"], indirect=True)  # (OpenAI has no batch delete)
def test_after_results_and_batches_deletes_the_anthropic_batch(flow, llm_batch_emulator):
    from anthropic import Anthropic, NotFoundError

    _, manifest = _submit(flow)
    summary = _finish(flow, manifest, cleanup="after_results_and_batches")
    assert summary["provider_cleanup"]["deleted_ids"] == manifest.batch_ids
    url = base_url(llm_batch_emulator, "anthropic")
    with Anthropic(api_key="k", base_url=url, max_retries=0) as client, pytest.raises(NotFoundError):
        client.messages.batches.retrieve(manifest.batch_ids[0])


@pytest.mark.parametrize("flow", ["openai"], indirect=True)
def test_openai_uploads_and_outputs_carry_the_expiry(flow, llm_batch_emulator):
    from openai import OpenAI

    _submit(flow)
    with OpenAI(api_key="k", base_url=base_url(llm_batch_emulator, "openai")) as client:
        files = list(client.files.list())
    assert {f.purpose for f in files} == {"batch", "batch_output"}
    assert all(f.expires_at is not None and f.expires_at - f.created_at == 7 * 24 * 3600 for f in files)


def test_an_unknown_cleanup_mode_is_refused_when_the_dag_is_parsed():
    from airflow_llm_batch import LLMBatchResultsOperator

    with pytest.raises(ValueError, match="cleanup must be one of"):
        LLMBatchResultsOperator(task_id="results", manifest={}, cleanup="always")
