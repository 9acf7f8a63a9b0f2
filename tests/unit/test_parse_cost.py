"""DAG files import the operators; that must not load any provider SDK (they cost 0.1-1.1 s each)."""

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "dags_examples" / "nightly_ticket_triage.py"

PROBE = f"""
import importlib.util, sys
from airflow_llm_batch import LLMBatchSubmitOperator, LLMBatchCompletionSensor, LLMBatchResultsOperator
spec = importlib.util.spec_from_file_location("triage", {str(EXAMPLE)!r})
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
# An operator on the Responses API checks its endpoint when built (without the SDK).
LLMBatchSubmitOperator(task_id="on_responses", items=[], model="gpt-5-pro", prompt_template="x", endpoint="responses")
# An embedding step on Bedrock (an AWS connection): the parse-time embeddings check reads every
# backend's class facts, the Bedrock backend's too, without boto3 or botocore.
LLMBatchSubmitOperator(
    task_id="on_bedrock", items=[], model="amazon.titan-embed-text-v2:0", prompt_template="x", kind="embedding",
    conn_id="aws_default",
)
vendors = ("openai", "anthropic", "google.genai", "google.cloud.bigquery", "boto3", "botocore", "azure.identity")
loaded = sorted(m for m in sys.modules if any(m == v or m.startswith(v + ".") for v in vendors))
print(",".join(loaded))
"""


def test_importing_the_operators_and_building_the_example_dag_loads_no_vendor_sdk(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        check=True,
        env={"AIRFLOW_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert result.stdout.strip() == ""
