"""Pytest fixtures for the emulator, registered through the ``pytest11`` entry point.

- ``llm_batch_emulator_server`` (session): one emulator on a free 127.0.0.1 port for the session.
- ``llm_batch_emulator`` (function): the same emulator, reset (state and scenario) before each test,
  then set to the scenario of the test's ``llm_batch_scenario`` markers, if any::

      @pytest.mark.llm_batch_scenario(queue_quotas=[{"provider": "openai", "concurrent_batches": 5}])
      def test_waves(llm_batch_emulator): ...

  Markers on the module, class and function merge, the nearest winning per field.

Users' own DAG tests get both fixtures by installing the package.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from airflow_llm_batch.emulator.server import Emulator


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "llm_batch_scenario(**fields): the emulator scenario fields (airflow_llm_batch.emulator.Scenario) "
        "the llm_batch_emulator fixture sets for this test",
    )


@pytest.fixture(scope="session")
def llm_batch_emulator_server() -> Iterator[Emulator]:
    """The session's emulator, started on first use and stopped at the end of the session."""
    # Imported here so that loading the plugin costs nothing in sessions that never use it, and a
    # user's pytest keeps working when the emulator's server dependencies are not installed.
    try:
        from airflow_llm_batch.emulator.server import Emulator
    except ImportError as error:
        missing = error.name
    else:
        missing = None
    if missing is not None:  # outside the except block: the message alone, no chained traceback
        pytest.fail(
            f"the llm_batch_emulator fixture needs the emulator's dependencies ({missing} is missing): "
            "pip install 'airflow-llm-batch[emulator]'",
            pytrace=False,
        )

    emulator = Emulator().start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def llm_batch_emulator(llm_batch_emulator_server: Emulator, request: pytest.FixtureRequest) -> Iterator[Emulator]:
    """The session's emulator with a clean state and the default scenario (or the test's markers')."""
    llm_batch_emulator_server.reset()
    fields: dict[str, Any] = {}
    # iter_markers yields the nearest marker first; apply the outermost first so the nearest wins.
    for marker in reversed(list(request.node.iter_markers("llm_batch_scenario"))):
        fields.update(marker.kwargs)
    if fields:
        llm_batch_emulator_server.update_scenario(**fields)
    yield llm_batch_emulator_server
