"""The scenario switchboard: JSON round trip, validation, deterministic item fates and faults."""

from __future__ import annotations

import json

import pytest

from airflow_llm_batch.emulator import HttpFault, Scenario, ScenarioError
from airflow_llm_batch.emulator.scenario import FaultCounters


def test_scenario_round_trips_through_json() -> None:
    scenario = Scenario(
        completion_seconds=1.5,
        item_errors={"rate_limited": 0.1},
        http_faults=[HttpFault(route="/v1/batches$", status=429, method="POST", count=2)],
    )
    again = Scenario.from_dict(json.loads(json.dumps(scenario.to_dict())))
    assert again == scenario and isinstance(again.http_faults[0], HttpFault)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"completion_seconds": -1}, "completion_seconds"),
        ({"item_errors": {"timeout": 0.1}}, "unknown kind"),
        ({"invalid_output_rate": 2}, "invalid_output_rate"),
        ({"batch_outcome": "done"}, "batch_outcome"),
        ({"http_faults": [{"route": "(", "status": 429}]}, "regular expression"),
        ({"http_faults": [{"route": "/", "status": 404}]}, "status 404"),
        ({"max_requests_per_batch": 0}, "max_requests_per_batch"),
        ({"colour": "red"}, "unknown scenario field"),
    ],
)
def test_invalid_scenarios_name_the_field(fields: dict, message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        Scenario.from_dict(fields)


def test_item_error_rates_add_up_and_are_deterministic() -> None:
    scenario = Scenario(seed=1, item_errors={"rate_limited": 0.2, "server_error": 0.3})
    fates = [scenario.item_error(f"id-{i}") for i in range(2000)]
    assert fates == [scenario.item_error(f"id-{i}") for i in range(2000)]
    assert 0.17 < fates.count("rate_limited") / 2000 < 0.23
    assert 0.27 < fates.count("server_error") / 2000 < 0.33
    assert set(fates) == {"rate_limited", "server_error", None}
    other_seed = Scenario(seed=2, item_errors=scenario.item_errors)
    assert fates != [other_seed.item_error(f"id-{i}") for i in range(2000)]


def test_a_rate_of_one_fails_everything_and_zero_nothing() -> None:
    assert {Scenario(item_errors={"context_length": 1.0}).item_error(str(i)) for i in range(50)} == {"context_length"}
    assert not any(Scenario(invalid_output_rate=0.0).has_invalid_output(str(i)) for i in range(50))


def test_occurrence_redraws_unless_errors_repeat() -> None:
    fresh = Scenario(item_errors={"server_error": 0.5})
    sticky = fresh.updated(repeat_item_errors=True)
    ids = [f"id-{i}" for i in range(200)]
    assert [fresh.item_error(i, 1) for i in ids] != [fresh.item_error(i, 0) for i in ids]
    assert [sticky.item_error(i, 3) for i in ids] == [sticky.item_error(i, 0) for i in ids]


def test_fault_counters_apply_rate_count_route_and_method() -> None:
    faults = [
        HttpFault(route=r"/v1/batches$", method="POST", status=429, count=2),
        HttpFault(route=r"/content$", status=500, rate=0.25),
    ]
    counters = FaultCounters()
    creates = [counters.pick(faults, "POST", "/openai/v1/batches") for _ in range(4)]
    assert [f.status if f else None for f in creates] == [429, 429, None, None]
    assert counters.pick(faults, "GET", "/openai/v1/batches") is None
    downloads = [counters.pick(faults, "GET", "/openai/v1/files/f/content") for _ in range(8)]
    assert [f is not None for f in downloads] == [True, False, False, False, True, False, False, False]
