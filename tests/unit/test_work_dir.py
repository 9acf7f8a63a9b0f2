"""The work dir's deployment checks: the missing filesystem named with its extra, the local folder that
workers of a Celery or Kubernetes executor would not share."""

from __future__ import annotations

import subprocess
import sys

import pytest

from airflow_llm_batch.exceptions import ConfigurationError
from airflow_llm_batch.operators._common import resolve_work_dir
from airflow_llm_batch.work_dir import executor_of


class _Hook:
    def __init__(self, extra=None):
        self.extra = extra or {}

    def connection_extra(self):
        return self.extra


@pytest.mark.parametrize(
    ("configured", "task_executor", "expected"),
    [
        ("", None, ""),
        ("CeleryExecutor", None, "CeleryExecutor"),
        ("LocalExecutor,CeleryExecutor", None, "LocalExecutor"),
        ("LocalExecutor,CeleryExecutor", "CeleryExecutor", "CeleryExecutor"),
        (
            "LocalExecutor, k8s:airflow.providers.cncf.kubernetes.executors.KubernetesExecutor",
            "k8s",
            "KubernetesExecutor",
        ),
        ("airflow.providers.edge3.executors.EdgeExecutor", None, "EdgeExecutor"),
        ("LocalExecutor", "NotConfigured", "LocalExecutor"),
    ],
)
def test_the_executor_of_a_task_is_its_own_else_the_default(configured, task_executor, expected):
    assert executor_of(configured, task_executor) == expected


def test_a_local_work_dir_under_celery_fails_before_anything_is_written(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "CeleryExecutor")
    work_dir = tmp_path / "wd"
    with pytest.raises(ConfigurationError) as caught:
        resolve_work_dir(str(work_dir), _Hook())
    message = str(caught.value)
    assert "CeleryExecutor" in message and "s3://aws_default@" in message
    assert "local_work_dir_shared = True" in message
    assert not work_dir.exists()


def test_a_task_on_the_kubernetes_executor_of_several_is_checked_too(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "LocalExecutor,KubernetesExecutor")
    resolve_work_dir(str(tmp_path), _Hook())  # the default executor shares the disk
    with pytest.raises(ConfigurationError, match="KubernetesExecutor"):
        resolve_work_dir(str(tmp_path), _Hook(), task_executor="KubernetesExecutor")


def test_a_shared_mount_or_a_local_executor_passes(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "CeleryExecutor")
    monkeypatch.setenv("AIRFLOW__LLM_BATCH__LOCAL_WORK_DIR_SHARED", "True")
    assert str(resolve_work_dir(str(tmp_path), _Hook())).endswith(tmp_path.name)
    monkeypatch.delenv("AIRFLOW__LLM_BATCH__LOCAL_WORK_DIR_SHARED")
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "LocalExecutor")
    assert str(resolve_work_dir(str(tmp_path), _Hook())).endswith(tmp_path.name)


def test_an_object_store_work_dir_passes_under_celery(monkeypatch):
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "CeleryExecutor")
    path = resolve_work_dir(None, _Hook({"work_dir": "s3://aws_default@bucket/llm"}))
    assert path.protocol == "s3"


def _resolve_in_fresh_process(uri, blocked_module=""):
    """A fresh interpreter, as on a worker that lacks a package: Airflow caches filesystems per process."""
    code = (
        "import sys\n"
        f"if {blocked_module!r}: sys.modules[{blocked_module!r}] = None  # import raises ImportError\n"
        "from airflow_llm_batch.operators._common import storage_path\n"
        f"storage_path({uri!r})\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_a_missing_s3fs_names_the_extra_to_install():
    run = _resolve_in_fresh_process("s3://aws_default@bucket/llm", blocked_module="s3fs")
    assert run.returncode != 0
    assert "ConfigurationError" in run.stderr
    assert "pip install 'airflow-llm-batch[s3]'" in run.stderr


def test_a_scheme_no_provider_serves_says_what_is_missing():
    run = _resolve_in_fresh_process("abfs://container/llm")
    assert "abfs://" in run.stderr and "No filesystem registered" in run.stderr
    assert "ConfigurationError" in run.stderr


def test_a_missing_gcs_filesystem_names_the_gcs_extra():
    run = _resolve_in_fresh_process("gs://google_cloud_default@bucket/llm", blocked_module="gcsfs")
    assert "pip install 'airflow-llm-batch[gcs]'" in run.stderr
