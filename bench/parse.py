"""Benchmark 1, DAG parse cost: what the package adds to every parse of a DAG file that uses it.

Each measurement is a fresh interpreter (as a DAG-processor child is) with compiled bytecode:

- ``sdk``: ``import airflow.sdk`` alone, the floor of any DAG file;
- ``example``: then the example DAG ``dags_examples/nightly_ticket_triage.py``, loaded as the DAG
  processor loads a file: the package's operators imported, the DAG built;
- ``stubs``: then the same DAG file with the three operators replaced by a bare ``BaseOperator``
  subclass: what Airflow itself costs for that DAG (``@task``, a cron schedule, four tasks).

The package's cost is ``example - stubs``, in milliseconds over ``import airflow.sdk``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

from bench._harness import ROOT, Row, benchmark_args, emit, scratch

EXAMPLE = ROOT / "dags_examples" / "nightly_ticket_triage.py"
_IMPORT = "from airflow_llm_batch import LLMBatchCompletionSensor, LLMBatchResultsOperator, LLMBatchSubmitOperator\n"
_STUBS = """from airflow.sdk import BaseOperator


class _Stub(BaseOperator):
    template_fields = ("items", "manifest")

    def __init__(self, *, items=None, manifest=None, **kwargs):
        for name in ("id_field", "system_prompt", "prompt_template", "model", "parameters", "response_schema",
                     "conn_id", "output_format"):
            kwargs.pop(name, None)
        super().__init__(**kwargs)
        self.items = items
        self.manifest = manifest


LLMBatchSubmitOperator = LLMBatchCompletionSensor = LLMBatchResultsOperator = _Stub
"""
_PROBE = """
import importlib.util, json, sys, time
started = time.perf_counter()
import airflow.sdk
imported = time.perf_counter()
if sys.argv[1] != "-":
    spec = importlib.util.spec_from_file_location("bench_parse_dag", sys.argv[1])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
built = time.perf_counter()
print(json.dumps({"sdk": imported - started, "dag": built - imported,
                  "package_modules": sorted(m for m in sys.modules if m.startswith("airflow_llm_batch")),
                  "vendor_sdks": sorted(m for m in ("openai", "anthropic", "google.genai", "google.cloud.bigquery",
                                                    "jsonschema", "pyarrow") if m in sys.modules)}))
"""


def _probe(dag_file: str, env: dict[str, str]) -> dict[str, object]:
    output = subprocess.run(
        [sys.executable, "-c", _PROBE, dag_file], env=env, check=True, capture_output=True, text=True, cwd=ROOT
    ).stdout
    return dict(json.loads(output.strip().splitlines()[-1]))


def _add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", type=int, default=11, help="fresh interpreters per variant (median kept)")


def main() -> None:
    args = benchmark_args(__doc__ or "", _add_args)
    with scratch(args.work) as work:
        source = EXAMPLE.read_text()
        if _IMPORT not in source:
            raise SystemExit(f"{EXAMPLE.name} no longer imports the operators as {_IMPORT!r}; update bench/parse.py")
        stubs = work / "nightly_ticket_triage_stubs.py"
        stubs.write_text(source.replace(_IMPORT, _STUBS))
        # Bytecode is written and used, as on a deployed Airflow (this machine disables it by default).
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env.update(AIRFLOW__CORE__LOAD_EXAMPLES="False", AIRFLOW__CORE__UNIT_TEST_MODE="False")
        variants = {"sdk": "-", "example": str(EXAMPLE), "stubs": str(stubs)}
        for dag_file in variants.values():  # warm-up: compile and cache bytecode
            _probe(dag_file, env)
        samples: dict[str, list[dict[str, object]]] = {name: [] for name in variants}
        for _ in range(args.runs):
            for name, dag_file in variants.items():
                samples[name].append(_probe(dag_file, env))

    def median_ms(name: str, part: str) -> float:
        return 1000 * statistics.median(float(s[part]) for s in samples[name])  # type: ignore[arg-type]

    sdk = median_ms("sdk", "sdk")
    example, stubbed = median_ms("example", "dag"), median_ms("stubs", "dag")
    loaded = samples["example"][0]
    vendors = ", ".join(loaded["vendor_sdks"]) or "none"  # type: ignore[arg-type]
    # The share is the median of the differences of runs made side by side, steadier on a busy
    # machine than the difference of two medians.
    share = 1000 * statistics.median(
        float(with_package["dag"]) - float(stubbed_run["dag"])  # type: ignore[arg-type]
        for with_package, stubbed_run in zip(samples["example"], samples["stubs"], strict=True)
    )
    rows = [
        Row(
            "parse: operators + example DAG, over import airflow.sdk",
            example,
            "ms",
            sdk,
            "import airflow.sdk alone",
            note=f"medians of {args.runs} fresh interpreters each; vendor modules loaded: {vendors}",
        ),
        Row(
            "parse: the package's share of it",
            share,
            "ms",
            stubbed,
            "same DAG, Airflow-only stub operators",
            ratio=share / sdk,
            target="<= 10 ms",
            met=share <= 10,
            note=f"ratio: to import airflow.sdk; {len(loaded['package_modules'])} package modules imported",  # type: ignore[arg-type]
        ),
    ]
    emit(rows, args.json)


if __name__ == "__main__":
    main()
