"""Control routes under ``/_emulator``, the ``Emulator`` handle and the command line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from emulator_test_helpers import chat_line

from airflow_llm_batch.emulator import Emulator, EmulatorState, Scenario, create_app
from airflow_llm_batch.emulator.app import PROVIDERS

pytest_plugins = ("pytester",)


def call(url: str, method: str = "GET", body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_health_lists_the_providers(emu: Emulator) -> None:
    providers = [spec.name for spec in PROVIDERS]
    assert "openai" in providers
    assert call(f"{emu.url}/_emulator/health") == (200, {"status": "ok", "providers": sorted(providers)})


def test_put_replaces_and_patch_updates_the_scenario(emu: Emulator) -> None:
    status, scenario = call(f"{emu.url}/_emulator/scenario", "PUT", {"seed": 5, "item_errors": {"server_error": 0.1}})
    assert status == 200 and scenario["seed"] == 5 and scenario["completion_seconds"] == 3.0
    status, scenario = call(f"{emu.url}/_emulator/scenario", "PATCH", {"completion_seconds": 1})
    assert status == 200 and (scenario["seed"], scenario["completion_seconds"]) == (5, 1)
    assert emu.scenario.item_errors == {"server_error": 0.1}
    assert call(f"{emu.url}/_emulator/scenario")[1] == emu.scenario.to_dict()


@pytest.mark.parametrize(
    "body",
    [
        {"bogus": 1},
        {"item_errors": {"sunspots": 0.1}},
        {"item_errors": {"server_error": 1.5}},
        {"batch_outcome": "exploded"},
        {"http_faults": [{"route": "/x", "status": 418}]},
    ],
)
def test_bad_scenarios_are_refused_with_a_reason(emu: Emulator, body: dict) -> None:
    status, answer = call(f"{emu.url}/_emulator/scenario", "PUT", body)
    assert status == 400 and answer["error"]
    assert emu.scenario == Scenario()


def test_reset_forgets_batches_ledger_requests_and_scenario(emu: Emulator, client, submit) -> None:
    emu.set_scenario(completion_seconds=0, seed=9)
    submit([chat_line("a", "x")])
    assert emu.ledger()["batches"] and emu.requests()
    status, _ = call(f"{emu.url}/_emulator/reset", "POST")
    assert status == 200
    assert emu.scenario == Scenario() and emu.requests() == []
    assert call(f"{emu.url}/_emulator/ledger")[1] == {
        "batches": [], "billed": [], "refused_creates": [], "duplicate_batches": [], "double_billed": [],
        "billed_twice": [], "billed_counts": {}, "same_input_batches": [],
    }  # fmt: skip
    assert list(client.batches.list()) == []


def test_requests_route_and_advance_route(emu: Emulator, client, submit) -> None:
    emu.set_scenario(completion_seconds=100)
    batch = submit([chat_line("a", "x")])
    status, log = call(f"{emu.url}/_emulator/requests?provider=openai")
    assert status == 200 and [r["path"] for r in log] == ["/openai/v1/files", "/openai/v1/batches"]
    assert call(f"{emu.url}/_emulator/advance", "POST", {"seconds": 100}) == (200, {"offset_seconds": 100.0})
    assert client.batches.retrieve(batch.id).status == "completed"
    assert call(f"{emu.url}/_emulator/advance", "POST", {"seconds": -1})[0] == 400


def test_the_fixture_gives_each_test_a_clean_emulator(pytester: pytest.Pytester) -> None:
    # Two tests in a session of their own, in a known order: the first leaves a scenario, a batch
    # and a logged request behind; the second must see none of them (the plugin's reset).
    pytester.makepyfile(
        """
        from openai import OpenAI

        def test_leaves_state_behind(llm_batch_emulator):
            llm_batch_emulator.set_scenario(seed=123, completion_seconds=50)
            with OpenAI(api_key="k", base_url=llm_batch_emulator.openai_base_url, max_retries=0) as client:
                list(client.batches.list())
            assert llm_batch_emulator.scenario.seed == 123 and llm_batch_emulator.requests()

        def test_sees_a_clean_emulator(llm_batch_emulator):
            from airflow_llm_batch.emulator import Scenario

            assert llm_batch_emulator.scenario == Scenario()
            assert llm_batch_emulator.requests() == []
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:randomly", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_two_apps_can_share_one_state() -> None:
    state = EmulatorState(Scenario(seed=4))
    create_app(state)
    create_app(state)
    assert list(state.services) == [spec.name for spec in PROVIDERS]
    state.set_scenario(Scenario(seed=1))
    state.reset()
    assert state.scenario.seed == 4


def test_emulator_refuses_non_local_hosts() -> None:
    with pytest.raises(ValueError, match="binds only to"):
        Emulator().start(host="0.0.0.0")


def test_emulator_context_manager_starts_and_stops() -> None:
    with Emulator(Scenario(completion_seconds=0)) as emulator:
        assert call(f"{emulator.url}/_emulator/health")[0] == 200
        url = emulator.url
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{url}/_emulator/health", timeout=1)


def test_cli_serves_on_a_free_port_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    port_file = tmp_path / "port"
    scenario_file = tmp_path / "scenario.json"
    scenario_file.write_text(json.dumps({"seed": 3, "completion_seconds": 9}))
    process = subprocess.Popen(
        [sys.executable, "-m", "airflow_llm_batch.emulator", "--port", "0", "--port-file", str(port_file),
         "--scenario", str(scenario_file), "--completion-seconds", "2", "--item-error", "server_error=0.1"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        first_line = process.stdout.readline()  # type: ignore[union-attr]
        deadline = time.monotonic() + 10
        while not port_file.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        port = int(port_file.read_text())
        assert first_line.strip() == f"airflow-llm-batch emulator listening on http://127.0.0.1:{port}"
        assert call(f"http://127.0.0.1:{port}/_emulator/health")[0] == 200
        scenario = call(f"http://127.0.0.1:{port}/_emulator/scenario")[1]
        assert (scenario["seed"], scenario["completion_seconds"], scenario["item_errors"]) == (
            3, 2.0, {"server_error": 0.1}
        )  # fmt: skip
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0


def test_cli_refuses_a_public_host() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "airflow_llm_batch.emulator", "--host", "0.0.0.0", "--port", "0"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 2 and "binds only to" in result.stderr
