"""OpenLineage under real Airflow: Submit reports the items file it read, Results the file it wrote."""

from __future__ import annotations

import importlib.util
import json

import pytest

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        importlib.util.find_spec("airflow.providers.openlineage") is None,
        reason="the OpenLineage provider is not installed (the dev extra installs it)",
    ),
]


def test_openlineage_events_name_the_items_file_and_the_results_file(dag_runner, tmp_path):
    events_file = tmp_path / "openlineage.jsonl"
    transport = {"type": "file", "log_file_path": str(events_file), "append": True}
    logical_date, _ = dag_runner.run(
        "nightly_ticket_triage",
        env={"AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(transport), "AIRFLOW__OPENLINEAGE__NAMESPACE": "e2e"},
    )
    events = [json.loads(line) for line in events_file.read_text().splitlines()]
    complete = {e["job"]["name"]: e for e in events if e["eventType"] == "COMPLETE"}

    submit = complete["nightly_ticket_triage.submit"]
    [items] = submit["inputs"]
    assert items["namespace"] == "file"
    # The export stand-in writes into its own folder of the run in the step's work dir.
    export = dag_runner.job_dir("nightly_ticket_triage", logical_date, task_id="export_tickets").parent
    assert items["name"] == str(export / "tickets.jsonl")

    results = complete["nightly_ticket_triage.results"]
    [output] = results["outputs"]
    expected = dag_runner.job_dir("nightly_ticket_triage", logical_date) / "results" / "results.jsonl"
    assert (output["namespace"], output["name"]) == ("file", str(expected))
