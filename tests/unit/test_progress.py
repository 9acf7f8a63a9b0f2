"""Progress lines in the task log: per batch and in total, only when something changed."""

from __future__ import annotations

from airflow_llm_batch.batch.records import BatchOutcome, BatchStatus
from airflow_llm_batch.progress import ProgressTracker, describe_state

T0 = 1_000_000.0


def status(batch_id, done, total=200, failed=0, state="in_progress", outcome=None):
    return BatchStatus(batch_id=batch_id, state=state, outcome=outcome, total=total, done=done, failed=failed)


def test_a_batch_line_shows_done_total_failed_elapsed_and_time_left():
    tracker = ProgressTracker(["b1"], submitted_at=T0)
    [line] = tracker.update(status("b1", done=50, failed=2), now=T0 + 60)
    assert line == "Batch b1: running [in_progress], 50/200 done (25%), 2 failed, elapsed 0:01:00, about 0:03:00 left"


def test_an_unchanged_batch_gets_no_new_line():
    tracker = ProgressTracker(["b1"], submitted_at=T0)
    assert tracker.update(status("b1", done=50), now=T0 + 60)
    assert tracker.update(status("b1", done=50), now=T0 + 120) == []
    assert tracker.update(status("b1", done=51), now=T0 + 180)


def test_an_ended_batch_has_no_estimate():
    tracker = ProgressTracker(["b1"], submitted_at=T0)
    [line] = tracker.update(status("b1", 200, state="completed", outcome=BatchOutcome.COMPLETED), now=T0 + 90)
    assert line.endswith("200/200 done (100%), 0 failed, elapsed 0:01:30")


def test_a_poll_of_several_batches_gives_one_line_each_then_the_total():
    tracker = ProgressTracker(["b1", "b2"], submitted_at=T0, totals={"b1": 100, "b2": 100})
    lines = tracker.poll_lines([status("b1", 40, total=100, failed=1), status("b2", 10, total=100)], now=T0 + 50)
    assert len(lines) == 3
    assert lines[0].startswith("Batch b1: ") and lines[1].startswith("Batch b2: ")
    assert lines[2] == "All batches (2): 50/200 done (25%), 1 failed, elapsed 0:00:50, about 0:02:30 left"
    # Nothing changed: not even the total line.
    assert tracker.poll_lines([status("b1", 40, total=100, failed=1), status("b2", 10, total=100)], now=T0 + 60) == []
    # Only b2 moved: its line and the total, never a line for b1.
    lines = tracker.poll_lines([status("b1", 40, total=100, failed=1), status("b2", 20, total=100)], now=T0 + 70)
    assert [line.split(":")[0] for line in lines] == ["Batch b2", "All batches (2)"]


def test_totals_from_the_manifest_count_before_the_provider_reports_them():
    tracker = ProgressTracker(["b1"], submitted_at=T0, totals={"b1": 80})
    [line] = tracker.update(status("b1", 0, total=0, state="validating"), now=T0 + 5)
    assert "0/80 done (0%)" in line and "left" not in line


def test_a_single_batch_job_gets_no_separate_total_line():
    tracker = ProgressTracker(["b1"], submitted_at=T0)
    assert len(tracker.poll_lines([status("b1", 10)], now=T0 + 10)) == 1


def test_every_provider_says_its_phase_in_the_same_words():
    """The provider's status word shows only in brackets: a reader compares providers by the phase."""
    said = {
        ("validating", None): "waiting [validating]",
        ("JOB_STATE_PENDING", None): "waiting [JOB_STATE_PENDING]",
        ("in_progress", None): "running [in_progress]",
        ("JOB_STATE_RUNNING", None): "running [JOB_STATE_RUNNING]",
        ("BATCH_STATE_RUNNING", None): "running [BATCH_STATE_RUNNING]",
        ("finalizing", None): "finishing [finalizing]",
        ("canceling", None): "cancelling [canceling]",
        ("JOB_STATE_CANCELLING", None): "cancelling [JOB_STATE_CANCELLING]",
        ("completed", BatchOutcome.COMPLETED): "completed",
        ("ended", BatchOutcome.COMPLETED): "completed [ended]",
        ("JOB_STATE_SUCCEEDED", BatchOutcome.COMPLETED): "completed [JOB_STATE_SUCCEEDED]",
        ("ended", BatchOutcome.CANCELLED): "cancelled [ended]",
        ("JOB_STATE_EXPIRED", BatchOutcome.EXPIRED): "expired [JOB_STATE_EXPIRED]",
        # Amazon Bedrock model invocation jobs
        ("Submitted", None): "waiting [Submitted]",
        ("Scheduled", None): "waiting [Scheduled]",
        ("InProgress", None): "running [InProgress]",
        ("Stopping", None): "cancelling [Stopping]",
        ("PartiallyCompleted", BatchOutcome.COMPLETED): "completed [PartiallyCompleted]",
    }
    for (state, outcome), words in said.items():
        assert describe_state(status("b1", 0, state=state, outcome=outcome)) == words
