"""End-to-end fixtures: one throwaway Airflow home per test session, DAG runs through `airflow dags test`."""

from __future__ import annotations

import itertools
import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from airflow_llm_batch.batch.records import JobKey
from airflow_llm_batch.testing import AirflowSandbox

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "dags_examples"
TEST_DAGS = Path(__file__).parent / "dags"
API_KEY = "e2e-test-key"
SMALL_BATCH = 80
GCP_PROJECT = "test-project"
# Amazon Bedrock on the emulated AWS endpoint: dummy keys, the bucket the records go to.
AWS_KEY_ID = "AKIAE2ETEST00000"
BEDROCK_BUCKET = "llm-batch-e2e"


def bedrock_bucket(emulator: Any) -> Any:
    """Create the records bucket in the emulated S3 (each test's emulator starts empty); the S3 client."""
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=emulator.aws_endpoint_url,
        region_name="us-east-1",
        aws_access_key_id=AWS_KEY_ID,
        aws_secret_access_key=API_KEY,
    )
    s3.create_bucket(Bucket=BEDROCK_BUCKET)
    return s3


def bigquery_client(emulator: Any) -> Any:
    """A real ``google.cloud.bigquery.Client`` on the emulator's BigQuery, as the tests' own view."""
    from airflow_llm_batch.io.bigquery import GoogleSettings

    return GoogleSettings(project=GCP_PROJECT, bigquery_endpoint=emulator.bigquery_url, token="t").bigquery_client()


class DagRunner:
    """Runs DAGs in the session's sandbox; each run gets its own logical date (its own run id)."""

    _dates = (f"2026-{month:02d}-{day:02d}" for month, day in itertools.product(range(1, 13), range(1, 29)))

    def __init__(self, sandbox: AirflowSandbox, emulator: Any) -> None:
        self.sandbox = sandbox
        self.emulator = emulator

    def run(
        self, dag_id: str, check: bool = True, env: dict[str, str] | None = None, conf: dict[str, Any] | None = None
    ) -> tuple[str, Any]:
        logical_date = next(self._dates)
        return logical_date, self.sandbox.dags_test(dag_id, logical_date, check=check, env=env, conf=conf)

    def run_id(self, dag_id: str, logical_date: str) -> str:
        with sqlite3.connect(self.sandbox.home / "airflow.db") as db:
            [(run_id,)] = db.execute(
                "SELECT run_id FROM dag_run WHERE dag_id = ? AND logical_date LIKE ?", (dag_id, f"{logical_date}%")
            ).fetchall()
        return str(run_id)

    def job_dir(self, dag_id: str, logical_date: str, task_id: str = "submit") -> Path:
        key = JobKey(dag_id, task_id, self.run_id(dag_id, logical_date))
        return self.sandbox.work_dir.joinpath(*key.path_parts()) / "attempt-1"

    def results(self, dag_id: str, logical_date: str, task_id: str = "submit") -> list[dict[str, Any]]:
        path = self.job_dir(dag_id, logical_date, task_id) / "results" / "results.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()]

    def xcoms(self, dag_id: str, logical_date: str) -> dict[tuple[str, str], bytes]:
        """Raw XCom values of one run, by (task_id, key), read from the metadata DB."""
        with sqlite3.connect(self.sandbox.home / "airflow.db") as db:
            rows = db.execute(
                "SELECT task_id, key, value FROM xcom WHERE dag_id = ? AND run_id = ?",
                (dag_id, self.run_id(dag_id, logical_date)),
            ).fetchall()
        return {(task, key): value if isinstance(value, bytes) else str(value).encode() for task, key, value in rows}


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory, llm_batch_emulator_server: Any) -> AirflowSandbox:
    return make_sandbox(tmp_path_factory.mktemp("airflow-home"), llm_batch_emulator_server)


def make_sandbox(home: Path, emulator: Any, env: dict[str, str] | None = None) -> AirflowSandbox:
    """An Airflow home with the example and test DAGs and connections to the emulator, migrated."""
    dags = home / "dags"
    dags.mkdir()
    for folder in (EXAMPLES, TEST_DAGS):
        for dag_file in folder.glob("*.py"):
            shutil.copy(dag_file, dags / dag_file.name)
    box = AirflowSandbox(home, dags, env=env)
    urls = {
        "openai": emulator.openai_base_url,
        "anthropic": emulator.anthropic_base_url,
        "gemini": emulator.gemini_base_url,
    }
    for provider, url in urls.items():
        box.set_connection(f"llm_batch_{provider}", f"llm_batch_{provider}", host=url, password=API_KEY)
        # The same, with the per-batch request limit lowered through the connection: forces splitting.
        box.set_connection(
            f"small_batches_{provider}",
            f"llm_batch_{provider}",
            host=url,
            password=API_KEY,
            extra={"limits": {"max_requests": SMALL_BATCH}},
        )
        # Five items a chunk (100 items: 20 chunks) and no SDK retries, for the waves under a quota.
        box.set_connection(
            f"waves_{provider}",
            f"llm_batch_{provider}",
            host=url,
            password=API_KEY,
            extra={"limits": {"max_requests": 5}, "max_retries": 0},
        )
    # OpenAI batches on the Responses API, chosen by the connection (``endpoint`` extra).
    box.set_connection(
        "llm_batch_openai_responses",
        "llm_batch_openai",
        host=urls["openai"],
        password=API_KEY,
        extra={"endpoint": "responses"},
    )
    # An OpenAI-compatible host (the emulated OpenAI; tests switch it to refusing batch metadata).
    box.set_connection(
        "llm_batch_openai_compatible", "llm_batch_openai_compatible", host=urls["openai"], password=API_KEY
    )
    # Azure OpenAI: the emulated resource, on its versioned path (the model names a deployment).
    box.set_connection(
        "llm_batch_azure_openai",
        "llm_batch_azure_openai",
        host=emulator.azure_endpoint,
        password=API_KEY,
        extra={"api_version": "2025-04-01-preview"},
    )
    # BigQuery (source and sink) and Vertex AI; the token is any string, the emulator does not check it.
    google = {"project": GCP_PROJECT, "bigquery_endpoint": emulator.bigquery_url}
    box.set_connection("google_cloud_default", "google_cloud_platform", password=API_KEY, extra=google)
    vertex = {**google, "location": "us-central1", "bigquery_dataset": "llm_batch"}
    box.set_connection(
        "llm_batch_vertex", "llm_batch_vertex", host=emulator.vertex_base_url, password=API_KEY, extra=vertex
    )
    # Amazon Bedrock through an AWS connection of the Amazon provider's type (read without that
    # provider): keys in login and password, the emulator as the one endpoint of Bedrock and S3. No
    # IMDS: botocore must never look for credentials on the machine.
    box.env["AWS_EC2_METADATA_DISABLED"] = "true"
    bedrock = {
        "region_name": "us-east-1",
        "endpoint_url": emulator.aws_endpoint_url,
        "bedrock_role_arn": "arn:aws:iam::123456789012:role/bedrock-batch",
        "bedrock_s3_uri": f"s3://{BEDROCK_BUCKET}/llm-batch",
        # The fault matrix's retry rounds resend a few items; the emulator keeps its own minimum
        # (100, AWS's default) unless a test lowers it.
        "min_records": 1,
    }
    box.set_connection("llm_batch_bedrock", "aws", login=AWS_KEY_ID, password=API_KEY, extra=bedrock)
    # Five records a job and no SDK retries, for the waves under the jobs quota (tests/e2e/test_waves.py).
    waves = {**bedrock, "limits": {"max_requests": 5}, "max_retries": 0}
    box.set_connection("waves_bedrock", "aws", login=AWS_KEY_ID, password=API_KEY, extra=waves)
    box.migrate()
    return box


@pytest.fixture
def dag_runner(sandbox: AirflowSandbox, llm_batch_emulator: Any) -> DagRunner:
    return DagRunner(sandbox, llm_batch_emulator)
