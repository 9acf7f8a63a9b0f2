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

from airflow_llm_batch.emulator.scenario import BATCH_OUTCOMES, ITEM_ERROR_KINDS, Scenario, ScenarioError


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
    return parser.parse_args(argv)


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
    }
    fields.update({name: value for name, value in flags.items() if value is not None})
    if args.item_error:
        fields["item_errors"] = {**fields.get("item_errors", {}), **dict(_item_error(s) for s in args.item_error)}
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
