"""The BigQuery examples build a BigQuerySource and a BigQuerySink at parse time; that must load no
vendor SDK (google.cloud.bigquery alone costs ~0.14 s per parse)."""

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "dags_examples"

PROBE = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("example", {path!r})
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
vendors = ("openai", "anthropic", "google.genai", "google.cloud.bigquery", "duckdb")
loaded = sorted(m for m in sys.modules if any(m == v or m.startswith(v + ".") for v in vendors))
print(",".join(loaded))
"""


@pytest.mark.parametrize("example", ["nightly_bigquery_triage.py", "vertex_bigquery_batch.py"])
def test_building_a_bigquery_example_dag_loads_no_vendor_sdk(tmp_path, example):
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(path=str(EXAMPLES / example))],
        capture_output=True,
        text=True,
        check=True,
        env={"AIRFLOW_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert result.stdout.strip() == ""
