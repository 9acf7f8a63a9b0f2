"""A job whose record is lost, and two writers of one job key at once, on every provider.

The ledger is the bill: one batch per chunk where the provider can be asked by tag (OpenAI,
Gemini) or the writers share a record; Anthropic, without tags, pays again when the record is
gone (the documented limit, docs/reliability.md).
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Any

from airflow_llm_batch.batch.backends import create_backend
from airflow_llm_batch.batch.backends.base import ClientConfig, RequestSpec
from airflow_llm_batch.batch.job import JobLayout, submit_prepared
from airflow_llm_batch.batch.manifest import Manifest
from airflow_llm_batch.batch.prepare import prepare_chunks
from airflow_llm_batch.batch.record_store import FileRecordStore, RecordStore
from airflow_llm_batch.batch.records import JobKey, Kind
from airflow_llm_batch.batch.templates import PromptTemplate
from tests.integration.conftest import MODELS, base_url

KEY = JobKey("dag", "submit", "manual__2026-12-05")
ITEMS = [{"id": f"L-{n:02d}", "text": f"message {n}"} for n in range(30)]
PER_BATCH = 10  # three chunks


def _created(emulator: Any, provider: str) -> list[dict[str, Any]]:
    return [b for b in emulator.ledger()["batches"] if b["provider"] == provider]


def _submit(flow: Any, backend: Any, records: RecordStore | None = None) -> Manifest:
    """Attempt 1 of KEY under the flow's work dir, three chunks, the record where ``records`` says."""
    layout = JobLayout.for_job(flow.root, KEY, 1, records)
    spec = RequestSpec(model=MODELS[flow.provider], kind=Kind.CHAT)
    backend.limits = backend.limits.with_overrides({"max_requests": PER_BATCH})
    prepared = prepare_chunks(
        ITEMS,
        id_field="id",
        spec=spec,
        backend=backend,
        out_dir=layout.requests_dir,
        template=PromptTemplate("Spam or ham? {text}"),
    )
    return submit_prepared(
        prepared, backend=backend, spec=spec, job_key=KEY, layout=layout, conn_id="c", attempt=1, timeout_seconds=600
    )


def _backend(flow: Any, emulator: Any) -> Any:
    return create_backend(flow.provider, ClientConfig(api_key="k", base_url=base_url(emulator, flow.provider)))


def test_a_job_whose_work_dir_was_deleted_re_attaches_by_tag(flow, llm_batch_emulator):
    first = _submit(flow, flow.backend)
    shutil.rmtree(flow.root)  # the record, the request files, everything of the job's folder
    flow.root.mkdir()
    second = _submit(flow, flow.backend)
    created = _created(llm_batch_emulator, flow.provider)
    if flow.provider == "anthropic":
        # No tags: nothing tells the second try that the batches exist (documented limit).
        assert len(created) == 6 and set(second.batch_ids).isdisjoint(first.batch_ids)
        return
    assert second.batch_ids == first.batch_ids
    assert len(created) == 3 and llm_batch_emulator.ledger()["duplicate_batches"] == []
    # The next try finds the record again: no second lookup at the provider.
    record = FileRecordStore(JobLayout.for_job(flow.root, KEY, 1).state_file).load()
    assert record is not None and all(c["recovered"] for c in record["chunks"].values())


def _race(flow: Any, emulator: Any, records: list[RecordStore | None]) -> list[Manifest]:
    """Two writers of KEY start together; the first create call of each is slowed down (a big upload)."""
    start = threading.Barrier(len(records))
    manifests: list[Manifest] = []
    errors: list[BaseException] = []

    def writer(store: RecordStore | None) -> None:
        backend = _backend(flow, emulator)
        create = backend.submit_chunk

        def slow_create(*args: Any, **kwargs: Any) -> str:
            threading.Event().wait(0.5)
            return str(create(*args, **kwargs))

        backend.submit_chunk = slow_create
        try:
            start.wait()
            manifests.append(_submit(flow, backend, store))
        except BaseException as error:  # reported by the test thread below
            errors.append(error)
        finally:
            backend.close()

    threads = [threading.Thread(target=writer, args=(store,)) for store in records]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    return manifests


def test_two_writers_sharing_the_record_create_one_batch_per_chunk(flow, llm_batch_emulator, caplog):
    first, second = _race(flow, llm_batch_emulator, [None, None])  # both: the work dir's state file
    assert "Another task is creating batches for" in caplog.text  # they did overlap: one waited
    assert first.batch_ids == second.batch_ids
    assert len(_created(llm_batch_emulator, flow.provider)) == 3


def test_two_writers_with_records_of_their_own_take_turns_and_find_each_others_batches(
    flow, llm_batch_emulator, tmp_path: Path, caplog
):
    """Two Airflow installations (each its own Task State Store) sharing one work dir and run id."""
    stores: list[RecordStore | None] = [FileRecordStore(tmp_path / f"db-{n}" / "record.json") for n in (1, 2)]
    first, second = _race(flow, llm_batch_emulator, stores)
    assert "Another task is creating batches for" in caplog.text
    created = _created(llm_batch_emulator, flow.provider)
    if flow.provider == "anthropic":
        assert len(created) == 6  # the second writer cannot see the first one's batches (no tags)
        return
    assert first.batch_ids == second.batch_ids
    assert len(created) == 3 and llm_batch_emulator.ledger()["duplicate_batches"] == []
