"""The emulator's own routes under ``/_emulator/``: health, reset, scenario, ledger, request log.

These are for tests and scripts, never for the SDKs: they carry no auth and no faults apply.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from airflow_llm_batch.emulator.scenario import ScenarioError
from airflow_llm_batch.emulator.state import EmulatorState
from airflow_llm_batch.emulator.web import BadJsonBody, read_json


def control_routes(state: EmulatorState) -> list[BaseRoute]:
    """The ``/_emulator`` routes bound to one state."""

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "providers": sorted(state.services)})

    async def reset(request: Request) -> Response:
        state.reset()
        return JSONResponse({"status": "reset", "scenario": state.scenario.to_dict()})

    async def get_scenario(request: Request) -> Response:
        with state.lock:
            return JSONResponse(state.scenario.to_dict())

    async def put_scenario(request: Request) -> Response:
        """PUT replaces the whole scenario (absent fields take defaults); PATCH changes some fields."""
        try:
            fields = await read_json(request)
            with state.lock:
                base = state.scenario if request.method == "PATCH" else type(state.scenario)()
                if not isinstance(fields, dict):
                    raise ScenarioError("a scenario is a JSON object")
                state.set_scenario(base.updated(**fields))
                return JSONResponse(state.scenario.to_dict())
        except (ScenarioError, BadJsonBody) as error:
            return JSONResponse({"error": str(error)}, status_code=400)

    async def ledger(request: Request) -> Response:
        return JSONResponse(state.ledger_snapshot())

    async def requests(request: Request) -> Response:
        return JSONResponse(state.request_log(request.query_params.get("provider")))

    async def advance(request: Request) -> Response:
        try:
            body = await read_json(request)
            seconds = float(body.get("seconds", 0)) if isinstance(body, dict) else float("nan")
            return JSONResponse({"offset_seconds": state.advance(seconds)})
        except (BadJsonBody, ValueError, TypeError) as error:
            return JSONResponse({"error": f'send {{"seconds": N}} with N >= 0 ({error})'}, status_code=400)

    return [
        Route("/_emulator/health", health, methods=["GET"]),
        Route("/_emulator/reset", reset, methods=["POST"]),
        Route("/_emulator/scenario", get_scenario, methods=["GET"]),
        Route("/_emulator/scenario", put_scenario, methods=["PUT", "PATCH"]),
        Route("/_emulator/ledger", ledger, methods=["GET"]),
        Route("/_emulator/requests", requests, methods=["GET"]),
        Route("/_emulator/advance", advance, methods=["POST"]),
    ]
