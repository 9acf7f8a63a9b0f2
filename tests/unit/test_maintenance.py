"""purge_old_runs: old run folders of the work dir go, recent ones and shared stores stay."""

from __future__ import annotations

import os
import time

import pytest

from airflow_llm_batch.maintenance import purge_old_runs

DAY = 24 * 3600
NOW = time.time()


def _run(root, dag, run, *files_age_days):
    """A run folder with one file per age (days before NOW), nested as the steps write them."""
    for index, age in enumerate(files_age_days):
        path = root / dag / run / "classify" / f"attempt-{index + 1}" / "state.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
        os.utime(path, (NOW - age * DAY, NOW - age * DAY))
    return root / dag / run


@pytest.mark.parametrize("as_uri", [False, True])
def test_runs_whose_newest_file_is_old_are_removed_and_the_rest_kept(tmp_path, as_uri):
    old = _run(tmp_path, "triage", "scheduled__2026-10-01", 40)
    retried_lately = _run(tmp_path, "triage", "scheduled__2026-10-02", 40, 1)  # a retry round wrote yesterday
    recent = _run(tmp_path, "triage", "scheduled__2026-12-04", 1)
    other_dag = _run(tmp_path, "summaries", "scheduled__2026-10-01", 40)
    shared = tmp_path / "_reuse" / "x" / "store.parquet"
    shared.parent.mkdir(parents=True)
    shared.write_text("")
    os.utime(shared, (NOW - 90 * DAY, NOW - 90 * DAY))

    work_dir = f"file://{tmp_path}" if as_uri else tmp_path
    report = purge_old_runs(work_dir, older_than_days=30, dag_id="triage", now=NOW)

    assert [os.path.basename(p) for p in report.removed] == ["scheduled__2026-10-01"]
    assert report.kept == 2
    assert not old.exists() and retried_lately.exists() and recent.exists() and other_dag.exists()
    assert shared.exists()


def test_a_dry_run_removes_nothing(tmp_path):
    old = _run(tmp_path, "triage", "r1", 40)
    report = purge_old_runs(tmp_path, older_than_days=30, dry_run=True, now=NOW)
    assert report.to_dict() == {"removed": [str(old)], "kept": 0, "dry_run": True}
    assert old.exists()


def test_an_age_that_could_cut_off_a_running_batch_is_refused(tmp_path):
    with pytest.raises(ValueError, match="may still be running"):
        purge_old_runs(tmp_path, older_than_days=1)


def _segment(root, dag, task, stored_days_ago):
    """A reuse store segment written as a Results task writes it, its answers stored that long ago."""
    from airflow_llm_batch.batch.reuse_store import segment_name, write_segment

    label = f"run-{stored_days_ago}/attempt-1"
    write_segment(root / "_reuse" / dag / task, label, [(bytes(16), b'{"id":"a"}')], now=NOW - stored_days_ago * DAY)
    return root / "_reuse" / dag / task / segment_name(label)


def test_reuse_segments_stored_before_the_age_go_and_younger_ones_stay(tmp_path):
    from airflow_llm_batch.batch.reuse_store import list_segments
    from airflow_llm_batch.maintenance import purge_reuse_segments

    old, young = _segment(tmp_path, "triage", "classify", 40), _segment(tmp_path, "triage", "classify", 5)
    other_dag = _segment(tmp_path, "summaries", "classify", 40)
    damaged = tmp_path / "_reuse" / "triage" / "classify" / "segment-damaged.parquet"
    damaged.write_bytes(b"not parquet")  # goes by its file time: now, so it stays
    stale_temporary = tmp_path / "_reuse" / "triage" / "classify" / ".tmp-dead.parquet"
    stale_temporary.write_bytes(b"half")
    os.utime(stale_temporary, (NOW - 4 * DAY, NOW - 4 * DAY))
    run = _run(tmp_path, "triage", "scheduled__2026-10-01", 40)

    dry = purge_reuse_segments(f"file://{tmp_path}", older_than_days=30, dag_id="triage", dry_run=True, now=NOW)
    assert sorted(os.path.basename(p) for p in dry.removed) == sorted([old.name, stale_temporary.name])
    assert old.exists()

    report = purge_reuse_segments(tmp_path, older_than_days=30, dag_id="triage", now=NOW)
    assert sorted(os.path.basename(p) for p in report.removed) == sorted([old.name, stale_temporary.name])
    assert report.kept == 2  # the young segment and the damaged one
    assert not old.exists() and not stale_temporary.exists()
    assert young.exists() and damaged.exists() and other_dag.exists() and run.exists()
    # What is left is still a store a run reads: the young answers.
    segments = list_segments(tmp_path / "_reuse" / "triage" / "classify", None, now=NOW)
    assert [segment.path.name for segment in segments] == [young.name]
