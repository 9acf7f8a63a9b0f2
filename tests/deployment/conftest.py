"""Fixtures of the deployment tests: a moto S3 server for the session, an Airflow home whose work dir is on it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_llm_batch.testing import AirflowSandbox
from tests.deployment.servers import MotoS3
from tests.e2e.conftest import DagRunner, make_sandbox

# The connection is named in the URI: without it ObjectStoragePath uses boto's default credentials.
WORK_DIR_KEY = "work"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/deployment/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.deployment)


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoS3]:
    server = MotoS3().start()
    try:
        yield server
    finally:
        server.stop()


def s3_work_dir_env(moto_s3: MotoS3) -> dict[str, str]:
    return {
        "AIRFLOW__LLM_BATCH__WORK_DIR": f"s3://aws_default@{moto_s3.bucket}/{WORK_DIR_KEY}",
        "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(moto_s3.connection()),
    }


@pytest.fixture(scope="session")
def s3_sandbox(
    tmp_path_factory: pytest.TempPathFactory, llm_batch_emulator_server: Any, moto_s3: MotoS3
) -> AirflowSandbox:
    box = make_sandbox(tmp_path_factory.mktemp("s3-airflow-home"), llm_batch_emulator_server, s3_work_dir_env(moto_s3))
    box.work_dir = moto_s3.path(WORK_DIR_KEY)  # where the tests read what the DAG runs wrote
    return box


@pytest.fixture
def s3_dag_runner(s3_sandbox: AirflowSandbox, llm_batch_emulator: Any) -> DagRunner:
    return DagRunner(s3_sandbox, llm_batch_emulator)
