"""Anthropic Message Batches: the requests travel inline in the create call, results come back as JSONL.

Wire facts (``shared/reference/provider-apis.md`` section 3): at most 100,000 requests or 256 MB per
batch; ``custom_id`` must match ``^[a-zA-Z0-9_-]{1,64}$`` (``prepare.IdMapper`` maps other ids to
``h-<hash>``); ``processing_status`` is ``in_progress | canceling | ended``; ``request_counts`` stay
all ``processing`` until the whole batch ends; result lines are ``succeeded`` (a Message),
``errored`` (a full ErrorResponse), ``canceled`` or ``expired``. No embeddings endpoint exists.

**Structured output is native.** anthropic 2.12's ``MessageCreateParams``, which is what each batch
request's ``params`` are, has ``output_config.format = {"type": "json_schema", "schema": ...}``, so
the answer's text block *is* the JSON. Forced tool use would work too, but spends a tool definition
and a ``tool_use`` turn on every request for the same result. Structured outputs accept a subset of
JSON schema (objects must say ``additionalProperties: false``; no numeric or length bounds), so the
schema goes through ``anthropic.transform_schema``, the same transformation ``messages.parse``
applies: unsupported keywords move into descriptions rather than getting every request refused.
The results step still validates against the user's full schema, so an answer that breaks a bound
becomes a retryable ``invalid_output`` row. (A ``tool_use`` answer, from a raw body that forces a
tool, is read as the JSON of the tool's input.)

**No tags, so no recovery by lookup.** Anthropic batches carry no metadata, so :meth:`find_batches`
finds nothing: a task killed between the create call and the record creates a second batch on
retry (and pays for its items twice), and so does a job whose record was lost (its work dir
deleted, on Airflow 3.1/3.2) or a second run of the same job key that does not share the first
one's record. The window is the create call itself; everything after it re-attaches through the
record (docs/reliability.md).

**How a batch ended.** ``in_progress`` and ``canceling`` are running (outcome None). ``ended`` is
``cancelled`` when a cancel was initiated (``cancel_initiated_at`` set), else ``expired`` when any
request expired (the batch ran out of its 24 h window, as OpenAI's ``expired`` status means), else
``completed``. Per-item results carry the detail either way.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_llm_batch.batch import jsonl
from airflow_llm_batch.batch.backends.base import BatchBackend, ChunkFile, ClientConfig, ProviderLimits, RequestSpec
from airflow_llm_batch.batch.backends.storage_cleanup import StorageCleanup
from airflow_llm_batch.batch.records import BatchOutcome, BatchStatus, ErrorType, JobKey, Kind, RawOutcome
from airflow_llm_batch.batch.schema import ResponseSchema
from airflow_llm_batch.exceptions import ConfigurationError

if TYPE_CHECKING:
    from anthropic import Anthropic, AsyncAnthropic

# Anthropic requires max_tokens on every request; used when the user's parameters do not set it.
DEFAULT_MAX_TOKENS = 1024

_ERROR_TYPES = {
    "rate_limit_error": ErrorType.RATE_LIMITED,
    "api_error": ErrorType.SERVER_ERROR,
    "overloaded_error": ErrorType.SERVER_ERROR,
    "timeout_error": ErrorType.SERVER_ERROR,
    "authentication_error": ErrorType.AUTH,
    "permission_error": ErrorType.AUTH,
    "billing_error": ErrorType.AUTH,
    "not_found_error": ErrorType.INVALID_REQUEST,  # e.g. an unknown model: the same request fails again
    "request_too_large": ErrorType.INVALID_REQUEST,
}
# "prompt is too long: 215000 tokens > 200000 maximum" and "input length and `max_tokens` exceed
# context limit: ..." are both invalid_request_error at Anthropic.
_CONTEXT_MESSAGE = re.compile(r"prompt is too long|context (limit|window|length)|context_length", re.IGNORECASE)
# A torn line still starts with its id: keep it, so the item reads "malformed" rather than "missing".
_LEADING_ID = re.compile(rb'^\s*\{\s*"custom_id"\s*:\s*"([a-zA-Z0-9_-]{1,64})"')
_NOT_RUN = {
    "canceled": (ErrorType.CANCELLED, "the batch was canceled before this request ran"),
    "expired": (ErrorType.EXPIRED, "the batch reached its 24-hour limit before this request ran"),
}


class AnthropicBackend(BatchBackend):
    provider = "anthropic"
    default_limits = ProviderLimits(
        max_requests=100_000,
        # "256 MB" read as decimal (the stricter reading), less 1 MB for the {"requests": [...]}
        # envelope the SDK wraps around the chunk's lines.
        max_bytes=255_000_000,
        max_request_bytes=32 * 1024 * 1024,
        custom_id_pattern=r"[a-zA-Z0-9_-]{1,64}",
        custom_id_max_length=64,
    )
    supports_embeddings = False
    embeddings_refusal = "Anthropic has no embeddings batch API; embeddings work on OpenAI and Gemini"
    model_prefix = "claude"
    console_url_template = "https://console.anthropic.com/workspaces/default/batches/{batch_id}"

    def __init__(self, config: ClientConfig, limits: ProviderLimits | None = None) -> None:
        super().__init__(config, limits)
        self._native_schema: tuple[ResponseSchema, dict[str, Any]] | None = None

    # Building requests ---------------------------------------------------------------------
    def check_spec(self, spec: RequestSpec) -> None:
        if spec.kind is Kind.EMBEDDING:
            raise ConfigurationError(
                "Anthropic's batch API has no embeddings endpoint; embeddings work on OpenAI and Gemini: "
                "use a connection (or provider=) for one of them"
            )
        if spec.response_schema is not None:
            try:
                self.native_schema(spec.response_schema)
            except (ValueError, TypeError) as err:
                raise ConfigurationError(
                    f"response_schema {spec.response_schema.name!r} cannot be sent as Anthropic structured "
                    f"output: {err}"
                ) from err

    def build_body(self, spec: RequestSpec, text: str) -> dict[str, Any]:
        body: dict[str, Any] = {"model": spec.model, "max_tokens": DEFAULT_MAX_TOKENS}
        if spec.system_prompt:
            body["system"] = _system(spec.system_prompt, bool(spec.options.get("cache_system_prompt")))
        body["messages"] = [{"role": "user", "content": text}]
        body.update(spec.parameters)
        if spec.response_schema is not None:
            output_config = dict(body.get("output_config") or {})
            output_config["format"] = {"type": "json_schema", "schema": self.native_schema(spec.response_schema)}
            body["output_config"] = output_config
        return body

    def native_schema(self, schema: ResponseSchema) -> dict[str, Any]:
        """The schema as Anthropic structured outputs take it; computed once, not once per item."""
        if self._native_schema is None or self._native_schema[0] is not schema:
            from anthropic import transform_schema

            self._native_schema = (schema, transform_schema(schema.schema))
        return self._native_schema[1]

    def build_line(self, custom_id: str, spec: RequestSpec, body: dict[str, Any]) -> dict[str, Any]:
        return {"custom_id": custom_id, "params": body}

    # Clients ------------------------------------------------------------------------------------
    @functools.cached_property
    def client(self) -> Anthropic:
        from anthropic import Anthropic

        return Anthropic(**self.config.client_kwargs())

    @functools.cached_property
    def async_client(self) -> AsyncAnthropic:
        from anthropic import AsyncAnthropic

        return AsyncAnthropic(**self.config.client_kwargs())

    def prepare_async(self) -> None:
        _ = self.async_client.messages.batches

    # Talking to the provider ----------------------------------------------------------------------
    def submit_chunk(self, chunk: ChunkFile, spec: RequestSpec, job_key: JobKey) -> str:
        """Send the chunk's lines as the batch's ``requests``; the job key cannot travel (no tags)."""
        with chunk.path.open("rb") as stream:
            requests = [jsonl.loads(line) for line in jsonl.iter_lines(stream)]
        batch = self.client.messages.batches.create(requests=requests)  # type: ignore[arg-type]
        return batch.id

    def find_batches(self, job_key: JobKey) -> dict[int, str]:
        """Always empty: Anthropic batches carry no tags (see the module docstring for what that costs)."""
        return {}

    def get_status(self, batch_id: str) -> BatchStatus:
        return status_of(self.client.messages.batches.retrieve(batch_id))

    async def aget_status(self, batch_id: str) -> BatchStatus:
        return status_of(await self.async_client.messages.batches.retrieve(batch_id))

    def cancel(self, batch_id: str) -> None:
        self.client.messages.batches.cancel(batch_id)

    def delete_stored(self, statuses: Sequence[BatchStatus], job_key: JobKey, *, batches: bool) -> StorageCleanup:
        """Anthropic keeps no files; with ``batches``, each ended batch and its results are deleted
        (``DELETE /v1/messages/batches/{id}``, allowed once processing ended; batches are not
        eligible for zero data retention, so a team that must not keep data deletes them)."""
        cleanup = StorageCleanup()
        if batches:
            for status in statuses:
                cleanup.delete(status.batch_id, self.client.messages.batches.delete)
        return cleanup

    async def acancel(self, batch_id: str) -> None:
        await self.async_client.messages.batches.cancel(batch_id)

    def iter_outcomes(self, status: BatchStatus, kind: Kind) -> Iterator[RawOutcome]:
        """Stream the results line by line.

        Through the raw streamed response rather than the SDK's typed decoder: the decoder raises
        on the first torn line and loses the rest of the batch; here a torn line costs one item.
        """
        results = self.client.messages.batches.with_streaming_response.results(status.batch_id)
        with results as response:
            for line in response.iter_lines():
                if line.strip():
                    yield parse_result_line(line)

    def test_connection(self) -> tuple[bool, str]:
        self.client.messages.batches.list(limit=1)
        return True, "Connected to the Anthropic Message Batches API"

    def close(self) -> None:
        if "client" in self.__dict__:
            self.client.close()

    async def aclose(self) -> None:
        if "async_client" in self.__dict__:
            await self.async_client.close()


def _system(prompt: str, cache: bool) -> str | list[dict[str, Any]]:
    """The system prompt; as a cached block when asked, since every request of a job repeats it."""
    if not cache:
        return prompt
    return [{"type": "text", "text": prompt, "cache_control": {"type": "ephemeral"}}]


def status_of(batch: Any) -> BatchStatus:
    """A MessageBatch onto the neutral status; the rule for the outcome is in the module docstring."""
    counts = batch.request_counts
    failed = counts.errored + counts.canceled + counts.expired
    total = counts.processing + counts.succeeded + failed
    outcome: BatchOutcome | None = None
    if batch.processing_status == "ended":
        if batch.cancel_initiated_at is not None:
            outcome = BatchOutcome.CANCELLED
        elif counts.expired:
            outcome = BatchOutcome.EXPIRED
        else:
            outcome = BatchOutcome.COMPLETED
    return BatchStatus(
        batch_id=batch.id,
        state=batch.processing_status,
        outcome=outcome,
        total=total,
        # Counts other than 'processing' stay 0 until the whole batch ends: no progress before that.
        done=total - counts.processing,
        failed=failed,
        details={
            "results_url": batch.results_url,
            "request_counts": {
                "succeeded": counts.succeeded,
                "errored": counts.errored,
                "canceled": counts.canceled,
                "expired": counts.expired,
            },
        },
    )


def parse_result_line(line: str | bytes) -> RawOutcome:
    """One results line onto the taxonomy. A malformed line becomes a server error for its item."""
    try:
        record = jsonl.loads(line)
        custom_id = record["custom_id"]
        result = record["result"]
        result_type = result["type"]
    except (jsonl.JSONDecodeError, KeyError, TypeError):
        raw = line.encode() if isinstance(line, str) else line
        match = _LEADING_ID.match(raw)
        return RawOutcome(
            custom_id=match.group(1).decode() if match else "",
            succeeded=False,
            error_type=ErrorType.SERVER_ERROR,
            error_message="malformed result line",
        )
    if result_type == "succeeded":
        return message_outcome(custom_id, result.get("message") or {})
    if result_type == "errored":
        return _errored(custom_id, result.get("error") or {})
    error_type, message = _NOT_RUN.get(
        result_type, (ErrorType.SERVER_ERROR, f"unknown result type {result_type!r} in the results file")
    )
    return RawOutcome(custom_id=custom_id, succeeded=False, error_type=error_type, error_message=message)


def message_outcome(custom_id: str, message: Mapping[str, Any]) -> RawOutcome:
    """The row of an answered Messages request (a refusal is a ``content_filtered`` failure); Bedrock's
    Claude records carry the same message."""
    usage = message.get("usage") or {}
    stop_reason = message.get("stop_reason")
    outcome = RawOutcome(
        custom_id=custom_id,
        succeeded=True,
        text=message_text(message.get("content") or []),
        model=message.get("model"),
        input_tokens=usage.get("input_tokens"),
        output_tokens=usage.get("output_tokens"),
        finish_reason=stop_reason,
    )
    if stop_reason == "refusal":
        outcome.succeeded = False
        outcome.error_type = ErrorType.CONTENT_FILTERED
        explanation = (message.get("stop_details") or {}).get("explanation")
        outcome.error_message = explanation or "the model declined to answer (stop_reason 'refusal')"
    return outcome


def message_text(content: list[Any]) -> str | None:
    """The answer's text: a forced tool's input as JSON if the model called one, else the text blocks."""
    blocks = [block for block in content if isinstance(block, dict)]
    for block in blocks:
        if block.get("type") == "tool_use":
            return json.dumps(block.get("input"), ensure_ascii=False, separators=(",", ":"))
    texts = [str(block.get("text") or "") for block in blocks if block.get("type") == "text"]
    return "".join(texts) if texts else None


def _errored(custom_id: str, error_response: dict[str, Any]) -> RawOutcome:
    # The API nests {type: error, error: {type, message}}; tolerate a bare error object as well.
    error = error_response.get("error") if error_response.get("type") == "error" else error_response
    error = error if isinstance(error, dict) else {}
    kind = str(error.get("type") or "")
    message = str(error.get("message") or kind or "the request errored without details")
    return RawOutcome(
        custom_id=custom_id, succeeded=False, error_type=classify_error(kind, message), error_message=message
    )


def classify_error(error_type: str, message: str) -> ErrorType:
    """Anthropic's error types onto the taxonomy; unknown types are taken as transient."""
    if error_type == "invalid_request_error":
        return ErrorType.CONTEXT_LENGTH if _CONTEXT_MESSAGE.search(message) else ErrorType.INVALID_REQUEST
    return _ERROR_TYPES.get(error_type, ErrorType.SERVER_ERROR)
