"""The records that pass between layers: requests, per-item results, batch status, error types."""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class Kind(StrEnum):
    """What one request asks the model for."""

    CHAT = "chat"
    EMBEDDING = "embedding"


class ErrorType(StrEnum):
    """The closed vocabulary every provider's per-item errors collapse into.

    The first six may succeed on another attempt; the last four will fail the same way again.
    ``expired`` is kept apart from ``cancelled`` because a user reads them differently: expiry
    means the provider ran out of time, cancellation means someone (or a timeout) stopped it.
    """

    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    MISSING = "missing"
    INVALID_OUTPUT = "invalid_output"
    INVALID_REQUEST = "invalid_request"
    CONTENT_FILTERED = "content_filtered"
    CONTEXT_LENGTH = "context_length"
    AUTH = "auth"

    @property
    def retryable(self) -> bool:
        return self in RETRYABLE_ERRORS


RETRYABLE_ERRORS = frozenset(
    {
        ErrorType.RATE_LIMITED,
        ErrorType.SERVER_ERROR,
        ErrorType.EXPIRED,
        ErrorType.CANCELLED,
        ErrorType.MISSING,
        ErrorType.INVALID_OUTPUT,
    }
)


class ItemStatus(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(slots=True)
class ItemResult:
    """One row per item per attempt: what the user reads in the results file.

    :param id: the user's own id (``id_field``), never the provider's ``custom_id``.
    :param text: the model's text (for structured output, the raw JSON text it returned).
    :param json: the parsed structured output, set only when it validated against the schema.
    :param embedding: the vector, for embedding requests.
    :param error_type: an :class:`ErrorType` value when ``status`` is ``failed``.
    :param retryable: whether another attempt may succeed (derived from ``error_type``).
    :param reused_from: set on an answer taken from the reuse store (``reuse=``, ``docs/reuse.md``):
        the run and attempt that paid for it (``run_id/attempt-n``); ``None`` when answered now.
    """

    id: str
    status: str
    text: str | None = None
    json: Any = None
    embedding: list[float] | None = None
    error_type: str | None = None
    error_message: str | None = None
    retryable: bool = False
    provider: str | None = None
    model: str | None = None
    batch_id: str | None = None
    attempt: int = 1
    input_tokens: int | None = None
    output_tokens: int | None = None
    finish_reason: str | None = None
    reused_from: str | None = None

    @classmethod
    def failure(cls, id: str, error_type: ErrorType, message: str | None, **fields: Any) -> ItemResult:
        return cls(
            id=id,
            status=ItemStatus.FAILED,
            error_type=error_type.value,
            error_message=message,
            retryable=error_type.retryable,
            **fields,
        )

    def to_row(self) -> dict[str, Any]:
        return asdict(self)


ITEM_RESULT_COLUMNS: tuple[str, ...] = tuple(ItemResult.__dataclass_fields__)
# The result row's columns and the kind of value each holds, in the order of ItemResult's fields
# (which is also the JSONL key order: orjson writes a dataclass field by field). The one
# definition: the Parquet schema (``io/sinks.py``) and the BigQuery table's first columns
# (``io/bigquery_sink.py``) map these kinds to their own types. Unlisted fields are strings.
_COLUMN_KINDS = {
    "json": "json",  # the structured output; a JSON-encoded string in Parquet, JSON in BigQuery
    "embedding": "float_list",
    "retryable": "bool",
    "attempt": "int32",
    "input_tokens": "int64",
    "output_tokens": "int64",
}
RESULT_COLUMNS: tuple[tuple[str, str], ...] = tuple(
    (name, _COLUMN_KINDS.get(name, "string")) for name in ITEM_RESULT_COLUMNS
)


@dataclass(slots=True)
class RawOutcome:
    """What a backend makes of one provider result line, before the core validates it.

    The backend knows the wire format; the core knows the schema, the id mapping and the attempt.
    """

    custom_id: str
    succeeded: bool
    text: str | None = None
    embedding: list[float] | None = None
    error_type: ErrorType | None = None
    error_message: str | None = None
    model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    finish_reason: str | None = None


class BatchOutcome(StrEnum):
    """How a batch ended, in the same words for every provider."""

    COMPLETED = "completed"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class BatchStatus:
    """A provider's batch, as seen by one status call.

    :param state: the provider's own status word (``in_progress``, ``ended``, ``JOB_STATE_RUNNING``).
    :param outcome: set once the batch has ended; ``None`` while it runs.
    :param done: items with a result so far (succeeded or failed), where the provider tells.
    :param details: provider-specific facts the results step needs (output file ids, ...).
    """

    batch_id: str
    state: str
    outcome: BatchOutcome | None
    total: int
    done: int
    failed: int
    errors: tuple[str, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ended(self) -> bool:
        return self.outcome is not None

    def summary(self) -> dict[str, Any]:
        """The plain-JSON form kept in the manifest and trigger events (no provider details)."""
        return {
            "state": self.state,
            "outcome": self.outcome.value if self.outcome else None,
            "total": self.total,
            "done": self.done,
            "failed": self.failed,
            "errors": list(self.errors),
        }


_UNSAFE_PATH_CHARS = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True, slots=True)
class JobKey:
    """What identifies one submit task instance across its retries.

    Deliberately without ``try_number``: a retry of the same task instance must find the batches
    its earlier try created instead of paying for them again.
    """

    dag_id: str
    task_id: str
    run_id: str
    map_index: int = -1

    def as_string(self) -> str:
        return f"{self.dag_id}/{self.task_id}/{self.run_id}/{self.map_index}"

    def digest(self) -> str:
        """A short, stable, provider-safe tag (64 hex bits are plenty to tell jobs apart)."""
        return hashlib.sha256(self.as_string().encode()).hexdigest()[:16]

    def path_parts(self) -> tuple[str, ...]:
        """Folder names under the work dir; run ids hold ':' and '+', which object stores dislike."""
        task = self.task_id if self.map_index < 0 else f"{self.task_id}.{self.map_index}"
        return tuple(_UNSAFE_PATH_CHARS.sub("_", part) for part in (self.dag_id, self.run_id, task))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobKey:
        return cls(**data)
