"""What a whole run leaves in the task logs: one progress vocabulary, no HTTP request lines, no keys.

Each test is a real ``airflow dags test`` run of the triage example; the logs searched are the
command's output and every log file under the Airflow home.
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3

import pytest

from tests.e2e.conftest import API_KEY
from tests.e2e.test_providers import MODELS

pytestmark = pytest.mark.e2e


def _everything_logged(sandbox, run) -> str:
    files = [p.read_text(errors="replace") for p in (sandbox.home / "logs").rglob("*") if p.is_file()]
    return "\n".join([run.stdout, run.stderr, *files])


@pytest.mark.parametrize("provider", sorted(MODELS))
def test_a_run_logs_progress_in_one_vocabulary_no_http_request_lines_and_no_key(dag_runner, sandbox, provider):
    dag_runner.emulator.update_scenario(completion_seconds=2.0)
    env = {"LLM_BATCH_TRIAGE_CONN_ID": f"llm_batch_{provider}", "LLM_BATCH_TRIAGE_MODEL": MODELS[provider]}
    logical_date, run = dag_runner.run("nightly_ticket_triage", env=env)
    logged = _everything_logged(sandbox, run)
    progress = re.findall(r"Batch \S+: ([a-z]+)", logged)
    assert progress and set(progress) <= {"waiting", "running", "finishing", "completed"}
    assert "HTTP Request" not in logged
    assert "item(s) failed at the provider (the results task also counts" in logged
    # The connection's password (the API key) is nowhere: logs, XCom, metadata DB, work dir.
    _assert_nowhere(API_KEY, dag_runner, sandbox, logged, logical_date)


def _database_dump(sandbox) -> str:
    # Through SQLite, not by reading the file: closing another handle on the file drops this
    # process's SQLite locks on it (POSIX advisory locks), which broke later reads of the DB.
    with contextlib.closing(sqlite3.connect(sandbox.home / "airflow.db")) as db:
        return "\n".join(db.iterdump())


def _assert_nowhere(secret, dag_runner, sandbox, logged, logical_date, dag_id="nightly_ticket_triage"):
    assert secret not in logged
    xcoms = dag_runner.xcoms(dag_id, logical_date)
    assert xcoms, f"no XCom found for {dag_id} {logical_date}: the search would prove nothing"
    assert all(secret.encode() not in value for value in xcoms.values())
    dump = _database_dump(sandbox)
    assert secret not in dump and secret.encode().hex().upper() not in dump.upper()  # blobs dump as X'hex'
    work = [p for p in sandbox.work_dir.rglob("*") if p.is_file()] if sandbox.work_dir.exists() else []
    assert all(secret.encode() not in p.read_bytes() for p in work)


@pytest.mark.parametrize("provider", sorted(MODELS))
def test_a_key_in_the_connection_host_is_refused_and_never_logged_or_stored(dag_runner, sandbox, provider):
    """``https://key@host``: the run fails with what to change, and the key is nowhere afterwards."""
    secret = f"sk-in-the-host-{provider}-5e3f"
    url = getattr(dag_runner.emulator, f"{provider}_base_url").replace("://", f"://{secret}@", 1)
    conn = {"conn_type": f"llm_batch_{provider}", "host": url, "password": "e2e-test-key"}
    env = {
        "AIRFLOW_CONN_HOST_WITH_KEY": json.dumps(conn),
        "LLM_BATCH_TRIAGE_CONN_ID": "host_with_key",
        "LLM_BATCH_TRIAGE_MODEL": MODELS[provider],
    }
    logical_date, run = dag_runner.run("nightly_ticket_triage", check=False, env=env)

    logged = _everything_logged(sandbox, run)
    assert "carries credentials before '@'" in logged and "password field" in logged
    _assert_nowhere(secret, dag_runner, sandbox, logged, logical_date)
    assert not [r for r in dag_runner.emulator.requests() if secret in json.dumps(r)]
