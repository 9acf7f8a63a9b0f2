"""Quality gates on a step's summary: which gate trips, what it says, and fail against warn."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from airflow_llm_batch.batch.gates import QualityGates, enforce_gates, judge, record_gates
from airflow_llm_batch.exceptions import ConfigurationError, QualityGateError
from airflow_llm_batch.progress import age_warning

LOG = logging.getLogger("test")


def summary(items=100, succeeded=80, **extra):
    errors = {"rate_limited": 3, "server_error": 12, "invalid_output": 5}
    return {"items": items, "succeeded": succeeded, "by_error_type": errors, "output_uri": "file:///r", **extra}


def test_a_rate_below_the_gate_names_the_rate_and_the_top_error_types():
    [gate] = judge(summary(), QualityGates.of(min_success_rate=0.95))
    assert gate["gate"] == "min_success_rate" and gate["action"] == "fail"
    assert gate["value"] == 0.8 and gate["limit"] == 0.95
    assert gate["reason"] == (
        "success rate 80.0% (80 of 100 items) is below min_success_rate 95.0%; "
        "top error types: server_error 12, invalid_output 5, rate_limited 3"
    )


def test_a_rate_at_the_gate_or_an_empty_input_trips_nothing():
    gates = QualityGates.of(min_success_rate=0.8)
    assert judge(summary(), gates) == []
    assert judge(summary(items=0, succeeded=0), gates) == []


def test_fail_raises_with_the_summary_and_its_gates_kept():
    result = record_gates(summary(), QualityGates.of(min_success_rate=0.95), LOG)
    with pytest.raises(QualityGateError) as raised:
        enforce_gates(result)
    assert "min_success_rate" in str(raised.value) and "80.0%" in str(raised.value)
    assert "on_gate_breach='warn'" in str(raised.value)
    assert raised.value.summary["gates"][0]["gate"] == "min_success_rate"


def test_warn_records_and_logs_the_gate_and_lets_the_task_succeed(caplog):
    with caplog.at_level(logging.WARNING):
        result = record_gates(summary(), QualityGates.of(min_success_rate=0.95, on_breach="warn"), LOG)
    enforce_gates(result)  # no raise
    assert result["gates"][0]["action"] == "warn"
    assert "Quality gate min_success_rate tripped (warn): success rate 80.0%" in caplog.text


def test_a_slow_batch_is_reported_but_never_fails():
    result = record_gates(summary(succeeded=100, batch_age_seconds=7300.0), QualityGates.of(max_batch_age=3600), LOG)
    enforce_gates(result)
    [gate] = result["gates"]
    assert gate["gate"] == "max_batch_age" and gate["action"] == "warn"
    assert "2:01:40 from submit to results, past max_batch_age 1:00:00" in gate["reason"]


def test_no_gate_set_adds_no_gates_key_and_a_met_gate_an_empty_list():
    assert "gates" not in record_gates(summary(), QualityGates(), LOG)
    assert record_gates(summary(succeeded=99), QualityGates.of(min_success_rate=0.95), LOG)["gates"] == []


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"min_success_rate": 95}, "between 0 and 1"),
        ({"on_breach": "ignore"}, "'fail' or 'warn'"),
        ({"max_batch_age": timedelta(0)}, "more than 0 seconds"),
    ],
)
def test_wrong_arguments_say_what_to_change(kwargs, words):
    with pytest.raises(ConfigurationError, match=words):
        QualityGates.of(**kwargs)


def test_the_age_warning_comes_only_past_the_limit():
    assert age_warning(1000.0, 60.0, now=1059.0) is None
    assert age_warning(1000.0, None, now=99999.0) is None
    assert age_warning(1000.0, 60.0, now=1090.0).startswith("The batches are still running 0:01:30 after the submit")
