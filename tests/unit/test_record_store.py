"""The job record on disk: written whole or not at all, and a damaged or unwritable one explained."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_llm_batch.batch.job import JobLayout, JobState
from airflow_llm_batch.batch.lease import WriterLease
from airflow_llm_batch.batch.record_store import FileRecordStore, local_path
from airflow_llm_batch.exceptions import ConfigurationError, StateConflictError


def test_a_record_round_trips_with_fields_this_package_does_not_know(tmp_path):
    store = FileRecordStore(tmp_path / "job" / "state.json")
    assert store.load() is None
    state = JobState.load(store)
    state.data["waves"] = {"pending": [3, 4]}  # another feature's field rides along
    state.set_chunk(0, state="submitted", batch_id="b-0")
    again = JobState.load(FileRecordStore(tmp_path / "job" / "state.json"))
    assert again.chunk(0) == {"state": "submitted", "batch_id": "b-0"}
    assert again.data["waves"] == {"pending": [3, 4]}


def test_a_writer_killed_mid_save_leaves_the_previous_record_whole(tmp_path):
    """A process SIGKILLed while it rewrites the record over and over: every read sees a whole record."""
    path = tmp_path / "state.json"
    FileRecordStore(path).save({"chunks": {}, "n": 0})
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path\n"
            "from airflow_llm_batch.batch.record_store import FileRecordStore, local_path\n"
            "store = FileRecordStore(Path(sys.argv[1]))\n"
            "n = 0\n"
            "while True:\n"
            "    n += 1\n"
            "    store.save({'chunks': {str(i): {'batch_id': 'x' * 200} for i in range(200)}, 'n': n})\n",
            str(path),
        ]
    )
    try:
        deadline = time.monotonic() + 30
        while FileRecordStore(path).load()["n"] < 20 and time.monotonic() < deadline:  # type: ignore[index]
            time.sleep(0.01)
        for _ in range(200):  # reads racing the writer
            assert FileRecordStore(path).load()["n"] >= 0  # type: ignore[index]
    finally:
        writer.kill()
        writer.wait()
    record = FileRecordStore(path).load()
    assert record is not None and record["n"] >= 20
    # What the kill may leave is a hidden temporary file beside it, never a half-written state.json.
    assert {p.name for p in tmp_path.iterdir() if not p.name.startswith(".state.json.")} == {"state.json"}


def test_a_truncated_state_file_names_the_file_and_what_to_do(tmp_path):
    layout = JobLayout(tmp_path / "attempt-1")
    layout.root.mkdir()
    layout.state_file.write_text('{"chunks": {"0": {"state": "subm')
    with pytest.raises(StateConflictError) as caught:
        JobState.load(layout.record_store)
    message = str(caught.value)
    assert str(layout.state_file) in message
    assert "not valid JSON" in message and "delete it and clear the task" in message
    assert "nothing was submitted" in message


def test_a_deleted_work_dir_is_recreated_when_the_record_is_saved(tmp_path):
    store = FileRecordStore(tmp_path / "gone" / "attempt-1" / "state.json")
    store.save({"chunks": {}})
    assert store.load() == {"chunks": {}}


def test_a_read_only_work_dir_gives_a_hint_not_a_bare_permission_error(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    with _read_only(work), pytest.raises(ConfigurationError) as caught:
        FileRecordStore(work / "attempt-1" / "state.json").save({"chunks": {}})
    message = str(caught.value)
    assert "read-only for the worker's user" in message and str(work) in message


@contextlib.contextmanager
def _read_only(folder: Path) -> Iterator[None]:
    """The folder unwritable even for root (who ignores modes): the immutable flag, else plain modes."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield
        folder.chmod(0o755)
        return
    subprocess.run(["chattr", "+i", str(folder)], check=True)
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_a_second_writer_waits_for_the_first_and_then_holds_the_lease(tmp_path):
    path = tmp_path / "writer.lease"
    first = WriterLease(path, "job", poll_seconds=0.05)
    first.acquire()
    order: list[str] = []
    second = WriterLease(path, "job", poll_seconds=0.05)

    def take() -> None:
        second.acquire()
        order.append("second acquired")
        second.release()

    thread = threading.Thread(target=take)
    thread.start()
    time.sleep(0.5)
    order.append("first releases")
    first.release()
    thread.join(10)
    assert order == ["first releases", "second acquired"]
    assert second.waited and not first.waited
    assert not path.exists()


def test_a_lease_left_by_a_dead_holder_is_taken_over(tmp_path):
    path = tmp_path / "writer.lease"
    # Another host's holder, its lease expired a minute ago.
    path.write_text(json.dumps({"owner": "other-host:1:abc", "acquired_at": 0, "expires_at": time.time() - 60}))
    with WriterLease(path, "job", poll_seconds=0.05) as lease:
        assert lease.held and not lease.waited
    # A process of this host that has ended: no need to wait for the expiry.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    owner = f"{os.uname().nodename}:{dead.stdout.strip()}:abc"
    path.write_text(json.dumps({"owner": owner, "acquired_at": time.time(), "expires_at": time.time() + 3600}))
    with WriterLease(path, "job", poll_seconds=0.05, wait_seconds=5) as lease:
        assert lease.held


def test_a_live_holder_that_never_finishes_ends_the_wait_with_a_message(tmp_path):
    path = tmp_path / "writer.lease"
    holder = WriterLease(path, "dag/submit/run/-1", ttl_seconds=3600)
    holder.acquire()
    try:
        waiting = WriterLease(path, "dag/submit/run/-1", wait_seconds=0.3, poll_seconds=0.05)
        with pytest.raises(StateConflictError) as caught:
            waiting.acquire()
    finally:
        holder.release()
    message = str(caught.value)
    assert "dag/submit/run/-1" in message and str(path) in message and "delete the lease file" in message


def test_a_state_file_path_still_loads_as_before(tmp_path: Path):
    """Callers that hold the state file's path (tests, tools) keep working."""
    path = tmp_path / "state.json"
    path.write_text('{"chunks": {"0": {"batch_id": "b"}}}')
    assert JobState.load(path).chunk(0) == {"batch_id": "b"}


def test_on_an_object_store_the_record_and_the_lease_work_the_same(request):
    """fsspec's in-memory filesystem stands in for s3:// or gs:// (the object-store code paths)."""
    from upath import UPath

    root = UPath(f"memory://llm-batch-tests/{request.node.name}")
    # universal_pathlib 0.2 (Airflow 3.1) makes every UPath a pathlib.Path: not local for all that.
    assert local_path(root) is None and local_path(UPath("s3://bucket/work")) is None
    store = FileRecordStore(root / "attempt-1" / "state.json")
    assert store.load() is None
    store.save({"chunks": {"0": {"batch_id": "b-0"}}})
    assert store.load() == {"chunks": {"0": {"batch_id": "b-0"}}}

    first = WriterLease(root / "attempt-1" / "writer.lease", "job", poll_seconds=0.05)
    first.acquire()
    second = WriterLease(root / "attempt-1" / "writer.lease", "job", wait_seconds=0.3, poll_seconds=0.05)
    with pytest.raises(StateConflictError, match="still holds the lease"):
        second.acquire()
    first.release()
    with second:
        assert second.held
    assert not (root / "attempt-1" / "writer.lease").exists()
