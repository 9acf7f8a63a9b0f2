"""A triggerer that crashes while a sensor waits: a real DAG run under a real scheduler and triggerer.

`airflow dags test` runs triggers inline, so this test starts Airflow's components as separate
processes (API server, scheduler, DAG processor, triggerer; `UiStack`'s configuration, in a
temporary home on free 127.0.0.1 ports), triggers a run through the REST API, and, while the
sensor is deferred and its trigger is polling, kills the triggerer's whole process group with
SIGKILL (a crashed pod or host). A new triggerer is started a few seconds later; once it has
taken the trigger over and polled, the emulator's clock lets the batch end. What a user would
check afterwards: the run succeeded, one result row per input id, one batch per job key at the
provider (nothing paid twice), and the batch was polled before the crash and again after it, by
the new triggerer.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_llm_batch.emulator import Emulator, Scenario
from tests.e2e.conftest import TEST_DAGS
from tests.ui.conftest import _wait_for_dag, ui_script

pytestmark = pytest.mark.e2e

DAG_FILE = TEST_DAGS / "e2e_triggerer_restart.py"
IDS = sorted(f"R-{n:03d}" for n in range(30))
API_KEY = "restart-test-key"
# An hour-long batch: it runs through the crash and the restart however slow the machine is; the
# test ends it by moving the emulator's clock once the new triggerer polls (no timing window).
BATCH_SECONDS = 3600.0
# A killed triggerer's triggers move to another one once its heartbeat is older than this.
HEALTH_THRESHOLD_SECONDS = 10
RUN_TIMEOUT_SECONDS = 240


class ComponentStack(ui_script.UiStack):
    """`UiStack`'s Airflow with every component in a process group of its own, so one can be killed.

    ``airflow standalone`` supervises its components together; here each is its own ``airflow``
    command, and the triggerer can be killed and started again while the others keep running.
    """

    COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.components: dict[str, subprocess.Popen[bytes]] = {}
        self.log_path = self.home / "component-logs"
        self._starts = 0

    def start(self, timeout: float = ui_script.STARTUP_TIMEOUT_SECONDS) -> ComponentStack:
        self.log_path.mkdir(parents=True, exist_ok=True)
        # Creates airflow.cfg (with the JWT secret every component must share) before they start.
        subprocess.run(
            [self._airflow, "db", "migrate"],
            env=self.environment(),
            cwd=str(self.home),
            check=True,
            capture_output=True,
            timeout=300,
        )
        for name in self.COMPONENTS:
            self.start_component(name)
        deadline = time.monotonic() + timeout
        while not (self.password_file.exists() and self._healthy()):
            self._check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"Airflow was not ready after {timeout:.0f}s; see {self.log_path}")
            time.sleep(1.0)
        return self

    @property
    def _airflow(self) -> str:
        return str(Path(sys.executable).parent / "airflow")

    def start_component(self, name: str) -> None:
        self._starts += 1
        log = self.log_path / f"{self._starts:02d}-{name}.log"
        self.components[name] = ui_script.launch([name], self.environment(), self.home, log)

    def kill_component(self, name: str) -> None:
        """SIGKILL the component's whole process group (its subprocesses too), as a crash would."""
        process = self.components.pop(name)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        deadline = time.monotonic() + 30
        while ui_script.live_processes_in_group(process.pid):
            assert time.monotonic() < deadline, f"processes of the killed {name} survive"
            time.sleep(0.2)

    def _check_alive(self) -> None:
        for name, process in self.components.items():
            if process.poll() is not None:
                raise RuntimeError(f"airflow {name} exited ({process.returncode}); see {self.log_path}")

    def stop(self) -> None:
        """Stop every component (each process group: workers and trigger runners too), then the emulator."""
        components, self.components = self.components, {}
        for process in components.values():
            ui_script.signal_group(process.pid, signal.SIGTERM)
        for process in components.values():
            ui_script.end_group(process)
        self.emulator.stop()


def _free_ports(count: int) -> list[int]:
    """Distinct free ports on 127.0.0.1 (held open together while they are picked)."""
    with contextlib.ExitStack() as held:
        sockets = [held.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComponentStack]:
    home = tmp_path_factory.mktemp("restart-airflow-home")
    dags = home / "dags"
    dags.mkdir()
    shutil.copy(DAG_FILE, dags)
    emulator = Emulator(Scenario(completion_seconds=BATCH_SECONDS, api_key=API_KEY)).start()
    api_port, worker_log_port, trigger_log_port = _free_ports(3)
    airflow = ComponentStack(
        home,
        dags,
        api_port,
        emulator,
        api_key=API_KEY,
        env={
            "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": str(HEALTH_THRESHOLD_SECONDS),
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
            # The log servers of workers and triggerer default to fixed ports (8793, 8794).
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(worker_log_port),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(trigger_log_port),
        },
    )
    try:
        airflow.start()
        yield airflow
    finally:
        airflow.stop()


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
def test_a_triggerer_killed_while_the_sensor_waits_is_replaced_and_the_run_completes(stack, provider):
    if "triggerer" not in stack.components:  # an earlier case failed between the kill and the restart
        stack.start_component("triggerer")
    emulator = stack.emulator
    dag_id = f"e2e_triggerer_restart_{provider}"
    run_path = f"/api/v2/dags/{dag_id}/dagRuns/restart_{provider}"
    _wait_for_dag(stack, dag_id)
    stack.request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
    stack.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"dag_run_id": f"restart_{provider}", "logical_date": None})

    def sensor() -> dict[str, Any]:
        return dict(stack.request("GET", f"{run_path}/taskInstances/wait"))

    def polls() -> list[float]:
        """When the batch's status was answered, on the emulator's clock (while the sensor waits, only triggers ask)."""
        batch_ids = tuple(b["batch_id"] for b in _created_batches(emulator, provider))
        return [
            r["time"]
            for r in emulator.requests()
            if r["method"] == "GET" and r["path"].endswith(batch_ids) and r["status"] == 200
        ]

    # 1. The sensor is deferred, a triggerer runs its trigger, and the trigger has polled the batch.
    def deferred_and_polling() -> dict[str, Any] | None:
        wait = sensor()
        return wait if _triggerer_of(wait) and len(polls()) >= 2 else None

    first_triggerer = _triggerer_of(_poll_until(deferred_and_polling, stack, run_path, "the trigger to poll"))

    # 2. The triggerer crashes. Nothing polls and nothing can fire the trigger: the sensor stays deferred.
    stack.kill_component("triggerer")
    killed_at = emulator.state.now()
    time.sleep(5)
    assert sensor()["state"] == "deferred"
    restarted_at = emulator.state.now()
    assert [t for t in polls() if t > killed_at] == [], "something polled while no triggerer ran"
    stack.start_component("triggerer")

    # 3. A new triggerer takes the trigger over and polls the (still running) batch.
    def taken_over() -> dict[str, Any] | None:
        wait = sensor()
        return wait if _triggerer_of(wait) not in (None, first_triggerer) and max(polls()) > restarted_at else None

    _poll_until(taken_over, stack, run_path, "a new triggerer to take the trigger over")
    polls_before_the_end = polls()

    # 4. The batch ends (its hour passes at once); the trigger fires and the run finishes.
    emulator.advance(BATCH_SECONDS)

    def run_ended() -> dict[str, Any] | None:
        run = stack.request("GET", run_path)
        return dict(run) if run["state"] in ("success", "failed") else None

    run = _poll_until(run_ended, stack, run_path, "the run to end")
    assert run["state"] == "success", f"the run ended {run['state']}; see {stack.log_path}"
    assert [t for t in polls_before_the_end if t < killed_at], "no poll before the crash"
    assert [t for t in polls_before_the_end if t > restarted_at], "no poll after the restart"

    # Nothing paid twice: one batch at the provider, the one the submit task recorded.
    [batch] = _created_batches(emulator, provider)
    manifest = _xcom(stack, run_path, "submit")
    assert [b["batch_id"] for b in manifest["batches"]] == [batch["batch_id"]]
    assert emulator.ledger()["duplicate_batches"] == []
    # A restart is not a kill of the task: the batch ran to its end, nobody cancelled it.
    assert [r["path"] for r in emulator.requests(provider) if "cancel" in r["path"]] == []

    # One row per input id, every one answered.
    summary = _xcom(stack, run_path, "results")
    rows = _read_rows(summary["output_uri"])
    assert sorted(r["id"] for r in rows) == IDS
    assert {r["status"] for r in rows} == {"succeeded"}
    assert summary["items"] == summary["succeeded"] == len(IDS)


def _triggerer_of(sensor: dict[str, Any]) -> int | None:
    """The triggerer job running the deferred sensor's trigger (None unless deferred and assigned)."""
    if sensor["state"] != "deferred" or not sensor["trigger"]:
        return None
    return sensor["trigger"]["triggerer_id"]


def _created_batches(emulator: Emulator, provider: str) -> list[dict[str, Any]]:
    return [b for b in emulator.ledger()["batches"] if b["provider"] == provider]


def _xcom(stack: ComponentStack, run_path: str, task_id: str) -> dict[str, Any]:
    entry = stack.request("GET", f"{run_path}/taskInstances/{task_id}/xcomEntries/return_value?deserialize=true")
    return dict(entry["value"])


def _read_rows(uri: str) -> list[dict[str, Any]]:
    path = Path(uri.removeprefix("file://"))
    return [json.loads(line) for line in path.read_text().splitlines()]


def _poll_until(check: Callable[[], Any], stack: ComponentStack, run_path: str, what: str) -> Any:
    deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        found = check()
        if found is not None:
            return found
        run = stack.request("GET", run_path)
        assert run["state"] != "failed", f"the run failed while waiting for {what}; see {stack.log_path}"
        time.sleep(1.0)
    raise AssertionError(f"gave up after {RUN_TIMEOUT_SECONDS}s waiting for {what}; see {stack.log_path}")
