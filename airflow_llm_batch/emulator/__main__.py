"""Command line: ``python -m airflow_llm_batch.emulator --port 8765 [options]``.

Serves the emulator in the foreground until SIGINT or SIGTERM (uvicorn shuts down cleanly on
both). The first line printed is ``airflow-llm-batch emulator listening on http://127.0.0.1:PORT``;
with ``--port 0`` a free port is chosen and ``--port-file`` tells scripts which one.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from airflow_llm_batch.emulator.scenario import (
    BATCH_OUTCOMES,
    ITEM_ERROR_KINDS,
    OPENAI_METADATA_MODES,
    Scenario,
    ScenarioError,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m airflow_llm_batch.emulator",
        description="Local emulator of the OpenAI, Anthropic and Gemini batch APIs (127.0.0.1 only).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="127.0.0.1, localhost or ::1 (nothing else)")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--port-file", type=Path, help="write the bound port to this file once listening")
    parser.add_argument("--scenario", type=Path, help="JSON file with scenario fields; flags override it")
    parser.add_argument("--completion-seconds", type=float, help="time from create to a terminal status")
    parser.add_argument("--seed", type=int, help="salt of every deterministic choice")
    parser.add_argument(
        "--item-error",
        action="append",
        default=[],
        metavar="KIND=RATE",
        help=f"share of items failing with KIND, repeatable; KIND is one of {', '.join(ITEM_ERROR_KINDS)}",
    )
    parser.add_argument("--invalid-output-rate", type=float, help="share of structured outputs that are broken")
    parser.add_argument("--batch-outcome", choices=BATCH_OUTCOMES, help="how every new batch ends")
    parser.add_argument("--api-key-env", metavar="VAR", help="accept only the key in this environment variable")
    add_edge_flags(parser)
    return parser.parse_args(argv)


def add_edge_flags(parser: argparse.ArgumentParser) -> None:
    """Flags for the real services' edges: queue quotas, 429 on create, late and short output."""
    parser.add_argument(
        "--queue-quota",
        action="append",
        default=[],
        metavar="PROVIDER[,FIELD=VALUE...]",
        help="a queue quota, repeatable, e.g. openai,model=gpt-4o-mini,enqueued_tokens=2000000; fields: model, "
        "account, enqueued_tokens, enqueued_requests, concurrent_batches, count_output_allowance",
    )
    parser.add_argument(
        "--create-429",
        action="append",
        default=[],
        metavar="PROVIDER[=COUNT]",
        help="answer batch creates of PROVIDER with 429 (the first COUNT, or all), repeatable",
    )
    parser.add_argument("--vertex-claude-concurrent-jobs", metavar="N|none", help="Vertex Claude job limit (4)")
    parser.add_argument("--gemini-late-output-polls", type=int, help="Gemini SUCCEEDED without output for N reads")
    parser.add_argument("--gemini-late-output-seconds", type=float, help="...and for S seconds after the end")
    parser.add_argument("--openai-short-output-reads", type=int, help="first N output downloads serve half the lines")
    parser.add_argument("--finalizing-seconds", type=float, help="OpenAI batches stay this much longer in finalizing")
    parser.add_argument(
        "--no-strict", dest="strict", action="store_false", default=None, help="answer bodies a real service refuses"
    )
    parser.add_argument(
        "--openai-metadata",
        choices=OPENAI_METADATA_MODES,
        help="batch metadata: kept (OpenAI), or dropped / refused (an OpenAI-compatible host without it)",
    )
    parser.add_argument("--bedrock-min-records", type=int, help="fewest records a Bedrock batch job runs with (100)")
    parser.add_argument(
        "--openai-served-models", metavar="PATTERN,...", help="OpenAI models served (fnmatch patterns, comma-separated)"
    )


def scenario_from_args(args: argparse.Namespace) -> Scenario:
    """The scenario file, if any, with the flags applied on top."""
    fields = json.loads(args.scenario.read_text()) if args.scenario else {}
    if not isinstance(fields, dict):
        raise ScenarioError(f"{args.scenario}: a scenario file holds one JSON object")
    flags = {
        "completion_seconds": args.completion_seconds,
        "seed": args.seed,
        "invalid_output_rate": args.invalid_output_rate,
        "batch_outcome": args.batch_outcome,
        "gemini_late_output_polls": args.gemini_late_output_polls,
        "gemini_late_output_seconds": args.gemini_late_output_seconds,
        "openai_short_output_reads": args.openai_short_output_reads,
        "finalizing_seconds": args.finalizing_seconds,
        "strict": args.strict,
        "openai_metadata": args.openai_metadata,
        "bedrock_min_records": args.bedrock_min_records,
    }
    fields.update({name: value for name, value in flags.items() if value is not None})
    if args.item_error:
        fields["item_errors"] = {**fields.get("item_errors", {}), **dict(_item_error(s) for s in args.item_error)}
    if args.openai_served_models:
        fields["openai_served_models"] = [m.strip() for m in args.openai_served_models.split(",") if m.strip()]
    if args.queue_quota:
        fields["queue_quotas"] = [*fields.get("queue_quotas", []), *(_queue_quota(spec) for spec in args.queue_quota)]
    if args.create_429:
        fields["create_429"] = {**fields.get("create_429", {}), **dict(_create_429(spec) for spec in args.create_429)}
    if args.vertex_claude_concurrent_jobs is not None:
        limit = args.vertex_claude_concurrent_jobs
        fields["vertex_claude_concurrent_jobs"] = (
            None if limit.lower() == "none" else _integer(limit, "--vertex-claude")
        )
    if args.api_key_env:
        # Taken from the environment, never from argv: command lines are visible to every user.
        fields["api_key"] = os.environ[args.api_key_env]
    return Scenario.from_dict(fields)


def _item_error(spec: str) -> tuple[str, float]:
    kind, sep, rate = spec.partition("=")
    try:
        return kind.strip(), float(rate) if sep else float("nan")
    except ValueError:
        raise ScenarioError(f"--item-error {spec!r}: expected KIND=RATE, e.g. server_error=0.1") from None


def _queue_quota(spec: str) -> dict[str, Any]:
    provider, *pairs = [part.strip() for part in spec.split(",")]
    quota: dict[str, Any] = {"provider": provider}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise ScenarioError(f"--queue-quota {spec!r}: expected FIELD=VALUE after the provider, got {pair!r}")
        if name in ("model", "account"):
            quota[name] = value
        elif name == "count_output_allowance":
            quota[name] = value.lower() in ("1", "true", "yes")
        else:
            quota[name] = _integer(value, f"--queue-quota {name}")
    return quota


def _create_429(spec: str) -> tuple[str, int | None]:
    provider, sep, count = spec.partition("=")
    return provider.strip(), _integer(count, "--create-429") if sep else None


def _integer(text: str, flag: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ScenarioError(f"{flag}: {text!r} is not an integer") from None


def write_port_file(path: Path, port: int) -> None:
    """Write atomically, so a script polling for the file never reads it half written."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(f"{port}\n")
    partial.replace(path)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        scenario = scenario_from_args(args)
    except (ScenarioError, OSError, ValueError, KeyError) as error:
        print(f"airflow-llm-batch emulator: bad scenario: {error}", file=sys.stderr)
        return 2
    # Heavy imports after argument checks, so --help and errors answer at once.
    import uvicorn

    from airflow_llm_batch.emulator.app import create_app
    from airflow_llm_batch.emulator.server import bind_local_socket, url_of
    from airflow_llm_batch.emulator.state import EmulatorState

    try:
        sock = bind_local_socket(args.host, args.port)
    except (ValueError, OSError) as error:
        print(f"airflow-llm-batch emulator: cannot listen: {error}", file=sys.stderr)
        return 2
    app = create_app(EmulatorState(scenario))
    print(f"airflow-llm-batch emulator listening on {url_of(sock)}", flush=True)
    if args.port_file:
        write_port_file(args.port_file, sock.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False))
    # uvicorn shuts down gracefully on SIGINT/SIGTERM and then re-raises the signal; these
    # handlers make that re-raise a quiet exit 0 instead of a traceback or status 143, and stop
    # the server if the signal comes before uvicorn has installed its own handlers.
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, lambda *_: setattr(server, "should_exit", True))
    server.run(sockets=[sock])
    print("airflow-llm-batch emulator stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
