"""One backend per connection per event loop, shared by every trigger that polls through it.

A backend owns an async SDK client, and a client owns a connection pool. Built per trigger, a
thousand waiting sensors cost a thousand clients: about 20 ms of event-loop time each to build
(TLS setup), close to 1 MB each, and a thousand pools that each open their own connections.
Shared, the triggers of one triggerer reuse one pool per connection.

A backend is shared only between triggers of the same event loop (an async client belongs to
its loop) and the same connection *content*: a changed API key or URL gets a new backend. The
last trigger to let go closes it. Triggers that start together (a mapped task's thousand
sensors deferring at once) also share one connection lookup: each lookup costs the loop about
half a millisecond, and the result is reused for ``CONNECTION_REUSE_SECONDS``.

At most ``MAX_REQUESTS_IN_FLIGHT`` calls of a shared backend run at once; the others wait their
turn. The HTTP clients' connection pools probe every idle pooled connection each time a request
starts or ends, so a thousand simultaneous status calls (a thousand connections) cost the event
loop seconds per poll round, while a few connections serve them as fast as the provider answers.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import weakref
from dataclasses import dataclass, field
from typing import Any

from airflow_llm_batch.http_logs import quiet_http_client_logs

MAX_REQUESTS_IN_FLIGHT = 16
CONNECTION_REUSE_SECONDS = 10.0


class _Limited:
    """A shared backend whose provider calls (status, cancel) take turns, ``limit`` at a time."""

    def __init__(self, backend: Any, limit: int) -> None:
        self._backend = backend
        self._turns = asyncio.Semaphore(limit)

    async def aget_status(self, batch_id: str) -> Any:
        async with self._turns:
            return await self._backend.aget_status(batch_id)

    async def acancel(self, batch_id: str) -> None:
        async with self._turns:
            await self._backend.acancel(batch_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)


@dataclass
class _Shared:
    ready: asyncio.Task[Any]  # builds the backend in a worker thread; triggers that start together await one build
    users: int = 0


@dataclass
class _LoopState:
    backends: dict[str, _Shared] = field(default_factory=dict)
    lookups: dict[str, tuple[float, asyncio.Task[Any]]] = field(default_factory=dict)


class SharedBackends:
    """Reference-counted backends, keyed by event loop, connection content and provider."""

    def __init__(self) -> None:
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = weakref.WeakKeyDictionary()
        self._keys: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()

    async def acquire(self, conn_id: str, provider: str | None) -> Any:
        """The backend for this connection, built on first use in this loop; pair with :meth:`release`."""
        loop = asyncio.get_running_loop()
        quiet_http_client_logs()
        state = self._loops.setdefault(loop, _LoopState())
        conn = await _lookup(state, conn_id)
        key = _key_of(conn, provider)
        entry = state.backends.get(key)
        if entry is None or _failed(entry.ready):
            entry = state.backends[key] = _Shared(loop.create_task(_build(conn, provider)))
        entry.users += 1
        try:
            # Shielded: a trigger cancelled while it waits must not cancel the build for the others.
            backend = await asyncio.shield(entry.ready)
        except BaseException:
            entry.users -= 1
            if entry.users == 0 and state.backends.get(key) is entry:
                del state.backends[key]
            raise
        self._keys[backend] = key
        return backend

    async def release(self, backend: Any) -> None:
        """Let go of a backend from :meth:`acquire`; the last user closes its client."""
        state = self._loops.get(asyncio.get_running_loop())
        key = self._keys.get(backend)
        entry = state.backends.get(key) if state is not None and key is not None else None
        if entry is None or not entry.ready.done() or entry.ready.result() is not backend:  # not from this pool
            await backend.aclose()
            return
        entry.users -= 1
        if entry.users == 0:
            del state.backends[key]  # type: ignore[union-attr,arg-type]
            del self._keys[backend]
            await backend.aclose()


async def _build(conn: Any, provider: str | None) -> _Limited:
    """The backend with its async client built, in a worker thread: it imports the vendor SDK."""
    from airflow_llm_batch.hooks.llm_batch import prepared_backend

    return _Limited(await asyncio.to_thread(prepared_backend, conn, provider), MAX_REQUESTS_IN_FLIGHT)


async def _lookup(state: _LoopState, conn_id: str) -> Any:
    """``Connection.async_get``, shared by the triggers that start within a few seconds."""
    from airflow.sdk import Connection

    loop = asyncio.get_running_loop()
    recent = state.lookups.get(conn_id)
    if recent is None or loop.time() - recent[0] > CONNECTION_REUSE_SECONDS or _failed(recent[1]):
        recent = state.lookups[conn_id] = (loop.time(), loop.create_task(Connection.async_get(conn_id)))
    # Shielded: a trigger cancelled while it waits must not cancel the lookup of the others.
    return await asyncio.shield(recent[1])


def _failed(lookup: asyncio.Task[Any]) -> bool:
    return lookup.done() and (lookup.cancelled() or lookup.exception() is not None)


def _key_of(conn: Any, provider: str | None) -> str:
    """A digest of what the backend is built from, so the key never holds the API key itself."""
    parts = [conn.conn_type, conn.host, conn.login, conn.password, conn.schema, conn.port, conn.extra, provider]
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()


SHARED_BACKENDS = SharedBackends()
