"""The Gemini Files API behind the emulator: resumable uploads, file resources, generated outputs.

The upload protocol (``reference/provider-apis.md`` section 4.2): a *start* request announces the
size and type and gets an upload URL; the bytes follow in chunks, the last one marked
``finalize``, which answers ``{"file": File}``. Files live 48 hours. Batch outputs are
``GENERATED`` files with a ``downloadUri``; uploaded files cannot be downloaded (the API says so).
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from airflow_llm_batch.emulator.gemini.lines import status_of
from airflow_llm_batch.emulator.state import EmulatorState

FILE_TTL_SECONDS = 48 * 3600
MAX_DELETABLE_ID = 40  # characters of a file id (without ``files/``) that a delete accepts
MAX_FILE_BYTES = 2 * 1024 * 1024 * 1024
PUBLIC_BASE = "https://generativelanguage.googleapis.com"


class GeminiError(Exception):
    """An API error; the HTTP layer renders it as ``{"error": {"code", "message", "status"}}``."""

    def __init__(
        self,
        code: int,
        message: str,
        status: str | None = None,
        details: list[Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.details = details
        self.headers = headers

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {
            "code": self.code,
            "message": self.message,
            "status": self.status or status_of(self.code),
        }
        if self.details is not None:
            error["details"] = self.details
        return {"error": error}


def rfc3339(seconds: float) -> str:
    """Google's timestamp form: UTC with a ``Z`` and fractional seconds."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class StoredFile:
    """A file resource; ``content`` is what ``:download`` serves."""

    id: str
    display_name: str | None
    mime_type: str
    created_at: float
    content: bytes
    source: str  # UPLOADED or GENERATED

    @property
    def name(self) -> str:
        return f"files/{self.id}"

    def to_api(self) -> dict[str, Any]:
        resource: dict[str, Any] = {
            "name": self.name,
            "mimeType": self.mime_type,
            "sizeBytes": str(len(self.content)),  # int64 travels as a JSON string
            "createTime": rfc3339(self.created_at),
            "updateTime": rfc3339(self.created_at),
            "expirationTime": rfc3339(self.created_at + FILE_TTL_SECONDS),
            "sha256Hash": base64.b64encode(hashlib.sha256(self.content).hexdigest().encode()).decode(),
            "uri": f"{PUBLIC_BASE}/v1beta/{self.name}",
            "state": "ACTIVE",
            "source": self.source,
        }
        if self.display_name:
            resource["displayName"] = self.display_name
        if self.source == "GENERATED":
            resource["downloadUri"] = f"{PUBLIC_BASE}/download/v1beta/{self.name}:download?alt=media"
        return resource


@dataclass
class UploadSession:
    """An upload between *start* and *finalize*."""

    id: str
    display_name: str | None
    mime_type: str
    size: int
    received: bytearray = field(default_factory=bytearray)


class FileStore:
    """Files and open upload sessions. Callers hold ``state.lock``."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state
        self.files: dict[str, StoredFile] = {}
        self.sessions: dict[str, UploadSession] = {}

    def reset(self) -> None:
        self.files.clear()
        self.sessions.clear()

    def start_upload(self, display_name: str | None, mime_type: str | None, size: int | None) -> str:
        if size is None or size < 0:
            raise GeminiError(400, "X-Goog-Upload-Header-Content-Length is required to start an upload.")
        if size > MAX_FILE_BYTES:
            raise GeminiError(400, f"The file is {size} bytes; the Files API accepts at most {MAX_FILE_BYTES}.")
        session = UploadSession(uuid.uuid4().hex, display_name, mime_type or "application/octet-stream", size)
        self.sessions[session.id] = session
        return session.id

    def upload_chunk(self, session_id: str, offset: int, data: bytes, finalize: bool) -> StoredFile | None:
        """Append a chunk; on ``finalize`` store the file and return it."""
        session = self.sessions.get(session_id)
        if session is None:
            raise GeminiError(404, "No upload session with this upload_id (expired or already finalized).")
        if offset != len(session.received):
            raise GeminiError(
                400, f"X-Goog-Upload-Offset {offset} does not match the {len(session.received)} bytes received."
            )
        session.received.extend(data)
        if not finalize:
            return None
        del self.sessions[session_id]
        if len(session.received) != session.size:
            raise GeminiError(
                400, f"The upload has {len(session.received)} bytes; the start request announced {session.size}."
            )
        return self.store(bytes(session.received), session.display_name, session.mime_type, "UPLOADED")

    def store(
        self, content: bytes, display_name: str | None, mime_type: str, source: str, file_id: str | None = None
    ) -> StoredFile:
        stored = StoredFile(
            file_id or uuid.uuid4().hex[:12], display_name, mime_type, self.state.now(), content, source
        )
        self.files[stored.id] = stored
        return stored

    def get(self, file_id: str) -> StoredFile:
        stored = self.files.get(file_id.removeprefix("files/"))
        if stored is None:
            raise GeminiError(403, f"You do not have permission to access the File {file_id} or it may not exist.")
        return stored

    def delete(self, file_id: str) -> None:
        """Only delete checks the 40-character limit on a file id; get and download accept a batch's
        longer ``batch-<id>`` output file, so those files cannot be deleted and stay until they expire
        (python-genai#1759, comment of 2026-09-11: "only DeleteFileRequest enforces the 40-character
        limit"; the message is the one quoted there and in python-genai#1613)."""
        bare = file_id.removeprefix("files/")
        if len(bare) > MAX_DELETABLE_ID:
            raise GeminiError(
                400,
                f"* DeleteFileRequest.name: File ID (name excluding 'files/') cannot be more than "
                f"{MAX_DELETABLE_ID} characters.\n",
                "INVALID_ARGUMENT",
            )
        del self.files[self.get(file_id).id]

    def downloadable(self, file_id: str) -> bytes:
        stored = self.get(file_id)
        if stored.source != "GENERATED":
            raise GeminiError(400, "Only generated files can be downloaded; files created by upload cannot.")
        return stored.content

    def list(self, page_size: int, page_token: str | None) -> dict[str, Any]:
        newest_first = [f.to_api() for f in reversed(self.files.values())]
        return page(newest_first, "files", page_size, page_token)


def page(rows: list[dict[str, Any]], key: str, page_size: int, page_token: str | None) -> dict[str, Any]:
    """One page of a Google list: ``{key: [...], "nextPageToken"}``; the token is an opaque offset."""
    start = 0
    if page_token:
        try:
            start = int(base64.urlsafe_b64decode(page_token.encode()).decode())
        except ValueError as error:
            raise GeminiError(400, "Invalid page token.") from error
    rows_page = rows[start : start + page_size]
    body: dict[str, Any] = {key: rows_page} if rows_page else {}
    if start + page_size < len(rows):
        body["nextPageToken"] = base64.urlsafe_b64encode(str(start + page_size).encode()).decode()
    return body
