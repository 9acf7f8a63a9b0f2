"""A local HTTP emulator of the LLM batch APIs this package calls, for tests, demos and DAG tests.

The real SDK clients talk to it through their ``base_url``; it listens on 127.0.0.1 only and
imports neither Airflow nor any vendor SDK::

    from airflow_llm_batch.emulator import Emulator

    with Emulator() as emu:
        emu.set_scenario(completion_seconds=0.5, item_errors={"server_error": 0.1})
        client = OpenAI(api_key="k", base_url=emu.openai_base_url)
        ...
        assert not emu.ledger()["double_billed"]

From a shell: ``python -m airflow_llm_batch.emulator --port 8765``. In pytest: the
``llm_batch_emulator`` fixture (``emulator/pytest_plugin.py``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_llm_batch.emulator.app import PROVIDERS, create_app
    from airflow_llm_batch.emulator.quotas import QueueQuota
    from airflow_llm_batch.emulator.scenario import HttpFault, Scenario, ScenarioError
    from airflow_llm_batch.emulator.server import Emulator
    from airflow_llm_batch.emulator.state import EmulatorState

__all__ = [
    "PROVIDERS",
    "Emulator",
    "EmulatorState",
    "HttpFault",
    "QueueQuota",
    "Scenario",
    "ScenarioError",
    "create_app",
]

# Imported on first use: the pytest plugin lives in this package and is loaded in every test
# session, which should not pay for starlette and uvicorn unless a test starts the emulator.
_HOMES = {
    "PROVIDERS": "app",
    "create_app": "app",
    "HttpFault": "scenario",
    "QueueQuota": "quotas",
    "Scenario": "scenario",
    "ScenarioError": "scenario",
    "Emulator": "server",
    "EmulatorState": "state",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
