"""``llm_batch_step``: a whole LLM step as one TaskGroup, with retry rounds for failed items.

::

    submit -> wait -> results -> retry_1.submit -> retry_1.wait -> retry_1.results -> ... -> final

Each retry round resubmits only the items that failed with a retryable error; a round with
nothing to retry is skipped (and so is everything after it), and ``final`` writes exactly one
row per input id: its last attempt.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow.sdk import TaskGroup


def llm_batch_step(
    group_id: str,
    *,
    max_item_retries: int = 2,
    output_format: str = "jsonl",
    sensor_kwargs: Mapping[str, Any] | None = None,
    submit_operator_class: type[Any] | None = None,
    cleanup: str = "after_results",
    min_success_rate: float | None = None,
    max_batch_age: Any = None,
    on_gate_breach: str = "fail",
    allow_failed_batches: bool = False,
    sink: Any = None,
    **submit_kwargs: Any,
) -> TaskGroup:
    """Build the step inside the current DAG; ``group >> downstream`` waits for ``final``.

    :param group_id: the TaskGroup's id (tasks are ``{group_id}.submit``, ``{group_id}.final``, ...).
    :param max_item_retries: how many retry rounds at most (0: no retry round).
    :param output_format: of every results file and of the final output.
    :param sensor_kwargs: passed to every ``LLMBatchCompletionSensor`` (``poll_interval``, ...).
    :param submit_operator_class: a subclass of ``LLMBatchSubmitOperator`` to use for every submit
        (for custom item loading or instrumentation); default the class itself.
    :param cleanup: passed to every ``LLMBatchResultsOperator``: what to delete at the provider
        once a round's results are written (``"after_results"``, ``"after_results_and_batches"``,
        ``"never"``).
    :param min_success_rate: a quality gate on ``final`` (after the retry rounds, not on each
        round): the share of input ids (0..1) that must succeed; see ``on_gate_breach``.
    :param max_batch_age: seconds or a ``timedelta``: every wait task warns (once) when its batches
        run past it, and ``final``'s summary reports a round that took longer.
    :param on_gate_breach: ``"fail"`` (default: ``final`` fails, naming the rate and the top error
        types) or ``"warn"`` (``final`` logs a warning and succeeds; the summary's ``gates`` says so).
    :param allow_failed_batches: a batch that failed as a whole (validation, billing) gives its items
        permanent failed rows; the rounds and the final output go on, and ``final`` then fails naming
        the batches unless this is ``True``.
    :param sink: also write the final rows (one per input id) to a table, e.g.
        ``BigQuerySink("project.dataset.labels")``; with it, ``reuse={"table": ...}`` keeps the
        answers in BigQuery through the sink's connection (``docs/reuse.md``).
    :param submit_kwargs: passed to the first ``LLMBatchSubmitOperator`` (items, model, prompt...).
        ``conn_id``, ``provider_limits``, ``queue_quota``, ``work_dir`` and ``timeout`` also apply to
        the retries. ``reuse=`` (``docs/reuse.md``) answers unchanged items from earlier runs: the
        first round submits only the others, the retry rounds store the answers they get, and
        ``final`` has the reused rows too (marked ``reused_from``). ``dry_run=True`` checks and
        plans the first round without calling the provider;
        every task after it is then skipped.
    """
    from airflow_llm_batch.operators.consolidate import LLMBatchConsolidateOperator
    from airflow_llm_batch.operators.results import LLMBatchResultsOperator
    from airflow_llm_batch.operators.submit import LLMBatchSubmitOperator
    from airflow_llm_batch.sensors.completion import LLMBatchCompletionSensor

    if max_item_retries < 0:
        raise ValueError("max_item_retries must be 0 or more")
    submit_class = submit_operator_class or LLMBatchSubmitOperator
    sensor_kwargs = {**({"max_batch_age": max_batch_age} if max_batch_age is not None else {}), **(sensor_kwargs or {})}
    shared = ("conn_id", "provider_limits", "queue_quota", "timeout", "retries", "retry_delay")
    retry_kwargs = {k: submit_kwargs[k] for k in shared if k in submit_kwargs}
    with TaskGroup(group_id=group_id) as group:
        submit = submit_class(task_id="submit", **submit_kwargs)
        wait = LLMBatchCompletionSensor(task_id="wait", manifest=submit.output, **dict(sensor_kwargs or {}))
        # Results read the sensor's manifest: it names every wave's batches under a queue quota.
        # Results tasks let failed batches through, so every round and the final output are written;
        # ``final`` fails at the end of the step (unless allow_failed_batches).
        results = LLMBatchResultsOperator(
            task_id="results",
            manifest=wait.output,
            output_format=output_format,
            cleanup=cleanup,
            allow_failed_batches=True,
        )
        submit >> wait >> results
        summaries = [results.output]
        previous = results
        for round_number in range(1, max_item_retries + 1):
            prefix = f"retry_{round_number}"
            retry = submit_class(task_id=f"{prefix}_submit", retry_of=previous.output, **retry_kwargs)
            retry_wait = LLMBatchCompletionSensor(
                task_id=f"{prefix}_wait", manifest=retry.output, **dict(sensor_kwargs or {})
            )
            retry_results = LLMBatchResultsOperator(
                task_id=f"{prefix}_results",
                manifest=retry_wait.output,
                output_format=output_format,
                cleanup=cleanup,
                allow_failed_batches=True,
            )
            previous >> retry >> retry_wait >> retry_results
            summaries.append(retry_results.output)
            previous = retry_results
        # The XComArgs in ``summaries`` make every Results task an upstream of ``final``.
        LLMBatchConsolidateOperator(
            task_id="final",
            summaries=summaries,
            output_format=output_format,
            min_success_rate=min_success_rate,
            max_batch_age=max_batch_age,
            on_gate_breach=on_gate_breach,
            allow_failed_batches=allow_failed_batches,
            sink=sink,
        )
    return group
