"""Where a job's idempotency record lives: a JSON document loaded and saved whole.

The record (``batch/job.py``: fingerprint, deadline, one entry per chunk with ``intent`` or
``submitted`` and the batch id, plus whatever later features add) must survive a task retry and a
worker crash. Two homes exist:

- the work dir's ``state.json`` (:class:`FileRecordStore`, here): Airflow 3.1 and 3.2, and any
  caller outside Airflow;
- the task instance's Task State Store (Airflow 3.3+, AIP-103): ``airflow_llm_batch/state_store.py``,
  in the Airflow layer, because this package (``batch/``) imports no Airflow.

Both keep the record a plain JSON object, so fields added by other features ride along unchanged.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path, PurePath
from typing import Any

from airflow_llm_batch.batch import jsonl
from airflow_llm_batch.batch.storage import StoragePath, uri_of
from airflow_llm_batch.exceptions import ConfigurationError, StateConflictError

# A read-only mount (EROFS) is as much "not writable" as missing permissions (EACCES, EPERM).
NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)
# ObjectStoragePath's protocol for a plain local path is "" (and "file" for file:// URIs).
LOCAL_PROTOCOLS = ("", "file", "local")


class RecordStore(ABC):
    """Loads and saves one job's record. Implementations say where it lives in :attr:`where`."""

    #: Where the record lives, in words a user can act on (a file URI, "Task State Store key ...").
    where: str

    @abstractmethod
    def load(self) -> dict[str, Any] | None:
        """The saved record, or ``None`` when this job has none yet."""

    @abstractmethod
    def save(self, record: dict[str, Any]) -> None:
        """Replace the saved record with ``record`` (a JSON object), all or nothing where the medium allows."""

    def reading_through(self, earlier: RecordStore) -> RecordStore:
        """This store, which reads ``earlier`` while it has no record of its own (and never writes it)."""
        return _ReadThrough(self, earlier)


class _ReadThrough(RecordStore):
    """A store that moved: a job begun before the move (on Airflow 3.2, its record in the state file,
    then cleared on 3.3) keeps its batches; its next save lands in the new store."""

    def __init__(self, primary: RecordStore, earlier: RecordStore) -> None:
        self.primary = primary
        self.earlier = earlier
        self.where = primary.where

    def load(self) -> dict[str, Any] | None:
        record = self.primary.load()
        return record if record is not None else self.earlier.load()

    def save(self, record: dict[str, Any]) -> None:
        self.primary.save(record)


class FileRecordStore(RecordStore):
    """The record as a JSON file in the work dir (``{job}/attempt-{n}/state.json``).

    Saved atomically: on a local disk through a temporary file and ``os.replace``; on an object
    store a single object write is already all-or-nothing (the object appears when the upload
    completes). A reader therefore never sees half a record, whatever kills the writer.
    """

    def __init__(self, path: StoragePath) -> None:
        self.path = path
        self.where = f"state file {uri_of(path)}"

    def load(self) -> dict[str, Any] | None:
        try:
            if not self.path.exists():
                return None
            with self.path.open("rb") as stream:
                raw = stream.read()
        except PermissionError as error:
            raise ConfigurationError(_unreadable(self.path, error)) from None
        try:
            record = jsonl.loads(raw)
        except jsonl.JSONDecodeError as error:
            raise StateConflictError(_corrupt(self.path, f"it is not valid JSON ({error})")) from None
        if not isinstance(record, dict):
            raise StateConflictError(_corrupt(self.path, "it holds no JSON object"))
        return record

    def save(self, record: dict[str, Any]) -> None:
        payload = jsonl.dumps(record, option=jsonl.orjson.OPT_INDENT_2)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            local = local_path(self.path)
            if local is not None:
                _replace_atomically(local, payload)
            else:
                with self.path.open("wb") as stream:
                    stream.write(payload)
        except FileNotFoundError as error:
            # mkdir succeeded, so the folder vanished under us (deleted while the task ran).
            raise ConfigurationError(
                f"Could not write the job's {self.where}: its folder disappeared while the task ran "
                f"({error.strerror or error}). Something deletes the work dir under running tasks "
                "(a cleanup job, a temporary folder); point work_dir at a folder that lives as long "
                "as the DAG run, or at an object store (s3://, gs://)."
            ) from None
        except OSError as error:
            if error.errno not in NOT_WRITABLE:
                raise
            raise ConfigurationError(_unwritable(self.path, error)) from None


def local_path(path: StoragePath) -> Path | None:
    """The local ``pathlib.Path`` of a work-dir path on this machine's disk, else ``None``."""
    protocol = getattr(path, "protocol", None)
    if protocol is not None:  # ObjectStoragePath / UPath (a pathlib subclass in universal_pathlib 0.2)
        return Path(str(getattr(path, "path", path))) if protocol in LOCAL_PROTOCOLS else None
    return Path(path) if isinstance(path, PurePath) else None


def _replace_atomically(target: Path, payload: bytes) -> None:
    """Write to a temporary sibling, flush it to disk, then rename it over ``target`` (POSIX-atomic)."""
    descriptor, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(payload)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _corrupt(path: StoragePath, what: str) -> str:
    return (
        f"The job's state file {uri_of(path)} is damaged: {what}. It records which batches this job "
        "already created, so nothing was submitted. Restore it from a backup if you have one; otherwise "
        "delete it and clear the task: the next try looks the batches up by their job-key tag on OpenAI, "
        "Gemini and Vertex AI and re-attaches (on Anthropic, which has no tags, check the console for "
        "batches of this run first, or they are paid for again)."
    )


def _unreadable(path: StoragePath, error: OSError) -> str:
    return (
        f"Cannot read the job's state file {uri_of(path)} ({error.strerror or error}): the worker's user "
        "needs read and write access to the work dir ([llm_batch] work_dir, the connection's work_dir "
        "extra, or the operator's work_dir)."
    )


def _unwritable(path: StoragePath, error: OSError) -> str:
    return (
        f"Cannot write the job's state file {uri_of(path)} ({error.strerror or error}): the work dir is "
        "read-only for the worker's user. Give that user write access, or point work_dir ([llm_batch] "
        "work_dir, the connection's work_dir extra, or the operator's work_dir) at a writable folder or "
        "object store."
    )
