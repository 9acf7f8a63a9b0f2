"""What the three tasks share: the job key of a task instance, the work dir, the backend of a manifest."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NoReturn

# The operators import this module when a DAG file is parsed: what runs only in a task (the hook,
# the records) is imported there, so parsing does not pay for it.
if TYPE_CHECKING:
    from airflow_llm_batch.batch.records import JobKey
    from airflow_llm_batch.hooks.llm_batch import LLMBatchHook


def job_key_of(context: Any) -> JobKey:
    """``(dag_id, task_id, run_id, map_index)``: the same on every retry of one task instance."""
    from airflow_llm_batch.batch.records import JobKey

    ti = context["ti"]
    map_index = getattr(ti, "map_index", -1)
    return JobKey(
        dag_id=ti.dag_id,
        task_id=ti.task_id,
        run_id=ti.run_id,
        map_index=-1 if map_index is None else int(map_index),
    )


def resolve_work_dir(explicit: str | None, hook: LLMBatchHook, task_executor: str | None = None) -> Any:
    """The operator's ``work_dir``, else the connection's, else ``[llm_batch] work_dir``, else
    ``$AIRFLOW_HOME/llm_batch``; checked for its filesystem and, when local, for a shared disk."""
    from airflow_llm_batch.work_dir import resolve_work_dir as resolve

    return resolve(explicit, hook.connection_extra(), task_executor)


def storage_path(uri: str) -> Any:
    """A work-dir URI from a manifest (written by another task, perhaps on another worker)."""
    from airflow_llm_batch.work_dir import open_work_dir

    return open_work_dir(uri)


class LiteralItems:
    """A literal list of items, kept out of Jinja: item text is data, never a template.

    Airflow renders every string inside a list in ``template_fields``; wrapping the list keeps a
    ticket that contains ``{{ }}`` exactly as written, while an XComArg or a URI string is still
    resolved or rendered as usual.
    """

    __slots__ = ("items",)

    def __init__(self, items: list[Any]) -> None:
        self.items = items

    def __repr__(self) -> str:
        return f"<{len(self.items)} literal items>"


def skip(reason: str) -> NoReturn:
    """Skip the task (and, through trigger rules, the tasks that wait on it)."""
    try:
        from airflow.sdk.exceptions import AirflowSkipException  # type: ignore[attr-defined,unused-ignore]  # 3.2+
    except ImportError:  # Airflow 3.1
        from airflow.exceptions import AirflowSkipException  # type: ignore[no-redef,unused-ignore]
    raise AirflowSkipException(reason)


def gates_of(min_success_rate: Any, max_batch_age: Any, on_gate_breach: str) -> Any:
    """The checked quality gates, or ``None`` when none is set (then ``batch/`` is not imported at parse)."""
    if min_success_rate is None and max_batch_age is None:
        return None
    from airflow_llm_batch.batch.gates import QualityGates

    return QualityGates.of(min_success_rate, max_batch_age, on_gate_breach)


def fail_for_good(message: str) -> NoReturn:
    """Fail the task without retries: running it again cannot change the outcome."""
    try:
        from airflow.sdk.exceptions import AirflowFailException  # type: ignore[attr-defined,unused-ignore]  # 3.2+
    except ImportError:  # Airflow 3.1
        from airflow.exceptions import AirflowFailException  # type: ignore[no-redef,unused-ignore]
    raise AirflowFailException(message)


def run_gated(context: Any, finish: Any, step: bool = False) -> Any:
    """Run a finish use case and send its summary's metrics (``metrics.py``; ``step``: the final
    task's). When a quality gate fails it, keep its summary as the task's XCom (the dashboard and
    downstream tasks read it) and fail the task without retries."""
    from airflow_llm_batch.exceptions import QualityGateError
    from airflow_llm_batch.metrics import emit

    try:
        summary = finish()
    except QualityGateError as error:
        emit(error.summary, context, step)
        context["ti"].xcom_push(key="return_value", value=error.summary)
        fail_for_good(str(error))
    emit(summary, context, step)
    return summary
