"""What every provider module shares on the HTTP side, and how it plugs into the app.

A provider is a folder ``emulator/<name>/`` with ``models.py`` (state machine), ``responses.py``
(HTTP -> model calls) and ``urls.py`` (routes), whose ``urls.PROVIDER`` is a `ProviderSpec`. The
app mounts it under its prefix, and `ProviderGate` wraps every request to it: the request is
logged, and a scenario fault, if one fires, answers in the provider's own error shape before the
handler runs.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from airflow_llm_batch.emulator.ledger import RefusedCreate
from airflow_llm_batch.emulator.state import EmulatorState, ProviderService, RequestRecord

ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
# Sent with every quota 429 (create_429 and queue quotas). The SDKs honour Retry-After; the real
# services send it on 429 (Anthropic documents it), and one second keeps tests fast.
RETRY_AFTER_SECONDS = "1"


@dataclass(frozen=True)
class ProviderSpec:
    """How one emulated provider plugs into the app.

    :param name: short name used in the request log, the ledger and ``state.services``.
    :param prefix: URL prefix, e.g. ``/openai``; the SDK's base URL starts with it.
    :param create_service: builds the provider's state machine (its ``models.py``) from the state.
    :param routes: builds the provider's routes for a service, relative to the prefix.
    :param error_body: the provider's error JSON for a status and a message (faults, 404s).
    :param create_route: regular expression matching the path of a batch create (POST), where the
        scenario's ``create_429`` answers; None: the provider creates no batches.
    """

    name: str
    prefix: str
    create_service: Callable[[EmulatorState], ProviderService]
    routes: Callable[[Any], list[BaseRoute]]
    error_body: Callable[[int, str], dict[str, Any]]
    create_route: str | None = None

    def is_create(self, method: str, path: str) -> bool:
        return self.create_route is not None and method == "POST" and re.search(self.create_route, path) is not None

    def not_found_route(self) -> Route:
        """A catch-all so unknown paths get a 404 the provider's SDK can parse."""

        async def not_found(request: Request) -> Response:
            message = f"Unknown route {request.method} {request.url.path} (emulator)."
            return JSONResponse(self.error_body(404, message), status_code=404)

        return Route("/{path:path}", not_found, methods=ALL_METHODS)


class BadJsonBody(ValueError):
    """The request body is neither empty nor JSON."""


async def read_json(request: Request) -> Any:
    """The JSON body; an empty body reads as ``{}`` (SDKs POST cancel with an empty JSON body)."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except ValueError as error:
        raise BadJsonBody(f"the request body is not valid JSON: {error}") from error


def bearer_token(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def api_key_problem(state: EmulatorState, key: str | None) -> str | None:
    """Why a key is refused (``missing`` or ``wrong``), or None if it is accepted."""
    if not key:
        return "missing"
    expected = state.scenario.api_key
    if expected is not None and key != expected:
        return "wrong"
    return None


class ProviderGate:
    """ASGI middleware: log provider requests and inject scenario HTTP faults before handlers.

    Control routes (``/_emulator/...``) pass untouched: a test must always be able to reset.
    """

    def __init__(self, app: ASGIApp, state: EmulatorState, providers: Sequence[ProviderSpec]) -> None:
        self.app = app
        self.state = state
        self.providers = list(providers)

    def provider_for(self, path: str) -> ProviderSpec | None:
        for spec in self.providers:
            if path == spec.prefix or path.startswith(spec.prefix + "/"):
                return spec
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        spec = self.provider_for(scope["path"]) if scope["type"] == "http" else None
        if spec is None:
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        received_at = self.state.now()
        statuses: list[int] = []

        async def send_and_note_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])
            await send(message)

        with self.state.lock:
            fault = self.state.faults.pick(self.state.scenario.http_faults, method, path)
            refuse_create = fault is None and spec.is_create(method, path)
            refuse_create = refuse_create and self.state.faults.refuse_this_create(self.state.scenario, spec.name)
            if refuse_create:
                self.state.ledger.record_refused_create(RefusedCreate(spec.name, int(received_at), None, "create_429"))
        try:
            if fault is not None:
                message = f"Emulated fault: HTTP {fault.status} injected by the scenario for {method} {path}."
                response = JSONResponse(spec.error_body(fault.status, message), status_code=fault.status)
                await response(scope, receive, send_and_note_status)
            elif refuse_create:
                message = (
                    "Too many batches are queued for this account; try again once some have completed "
                    "(emulated: scenario create_429)."
                )
                response = JSONResponse(
                    spec.error_body(429, message), status_code=429, headers={"retry-after": RETRY_AFTER_SECONDS}
                )
                await response(scope, receive, send_and_note_status)
            else:
                await self.app(scope, receive, send_and_note_status)
        finally:
            self.state.log_request(_record(scope, spec.name, received_at, statuses[0] if statuses else None))


def _record(scope: Scope, provider: str, received_at: float, status: int | None) -> RequestRecord:
    headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
    return RequestRecord(
        time=received_at,
        provider=provider,
        method=scope["method"],
        path=scope["path"],
        query=scope.get("query_string", b"").decode("latin-1"),
        user_agent=headers.get("user-agent"),
        content_type=headers.get("content-type"),
        status=status,
    )


async def result_download(state: EmulatorState, content: bytes, media_type: str) -> Response:
    """Serve a result file the way the scenario says: on time, slowly, or cut off halfway.

    A cut-off download announces the full ``Content-Length`` and stops at half, so the client sees
    the connection close before the body is complete (httpx2 raises ``RemoteProtocolError``).
    Callers must not hold the state lock.
    """
    with state.lock:
        delay = state.scenario.download_delay_seconds
        drop = state.faults.drop_this_download(state.scenario)
    if delay:
        await asyncio.sleep(delay)
    if not drop:
        return Response(content, media_type=media_type)

    async def half_then_stop() -> AsyncIterator[bytes]:
        yield content[: len(content) // 2]

    return StreamingResponse(half_then_stop(), media_type=media_type, headers={"content-length": str(len(content))})
