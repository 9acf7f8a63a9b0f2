"""Housekeeping of the work dir: remove the folders of old DAG runs, and old answers of the reuse store.

Every run of an LLM step leaves its requests, state and results under
``{work dir}/{dag_id}/{run_id}/``; nothing removes them, so a nightly DAG adds a folder a night.
:func:`purge_old_runs` removes the run folders in which nothing was written for ``older_than_days``
(the newest file decides, so a run whose retry round wrote yesterday stays). Run it from a
maintenance DAG (``@task``) or a shell; it lists folders, so it is never part of an LLM step itself
(``work_dir.py`` says why the steps never list).

What it keeps: a run younger than ``MIN_AGE_DAYS``, however asked. A step waiting on its batches
writes nothing while it waits (a batch may run 24 hours at OpenAI and Anthropic, and a Gemini batch
48), and its Results task and retry rounds still need every file of the run. Folders whose name
starts with ``_`` (stores shared across runs) are never touched by it.

:func:`purge_reuse_segments` removes the reuse store's segments (``docs/reuse.md``) whose answers were
stored more than ``older_than_days`` ago: a run reads no answer older than its ``reuse=`` max age,
so a segment past the largest max age of the DAG's steps is dead weight.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

MIN_AGE_DAYS = 3.0
DAY_SECONDS = 24 * 3600


@dataclass
class PurgeReport:
    """What :func:`purge_old_runs` removed (or, with ``dry_run``, would remove) and kept."""

    removed: list[str] = field(default_factory=list)
    kept: int = 0
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"removed": self.removed, "kept": self.kept, "dry_run": self.dry_run}


def purge_old_runs(
    work_dir: Any,
    older_than_days: float = 30.0,
    *,
    dag_id: str | None = None,
    dry_run: bool = False,
    now: float | None = None,
) -> PurgeReport:
    """Remove ``{work dir}/{dag_id}/{run_id}/`` folders in which no file changed for ``older_than_days``.

    :param work_dir: the work dir: a URI (``s3://aws_default@bucket/llm-batch``, a local folder) or a
        path object (``ObjectStoragePath``, ``pathlib.Path``).
    :param older_than_days: age of a run's newest file above which the run is removed; at least
        ``MIN_AGE_DAYS``.
    :param dag_id: only this DAG's runs (default: every DAG's).
    :param dry_run: list what would be removed, remove nothing.
    :param now: the current time (Unix seconds), for tests.
    """
    if older_than_days < MIN_AGE_DAYS:
        raise ValueError(
            f"older_than_days={older_than_days} would remove runs whose batches may still be running "
            f"(a Gemini batch may run 48 hours, writing nothing meanwhile); use {MIN_AGE_DAYS:g} or more"
        )
    root = _open(work_dir)
    cutoff = (time.time() if now is None else now) - older_than_days * DAY_SECONDS
    report = PurgeReport(dry_run=dry_run)
    for dag_folder in _folders(root):
        if dag_id is not None and dag_folder.name != dag_id:
            continue
        for run_folder in _folders(dag_folder):
            newest = max(_mtimes(run_folder), default=None)
            if newest is None or newest >= cutoff:
                report.kept += 1
                continue
            report.removed.append(str(run_folder))
            if not dry_run:
                _remove(run_folder)
    log.info(
        "%s %d run folder(s) under %s with no file newer than %g days; kept %d",
        "Would remove" if dry_run else "Removed",
        len(report.removed),
        root,
        older_than_days,
        report.kept,
    )
    return report


def purge_reuse_segments(
    work_dir: Any,
    older_than_days: float,
    *,
    dag_id: str | None = None,
    dry_run: bool = False,
    now: float | None = None,
) -> PurgeReport:
    """Remove the reuse store's segments (``{work dir}/_reuse/{dag_id}/{task_id}/``) stored more than
    ``older_than_days`` ago.

    A segment's age is when its answers were stored (its metadata); a segment that cannot be read
    goes by its file's time. Half-written segments (``.tmp-*``, left by a Results task that died
    while writing) older than ``MIN_AGE_DAYS`` go too.

    :param work_dir: the work dir, as for :func:`purge_old_runs`.
    :param older_than_days: remove answers stored longer ago than this. Give at least the largest
        ``reuse=`` max age of the steps that share the store, or their answers are asked (and paid
        for) again.
    :param dag_id: only this DAG's stores (default: every DAG's).
    :param dry_run: list what would be removed, remove nothing.
    :param now: the current time (Unix seconds), for tests.
    """
    from airflow_llm_batch.batch.reuse_store import is_segment, segment_stored_at

    if older_than_days <= 0:
        raise ValueError(f"older_than_days must be positive, not {older_than_days}")
    now = time.time() if now is None else now
    cutoff, cutoff_temporary = now - older_than_days * DAY_SECONDS, now - MIN_AGE_DAYS * DAY_SECONDS
    report = PurgeReport(dry_run=dry_run)
    stores = _open(work_dir) / "_reuse"
    for dag_folder in _folders(stores, skip_shared=False):
        if dag_id is not None and dag_folder.name != dag_id:
            continue
        for task_folder in _folders(dag_folder, skip_shared=False):
            for path in sorted(task_folder.iterdir(), key=lambda child: child.name):
                if is_segment(path):
                    old = segment_stored_at(path) < cutoff
                elif path.name.startswith(".tmp-"):
                    old = float(path.stat().st_mtime) < cutoff_temporary
                else:
                    continue
                if not old:
                    report.kept += 1
                    continue
                report.removed.append(str(path))
                if not dry_run:
                    path.unlink()
    log.info(
        "%s %d reuse store file(s) under %s stored more than %g days ago; kept %d",
        "Would remove" if dry_run else "Removed",
        len(report.removed),
        stores,
        older_than_days,
        report.kept,
    )
    return report


def _open(work_dir: Any) -> Any:
    if isinstance(work_dir, str):
        from airflow_llm_batch.work_dir import open_work_dir

        path = open_work_dir(work_dir)
    else:
        path = work_dir
    fs = getattr(path, "fs", None)
    if fs is not None:  # a listing cached by an earlier call in this process may be stale
        fs.invalidate_cache()
    return path


def _folders(path: Any, skip_shared: bool = True) -> Iterator[Any]:
    """The folders in ``path``; without those whose name starts with ``_`` unless ``skip_shared`` is false."""
    if not path.exists():
        return
    for child in path.iterdir():
        if child.is_dir() and not (skip_shared and child.name.startswith("_")):
            yield child


def _mtimes(folder: Any) -> Iterator[float]:
    for child in folder.iterdir():
        if child.is_dir():
            yield from _mtimes(child)
        else:
            yield float(child.stat().st_mtime)


def _remove(folder: Any) -> None:
    if hasattr(folder, "fs"):  # ObjectStoragePath: the store's own recursive delete
        folder.rmdir(recursive=True)
    else:
        shutil.rmtree(folder)
