"""One writer per job key: a lease file next to the job's files, created exclusively, with an expiry.

Two tasks with the same job key at once (the same run started twice against one work dir, a
zombie try still running beside its retry) would otherwise both find no batch and both create
one, paying twice. The lease makes them take turns: the first creates ``writer.lease`` in the job's
folder and holds it while it creates batches (renewing it after each one); the other waits for it
to go, then reads the record (or looks the batches up by tag) and re-attaches instead of creating.

How "exclusive" is made, by medium:

- local disk: ``O_CREAT | O_EXCL``, atomic on POSIX file systems (NFS v3+ included);
- object stores: ``open(mode="xb")``, which fsspec passes to stores that can refuse an existing
  object (s3fs sends ``If-None-Match: *``, a conditional write S3 has honoured since 2024-08);
- a store that cannot: write, wait :data:`SETTLE_SECONDS`, read back, and hold the lease only if
  it still names this owner (the later of two writers wins). Best effort, said so in the docs.

While held, a background thread renews the lease every quarter of its ``ttl_seconds``. A lease
whose holder died is taken over once it expires (``ttl_seconds`` after its last renewal), or at
once when it names a process on this host that no longer runs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from airflow_llm_batch.batch import jsonl
from airflow_llm_batch.batch.record_store import local_path
from airflow_llm_batch.batch.storage import StoragePath, uri_of
from airflow_llm_batch.exceptions import StateConflictError

log = logging.getLogger(__name__)

TTL_SECONDS = 60.0  # renewed every 15 s by the holder; a dead holder's lease is free a minute later
WAIT_SECONDS = 3600.0  # how long a second writer waits before it gives up with a message
POLL_SECONDS = 2.0
SETTLE_SECONDS = 2.0
# A lease file seen empty or half-written is a writer between its create and its write: give it
# this long before taking it for a dead writer's.
UNREADABLE_GRACE_SECONDS = 30.0
UNREADABLE: dict[str, Any] = {"owner": "(a writer that has not finished writing the lease)"}


class WriterLease:
    """The right to create batches for one job key, held through a file at ``path``.

    :param path: the lease file (``{job}/attempt-{n}/writer.lease``).
    :param job: the job key as text, for messages.
    :param ttl_seconds: a lease not renewed for this long is taken to be a dead holder's.
    :param wait_seconds: how long :meth:`acquire` waits for a live holder before failing.
    """

    def __init__(
        self,
        path: StoragePath,
        job: str,
        *,
        ttl_seconds: float = TTL_SECONDS,
        wait_seconds: float = WAIT_SECONDS,
        poll_seconds: float = POLL_SECONDS,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.path = path
        self.job = job
        self.ttl_seconds = ttl_seconds
        self.wait_seconds = wait_seconds
        self.poll_seconds = poll_seconds
        self.clock = clock
        self.sleep = sleep
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self.held = False
        self.waited = False
        self._stop_renewing = threading.Event()
        self._renewer: threading.Thread | None = None

    def __enter__(self) -> WriterLease:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lease, waiting while another live writer holds it (then :attr:`waited` is True)."""
        started = self.clock()
        announced = False
        unreadable_since: float | None = None
        while True:
            if self._try_create():
                self.held = True
                self._start_renewing()
                return
            holder = self._read()
            if holder is None:  # released between our create and our read: try again at once
                continue
            if holder is UNREADABLE:
                unreadable_since = unreadable_since or self.clock()
                if self.clock() - unreadable_since > UNREADABLE_GRACE_SECONDS:
                    self._break(holder)
                    continue
            elif float(holder.get("expires_at", 0)) < self.clock() or _dead_on_this_host(holder):
                self._break(holder)
                continue
            self.waited = True
            if not announced:
                log.warning(
                    "Another task is creating batches for %s (%s, since %s); waiting for it to finish, then "
                    "re-attaching to what it created instead of creating batches again",
                    self.job,
                    holder.get("owner"),
                    time.strftime("%H:%M:%S", time.gmtime(float(holder.get("acquired_at", 0)))),
                )
                announced = True
            if self.clock() - started > self.wait_seconds:
                raise StateConflictError(
                    f"Another task ({holder.get('owner')}) has been creating batches for {self.job} for "
                    f"{self.wait_seconds:.0f}s and still holds the lease {uri_of(self.path)}. Two runs with "
                    "the same job key are running at once; nothing was submitted by this one. Let the other "
                    "one finish, then clear this task. If no such task runs any more, delete the lease file."
                )
            self.sleep(self.poll_seconds)

    def renew(self) -> None:
        """Push the expiry forward (the background thread does this while the lease is held)."""
        if self.held:
            self._write(self._content(), exclusive=False)

    def _start_renewing(self) -> None:
        self._stop_renewing.clear()
        self._renewer = threading.Thread(target=self._renew_until_released, name="llm-batch-lease", daemon=True)
        self._renewer.start()

    def _renew_until_released(self) -> None:
        while not self._stop_renewing.wait(self.ttl_seconds / 4):
            try:
                self.renew()
            except Exception:  # a failed renewal must not kill the task; the next one may succeed
                log.warning("Could not renew the lease %s", uri_of(self.path), exc_info=True)

    def release(self) -> None:
        if not self.held:
            return
        self._stop_renewing.set()
        if self._renewer is not None:
            self._renewer.join()
            self._renewer = None
        self.held = False
        holder = self._read()
        if holder is not None and holder.get("owner") != self.owner:
            log.warning("The lease %s was taken over by %s while this task held it", uri_of(self.path), holder)
            return
        with contextlib.suppress(FileNotFoundError):
            _unlink(self.path)

    def _content(self) -> dict[str, Any]:
        now = self.clock()
        return {"owner": self.owner, "job": self.job, "acquired_at": now, "expires_at": now + self.ttl_seconds}

    def _try_create(self) -> bool:
        content = self._content()
        try:
            exclusive = self._write(content, exclusive=True)
        except FileExistsError:
            return False
        if exclusive:
            return True
        # The store cannot refuse an existing object: the later writer wins; see the module docstring.
        self.sleep(SETTLE_SECONDS)
        holder = self._read()
        return holder is not None and holder.get("owner") == self.owner

    def _write(self, content: dict[str, Any], *, exclusive: bool) -> bool:
        """Write the lease; returns whether the write was exclusive (raises FileExistsError if taken)."""
        payload = jsonl.dumps(content)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        local = local_path(self.path)
        if local is not None:
            flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
            descriptor = os.open(local, flags, 0o644)
            with os.fdopen(descriptor, "wb") as stream:
                stream.write(payload)
            return exclusive
        if exclusive:
            try:
                with self.path.open("xb") as stream:
                    stream.write(payload)
                return True
            except (ValueError, NotImplementedError, TypeError):
                if self.path.exists():
                    raise FileExistsError(uri_of(self.path)) from None
        with self.path.open("wb") as stream:
            stream.write(payload)
        return False

    def _read(self) -> dict[str, Any] | None:
        try:
            with self.path.open("rb") as stream:
                raw = stream.read()
        except FileNotFoundError:
            return None
        try:
            content = jsonl.loads(raw)
        except jsonl.JSONDecodeError:
            return UNREADABLE
        return content if isinstance(content, dict) else UNREADABLE

    def _break(self, holder: dict[str, Any]) -> None:
        """Remove an expired (or long unreadable) lease, unless someone replaced it since it was read."""
        log.warning("Taking over the expired lease %s of %s", uri_of(self.path), holder.get("owner"))
        if self._read() != holder:
            return
        with contextlib.suppress(FileNotFoundError):
            _unlink(self.path)


def _dead_on_this_host(holder: dict[str, Any]) -> bool:
    """Whether the holder is a process of this host that has ended (its lease needs no waiting out)."""
    host, _, rest = str(holder.get("owner", "")).partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, under another user
        return False
    return False


def _unlink(path: StoragePath) -> None:
    local = local_path(path)
    if local is not None:
        local.unlink()
    else:
        path.unlink()  # type: ignore[attr-defined]  # ObjectStoragePath has it; StoragePath is minimal
