"""The work dir as a deployment sees it: which filesystem serves its URI, and whether every worker sees it.

Runs in the task process (never at DAG parse time). Two mistakes found only on a real deployment are
caught here, before any API call (docs/deployment.md):

- a work dir on an object store whose filesystem is not installed on this worker: Airflow says
  "No filesystem registered for scheme s3" or "Install s3fs"; we name the extra to install;
- a local work dir under an executor whose workers share no disk (Celery, Kubernetes, Edge, ECS):
  the submit, wait and results tasks of one run land on different machines, so the results task
  finds no request files and a retried submit finds no state file and pays again. That fails the
  task unless ``[llm_batch] local_work_dir_shared = True`` says the folder is a shared mount.

Nothing here (nor anywhere in the package) lists a work-dir folder: fsspec caches listings per
filesystem instance, and a cached listing taken before another worker wrote a file makes
``exists()`` and ``open()`` of that file fail in this process. Every read names its file. The one
exception is the reuse store's folder (``batch/reuse_store.py``, with ``reuse=``), whose segments
other runs name: it is listed with the filesystem's cached listings dropped before and after.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from airflow_llm_batch.exceptions import ConfigurationError

log = logging.getLogger(__name__)

# scheme -> the extra of this package that installs its filesystem (pyproject.toml).
EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs"}
LOCAL_SCHEMES = ("", "file", "local")
# Executors whose tasks all run on the scheduler's machine; any other executor is taken to run
# tasks on machines that share no disk (a custom executor on one host can say so with the setting).
SAME_HOST_EXECUTORS = ("LocalExecutor", "SequentialExecutor", "DebugExecutor")


def open_work_dir(uri: str) -> Any:
    """``ObjectStoragePath(uri)`` with its filesystem loaded, or a ConfigurationError naming the extra."""
    from airflow.sdk import ObjectStoragePath

    path = ObjectStoragePath(uri)
    try:
        path.fs  # noqa: B018  (loads the scheme's filesystem now, not at the first write)
    except (ImportError, ValueError) as error:
        raise ConfigurationError(missing_filesystem_message(uri, str(path.protocol), error)) from None
    return path


def task_work_dir(ti: Any, conn_id: str, work_dir: str | None = None) -> Any:
    """The folder of this task instance in the work dir its LLM step uses, created.

    ``{work dir}/{dag_id}/{run_id}/{task_id}/``, the work dir chosen as the submit task chooses it
    (``work_dir``, else the connection's ``work_dir`` extra, else ``[llm_batch] work_dir``) and
    checked the same way. For tasks that prepare a step's input (an export, a query dump): the file
    lands where the step's workers read, an object store in production, never the local disk.

    :param ti: the task instance (``ti`` in the task's context).
    :param conn_id: the step's LLM connection.
    :param work_dir: the step's own ``work_dir``, if it sets one.
    """
    from airflow_llm_batch.batch.records import JobKey
    from airflow_llm_batch.hooks.llm_batch import LLMBatchHook

    root = resolve_work_dir(work_dir, LLMBatchHook(conn_id).connection_extra(), getattr(ti.task, "executor", None))
    map_index = getattr(ti, "map_index", -1)
    key = JobKey(ti.dag_id, ti.task_id, ti.run_id, -1 if map_index is None else int(map_index))
    folder = root.joinpath(*key.path_parts())
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def resolve_work_dir(explicit: str | None, connection_extra: dict[str, Any], task_executor: str | None = None) -> Any:
    """The operator's ``work_dir``, else the connection's ``work_dir`` extra, else ``[llm_batch] work_dir``,
    else ``$AIRFLOW_HOME/llm_batch``; its filesystem loaded and, when local, checked for a shared disk."""
    from airflow_llm_batch.config import default_work_dir

    chosen = explicit or connection_extra.get("work_dir") or default_work_dir()
    path = open_work_dir(str(chosen))
    check_shared(path, task_executor)
    return path


def missing_filesystem_message(uri: str, scheme: str, error: Exception) -> str:
    extra = EXTRAS.get(scheme)
    if extra:
        fix = f"pip install 'airflow-llm-batch[{extra}]'"
    else:
        fix = f"install the Airflow provider that registers an ObjectStorage filesystem for {scheme}://"
    return (
        f"{uri} needs a filesystem for {scheme}:// that this worker does not have ({error}). "
        f"Install it on every worker, the scheduler and the triggerer: {fix}"
    )


def is_local(path: Any) -> bool:
    return str(getattr(path, "protocol", "") or "") in LOCAL_SCHEMES


def check_shared(path: Any, task_executor: str | None = None) -> None:
    """Fail when a local work dir meets an executor whose workers do not share a disk.

    :param path: the resolved work dir.
    :param task_executor: the task's own ``executor=`` (Airflow's multiple executors), if any.
    """
    from airflow_llm_batch.config import airflow_conf

    if not is_local(path) or _runs_in_one_process():
        return
    conf = airflow_conf()
    if conf.getboolean("llm_batch", "local_work_dir_shared", fallback=False):
        return
    executor = executor_of(str(conf.get("core", "executor", fallback="") or ""), task_executor)
    if not executor or executor in SAME_HOST_EXECUTORS:
        return
    raise ConfigurationError(
        f"The work dir {path} is a local folder, but tasks run on the {executor}, whose workers share no "
        "disk: the results task or a retry on another worker would not find the request and state files "
        "(and a retried submit would pay again). Use an object store that every worker reaches, naming its "
        "connection, e.g. [llm_batch] work_dir = s3://aws_default@my-bucket/llm-batch "
        "(pip install 'airflow-llm-batch[s3]' or '[gcs]'). If this folder is a shared mount that every "
        "worker sees (NFS, EFS, a ReadWriteMany volume), set [llm_batch] local_work_dir_shared = True. "
        "See docs/deployment.md."
    )


def executor_of(configured: str, task_executor: str | None) -> str:
    """The class name of the executor a task runs on: its own ``executor=`` if it names one of the
    configured executors, else the first configured (Airflow's default). ``""`` when none is set."""
    entries = [entry.strip() for entry in configured.split(",") if entry.strip()]
    if not entries:
        return ""
    chosen = entries[0]
    if task_executor:
        for entry in entries:
            alias, _, target = entry.rpartition(":") if ":" in entry else ("", "", entry)
            if task_executor in (entry, alias, target, target.rsplit(".", 1)[-1]):
                chosen = entry
                break
    return chosen.rpartition(":")[2].rsplit(".", 1)[-1]


def _runs_in_one_process() -> bool:
    """``airflow dags test`` and ``airflow tasks test`` run every task in the CLI's own process, on
    one disk, whatever executor the configuration names."""
    args = [arg for arg in sys.argv[1:3]]
    return args in (["dags", "test"], ["tasks", "test"])
