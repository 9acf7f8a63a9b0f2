"""Pytest fixtures for the emulator, registered through the ``pytest11`` entry point.

- ``llm_batch_emulator_server`` (session): one emulator on a free 127.0.0.1 port for the session.
- ``llm_batch_emulator`` (function): the same emulator, reset (state and scenario) before each test.

Users' own DAG tests get both fixtures by installing the package.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from airflow_llm_batch.emulator.server import Emulator


@pytest.fixture(scope="session")
def llm_batch_emulator_server() -> Iterator[Emulator]:
    """The session's emulator, started on first use and stopped at the end of the session."""
    # Imported here so that loading the plugin costs nothing in sessions that never use it.
    from airflow_llm_batch.emulator.server import Emulator

    emulator = Emulator().start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def llm_batch_emulator(llm_batch_emulator_server: Emulator) -> Iterator[Emulator]:
    """The session's emulator with a clean state and the default scenario."""
    llm_batch_emulator_server.reset()
    yield llm_batch_emulator_server
