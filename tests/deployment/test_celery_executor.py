"""A production-shaped deployment: CeleryExecutor, two workers that share no disk, the work dir in S3.

PostgreSQL (metadata DB and Celery result backend) and Redis (broker) are Debian's packages
(``make services``), started here on free loopback ports in temp dirs, with moto's S3 server and
the emulator. Airflow's API server, scheduler, DAG processor and triggerer run as separate
processes; two ``airflow celery worker`` processes each have their own ``AIRFLOW_HOME`` (logs,
airflow.cfg) and ``TMPDIR``. Only the DAG files and ``[llm_batch] work_dir`` are the same for
everyone, as on a real deployment.

The triage step with one retry round runs through the REST API. Its results tasks go to the queue
only the second worker serves, the rest to the first worker, so every hand-over crosses workers.
What a user would check: the run succeeded; tasks ran on both workers (their task logs are in
each worker's own home); one final row per input id; one batch per submit task at the provider.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_llm_batch.batch.records import JobKey
from airflow_llm_batch.emulator import Emulator, Scenario
from tests.deployment.conftest import s3_work_dir_env
from tests.deployment.servers import MotoS3, Postgres, Redis
from tests.e2e.test_triggerer_restart import ComponentStack, _free_ports
from tests.ui.conftest import _wait_for_dag, ui_script

DAG_ID = "deploy_celery_triage"
DAG_FILE = Path(__file__).parent / "dags" / f"{DAG_ID}.py"
IDS = sorted(f"C-{n:03d}" for n in range(40))
API_KEY = "celery-test-key"
RUN_ID = "celery_run"
RUN_TIMEOUT_SECONDS = 360
WORKERS = {"worker_a": "default", "worker_b": "results"}  # worker -> the Celery queue it serves


class CeleryStack(ComponentStack):
    """The Airflow components on Postgres with the CeleryExecutor, plus two Celery workers."""

    def __init__(self, *args: Any, root: Path, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.root = root
        self.worker_homes: dict[str, Path] = {}

    def start_worker(self, name: str, queue: str) -> None:
        home = self.root / name
        tmp = home / "tmp"
        tmp.mkdir(parents=True)
        self.worker_homes[name] = home
        env = {**self.environment(), "AIRFLOW_HOME": str(home), "TMPDIR": str(tmp)}
        args = ["celery", "worker", "--queues", queue, "--concurrency", "2", "--skip-serve-logs"]
        args += ["--celery-hostname", f"{name}@%h", "--without-gossip", "--without-mingle"]
        self.components[name] = ui_script.launch(args, env, home, self.log_path / f"{name}.log")

    def tasks_logged_by(self, name: str) -> set[str]:
        """The task ids whose logs the worker wrote in its own home (one folder per task)."""
        logs = self.worker_homes[name] / "logs" / f"dag_id={DAG_ID}"
        return {path.name.removeprefix("task_id=") for path in logs.glob("run_id=*/task_id=*")}


@pytest.fixture(scope="module")
def servers(moto_s3: MotoS3) -> Iterator[dict[str, Any]]:
    started: list[Any] = []
    try:
        for server in (Postgres(), Redis()):
            started.append(server.start())
        yield {"postgres": started[0], "redis": started[1], "s3": moto_s3}
    finally:
        for server in reversed(started):
            server.stop()


@pytest.fixture(scope="module")
def celery_stack(servers: dict[str, Any]) -> Iterator[CeleryStack]:
    from cryptography.fernet import Fernet

    root = Path(tempfile.mkdtemp(prefix="llm-batch-celery-"))
    home, dags = root / "scheduler", root / "dags"
    home.mkdir()
    dags.mkdir()
    shutil.copy(DAG_FILE, dags)
    # A batch takes a few seconds; the emulator fails a quarter of the items with a retryable error.
    emulator = Emulator(Scenario(completion_seconds=6.0, api_key=API_KEY, item_errors={"server_error": 0.25})).start()
    postgres, redis = servers["postgres"], servers["redis"]
    api_port, trigger_log_port = _free_ports(2)
    env = {
        **s3_work_dir_env(servers["s3"]),
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": postgres.url,
        "AIRFLOW__CELERY__BROKER_URL": redis.url,
        # The result backend needs the driver in its URL (only psycopg2 is installed).
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + postgres.url,
        # Every component reads these from its own airflow.cfg otherwise, each generated apart.
        "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
        "AIRFLOW__API_AUTH__JWT_SECRET": Fernet.generate_key().decode(),
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(trigger_log_port),
    }
    stack = CeleryStack(home, dags, api_port, emulator, api_key=API_KEY, env=env, root=root)
    try:
        stack.start()
        for name, queue in WORKERS.items():
            stack.start_worker(name, queue)
        yield stack
    finally:
        stack.stop()
        shutil.rmtree(root, ignore_errors=True)


def _wait_for_run(stack: CeleryStack) -> dict[str, Any]:
    path = f"/api/v2/dags/{DAG_ID}/dagRuns/{RUN_ID}"
    deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        run = dict(stack.request("GET", path))
        if run["state"] in ("success", "failed"):
            return run
        stack._check_alive()
        time.sleep(2)
    states = {t["task_id"]: t["state"] for t in stack.request("GET", f"{path}/taskInstances")["task_instances"]}
    raise AssertionError(f"the run did not end within {RUN_TIMEOUT_SECONDS}s: {states}; logs in {stack.log_path}")


def test_the_triage_step_runs_on_two_celery_workers_with_the_work_dir_in_s3(celery_stack, moto_s3):
    stack = celery_stack
    _wait_for_dag(stack, DAG_ID)
    stack.request("PATCH", f"/api/v2/dags/{DAG_ID}", {"is_paused": False})
    stack.request("POST", f"/api/v2/dags/{DAG_ID}/dagRuns", {"dag_run_id": RUN_ID, "logical_date": None})
    run = _wait_for_run(stack)
    tasks = stack.request("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{RUN_ID}/taskInstances")["task_instances"]
    states = {t["task_id"]: t["state"] for t in tasks}
    assert run["state"] == "success", f"{states}; logs in {stack.log_path}"

    # The submits and sensors ran on the first worker, the results on the second: each results task
    # read what a submit on the other machine wrote, through S3.
    on_a, on_b = stack.tasks_logged_by("worker_a"), stack.tasks_logged_by("worker_b")
    assert {"triage.submit", "triage.retry_1_submit", "triage.final"} <= on_a
    assert {"triage.results", "triage.retry_1_results"} == on_b
    assert states["triage.retry_1_submit"] == "success"  # the retry round had items to resend

    key = JobKey(DAG_ID, "triage.submit", RUN_ID)
    final = moto_s3.path("work").joinpath(*key.path_parts()) / "final" / "final.jsonl"
    rows = [json.loads(line) for line in final.read_text().splitlines()]
    assert sorted(r["id"] for r in rows) == IDS, "one final row per input id"
    assert max(r["attempt"] for r in rows) == 2

    ledger = stack.emulator.ledger()
    assert ledger["duplicate_batches"] == []
    batches_per_job = Counter(b["job_key"] for b in ledger["batches"])
    assert sorted(batches_per_job.values()) == [1, 1], "one batch per submit task (40 items fit one batch)"
    billed = Counter(item["custom_id"] for item in ledger["billed"])
    succeeded = sorted(r["id"] for r in rows if r["status"] == "succeeded")
    assert sorted(billed) == succeeded and max(billed.values()) == 1, "each answer kept was paid for once"
