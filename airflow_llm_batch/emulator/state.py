"""Everything one running emulator remembers, shared by the HTTP app and the in-process handle.

`EmulatorState` holds the scenario, the ledger, the request log, the fault counters, the clock and
one service (state machine) per provider. The uvicorn thread and the test thread both touch it, so
every read or change goes through ``state.lock``; provider modules take the lock around each call
into their models.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from airflow_llm_batch.emulator.ledger import Ledger
from airflow_llm_batch.emulator.scenario import FaultCounters, Scenario

# Enough for any test's assertions; a long-running demo must not grow without bound.
REQUEST_LOG_LIMIT = 100_000


class ProviderService(Protocol):
    """What the state needs from a provider's models: forget everything, and catch up with time."""

    def reset(self) -> None:
        """Drop every file, batch and result."""

    def settle(self) -> None:
        """Bring every batch up to the current time, so terminal batches are billed in the ledger."""


@dataclass(frozen=True)
class RequestRecord:
    """One provider request as received. Credentials are never recorded."""

    time: float
    provider: str
    method: str
    path: str
    query: str
    user_agent: str | None
    content_type: str | None
    status: int | None


class EmulatorState:
    """The emulator's memory.

    :param scenario: the scenario to start with; `reset` returns to it.
    :param clock: wall-clock source in Unix seconds; `advance` adds an offset on top.
    """

    def __init__(self, scenario: Scenario | None = None, clock: Callable[[], float] = time.time) -> None:
        self.lock = threading.RLock()
        self.base_scenario = scenario or Scenario()
        self.scenario = self.base_scenario
        self.ledger = Ledger()
        self.faults = FaultCounters()
        self.services: dict[str, ProviderService] = {}
        self._requests: deque[RequestRecord] = deque(maxlen=REQUEST_LOG_LIMIT)
        self._clock = clock
        self._offset = 0.0

    def now(self) -> float:
        """The emulator's time: the clock plus whatever `advance` added."""
        return self._clock() + self._offset

    def advance(self, seconds: float) -> float:
        """Move the emulator's time forward (batches progress as if the time had passed)."""
        if seconds < 0:
            raise ValueError("the emulator's clock only moves forward")
        with self.lock:
            self._offset += seconds
            return self._offset

    def set_scenario(self, scenario: Scenario) -> None:
        """Replace the scenario; fault counters restart so ``count`` means 'from now on'."""
        with self.lock:
            self.scenario = scenario
            self.faults.clear()

    def reset(self) -> None:
        """Forget every batch, file, ledger entry and logged request; restore the first scenario."""
        with self.lock:
            self.set_scenario(self.base_scenario)
            self.ledger.clear()
            self._requests.clear()
            self._offset = 0.0
            for service in self.services.values():
                service.reset()

    def attach_service(self, name: str, factory: Callable[[EmulatorState], ProviderService]) -> Any:
        """The provider's service, created on first use; an app built twice shares one service."""
        with self.lock:
            if name not in self.services:
                self.services[name] = factory(self)
            return self.services[name]

    def log_request(self, record: RequestRecord) -> None:
        with self.lock:
            self._requests.append(record)

    def request_log(self, provider: str | None = None) -> list[dict[str, Any]]:
        """Logged requests, oldest first, optionally of one provider."""
        with self.lock:
            return [asdict(r) for r in self._requests if provider is None or r.provider == provider]

    def ledger_snapshot(self) -> dict[str, Any]:
        """The ledger after every batch has caught up with the clock."""
        with self.lock:
            for service in self.services.values():
                service.settle()
            return self.ledger.to_dict()
