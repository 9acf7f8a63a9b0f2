"""Metrics through Airflow's own Stats: a real run with StatsD configured to a UDP socket of the test.

Nothing is patched: ``[metrics] statsd_on`` points Airflow's StatsD logger at 127.0.0.1, and the
test reads the datagrams the tasks sent.
"""

from __future__ import annotations

import socket
from collections import defaultdict

import pytest

pytestmark = pytest.mark.e2e


def _received(sock: socket.socket) -> dict[str, list[tuple[float, str]]]:
    """``name -> [(value, type)]`` of every ``llm_batch.`` metric received (StatsD ``name:value|type``)."""
    seen: dict[str, list[tuple[float, str]]] = defaultdict(list)
    sock.settimeout(0.5)
    while True:
        try:
            data = sock.recv(65535).decode()
        except TimeoutError:
            return seen
        for line in data.splitlines():  # a datagram may carry several metrics
            name, _, rest = line.partition(":")
            value, _, kind = rest.partition("|")
            if "llm_batch." in name:
                seen[name].append((float(value), kind.split("|")[0]))


def test_a_run_sends_the_documented_metrics_to_statsd(dag_runner):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        env = {
            "AIRFLOW__METRICS__STATSD_ON": "True",
            "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
            "AIRFLOW__METRICS__STATSD_PORT": str(sock.getsockname()[1]),
            "AIRFLOW__METRICS__STATSD_PREFIX": "nightly",
            "E2E_GATE_MODE": "warn",
        }
        dag_runner.emulator.update_scenario(completion_seconds=1.5, item_errors={"invalid_request": 0.2})
        dag_runner.run("e2e_gates", env=env)
        seen = _received(sock)

    def one(name: str, kind: str) -> float:
        [(value, got)] = seen[f"nightly.llm_batch.{name}"]
        assert got == kind, name
        return value

    succeeded, failed = one("items.succeeded", "c"), one("items.failed", "c")
    assert succeeded + failed == 50 and 0 < failed < 50
    assert one("errors.invalid_request", "c") == failed == one("items.permanent", "c")
    assert one("tokens.input", "c") > 0 and one("tokens.output", "c") > 0
    assert one("batches", "c") == 1
    assert one("cost.batch_usd", "g") > 0 and one("cost.savings_usd", "g") > 0
    assert one("batch_age", "ms") >= 1500  # the emulator's batch took 1.5 s
    assert one("step.items.succeeded", "c") == succeeded
    assert one("step.success_rate", "g") == round(succeeded / 50, 4)
    assert one("step.cost_per_success_usd", "g") > 0
    # Both gates tripped on the final task (the step's per-round Results tasks judge no gate).
    assert one("gate_tripped.min_success_rate", "c") == 1 == one("gate_tripped.max_batch_age", "c")
    assert all(name.startswith("nightly.llm_batch.") for name in seen)
