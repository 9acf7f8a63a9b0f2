"""One running Airflow (``airflow standalone``) plus the emulator for the whole UI test session.

Started the way ``make ui`` starts them (``scripts/ui.py``'s ``UiStack``), in a temporary
``AIRFLOW_HOME`` on free 127.0.0.1 ports, with only the triage example loaded, and stopped at the
end of the session. The emulator accepts one API key only, so a wrong key is refused as a real
provider would refuse it.
"""

from __future__ import annotations

import importlib.util
import shutil
import time
import urllib.error
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_llm_batch.emulator import Emulator, Scenario

ROOT = Path(__file__).resolve().parents[2]
DAG_ID = "nightly_ticket_triage"
RUN_ID = "ui_test_run"
API_KEY = "ui-test-key"
RUN_TIMEOUT_SECONDS = 240
OUTSIDER = "outsider"
GATES_DAG_ID = "e2e_gates"


def _load_ui_script() -> Any:
    spec = importlib.util.spec_from_file_location("llm_batch_ui_script", ROOT / "scripts" / "ui.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ui_script = _load_ui_script()


@pytest.fixture(scope="session")
def ui_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    home = tmp_path_factory.mktemp("ui-airflow-home")
    dags = home / "dags"
    dags.mkdir()
    shutil.copy(ROOT / "dags_examples" / f"{DAG_ID}.py", dags)
    # A step with quality gates in warn mode, for the dashboard's gate column (test_dashboard.py).
    shutil.copy(ROOT / "tests" / "e2e" / "dags" / f"{GATES_DAG_ID}.py", dags)
    # Batches take 12 s: a trigger that fires within a few seconds of the deferral can beat the
    # scheduler's handling of the sensor's first leg on a busy machine, and Airflow then fails the
    # task ("finished with state success, but the task instance's state attribute is queued").
    emulator = Emulator(Scenario(completion_seconds=12.0, api_key=API_KEY)).start()
    stack = ui_script.UiStack(
        home,
        dags,
        ui_script.free_port(),
        emulator,
        api_key=API_KEY,
        env={
            # Runs start only when the test triggers them, not on the DAG's own schedule.
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
            # A user without rights on the DAG (test_dashboard.py): SimpleAuthManager, which standalone
            # insists on, lets a signed-in user with no role read nothing.
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"admin:admin,{OUTSIDER}:",
            "E2E_GATE_MODE": "warn",
        },
    )
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def triage_run(ui_stack: Any) -> dict[str, Any]:
    """A finished run of the triage example, unpaused and triggered through the REST API."""
    _wait_for_dag(ui_stack, DAG_ID)
    ui_stack.request("PATCH", f"/api/v2/dags/{DAG_ID}", {"is_paused": False})
    ui_stack.request("POST", f"/api/v2/dags/{DAG_ID}/dagRuns", {"dag_run_id": RUN_ID, "logical_date": None})
    deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        run = ui_stack.request("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{RUN_ID}")
        if run["state"] in ("success", "failed"):
            break
        time.sleep(2)
    assert run["state"] == "success", f"the triage run ended {run['state']}; see {ui_stack.log_path}"
    return dict(run)


def _wait_for_dag(stack: Any, dag_id: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            stack.request("GET", f"/api/v2/dags/{dag_id}")
            return
        except urllib.error.HTTPError as err:
            if err.code != 404:
                raise
        time.sleep(1)
    raise AssertionError(f"DAG {dag_id} was not parsed within {timeout}s; see {stack.log_path}")
