"""``@task.llm_batch``: a TaskFlow function returns the items (or their URI); the step does the rest.

::

    @task.llm_batch(model="gpt-4.1-mini", prompt_template="Triage: {body}", id_field="ticket_id",
                    response_schema=SCHEMA, conn_id="llm_batch_openai")
    def tickets(ds=None):
        return [{"ticket_id": "T-1", "body": "..."}]          # or "s3://bucket/tickets.jsonl"

    tickets() >> report   # the step's TaskGroup; ``report`` waits for the consolidated output

Calling the decorated function in a DAG adds a task named after it (the function, run by Airflow's
``@task``) and ``llm_batch_step(f"{name}_batch", items=<its return value>, ...)``; every keyword of the
decorator goes to ``llm_batch_step`` (and from there to ``LLMBatchSubmitOperator``). Airflow finds this
module through ``get_provider_info()["task-decorators"]``, so nothing here is imported at DAG parse
time unless a DAG uses ``task.llm_batch``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any


def llm_batch_task(
    python_callable: Callable[..., Any] | None = None,
    multiple_outputs: bool | None = None,
    **step_kwargs: Any,
) -> Any:
    """The ``task.llm_batch`` decorator (with or without arguments).

    :param python_callable: the function that returns the items: a list of dicts, or the URI of a
        JSONL/Parquet file or folder, as ``LLMBatchSubmitOperator(items=...)`` takes them.
    :param multiple_outputs: not supported (the function returns one value, the items); Airflow
        passes it to every task decorator.
    :param step_kwargs: ``group_id`` (default ``<function name>_batch``), ``task_id`` of the item
        task (default the function's name), and everything ``llm_batch_step`` takes.
    """
    if multiple_outputs:
        raise ValueError("@task.llm_batch: the function returns the items as one value; drop multiple_outputs")
    if "items" in step_kwargs:
        raise ValueError("@task.llm_batch: the decorated function returns the items; do not pass items=")

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def build(*args: Any, **kwargs: Any) -> Any:
            from airflow.sdk import task

            from airflow_llm_batch.task_group import llm_batch_step

            options = dict(step_kwargs)
            task_id = options.pop("task_id", function.__name__)
            group_id = options.pop("group_id", f"{function.__name__}_batch")
            items = task(task_id=task_id)(function)(*args, **kwargs)
            group = llm_batch_step(group_id, items=items, **options)
            return group

        return build

    return decorate(python_callable) if python_callable is not None else decorate
