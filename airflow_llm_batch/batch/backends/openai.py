"""OpenAI Batch API: a JSONL file uploaded through the Files API, one batch per file.

Wire facts (``shared/reference/provider-apis.md`` section 2): one model per input file; at most
50,000 requests and 200 MB per batch; the job key travels in batch ``metadata``; successful lines
go to the output file and failed ones (including expired: ``batch_expired``) to the error file.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airflow_llm_batch.batch import jsonl
from airflow_llm_batch.batch.backends.base import (
    BatchBackend,
    ChunkFile,
    ProviderLimits,
    RequestSpec,
)
from airflow_llm_batch.batch.backends.openai_endpoints import (
    META_CHUNK,
    META_JOB,
    RESPONSES,
    batch_metadata,
    chat_body_template,
    check_host_serves,
    choose_endpoint,
    chunk_endpoint,
    host_flag,
    metadata_refused,
    responses_body_template,
    responses_outcome,
)
from airflow_llm_batch.batch.backends.openai_lines import read_chat_block, succeeded_chat_line
from airflow_llm_batch.batch.backends.storage_cleanup import StorageCleanup
from airflow_llm_batch.batch.records import (
    BatchOutcome,
    BatchStatus,
    ErrorType,
    JobKey,
    Kind,
    RawOutcome,
)
from airflow_llm_batch.batch.row_blocks import OutcomeBlock
from airflow_llm_batch.exceptions import ConfigurationError

if TYPE_CHECKING:
    from openai import AsyncOpenAI, OpenAI

    from airflow_llm_batch.batch.backends.base import LineEncoder

# How many of the newest batches a lookup by job key reads (ten list pages) before it gives up.
FIND_SCAN_LIMIT = 1000
RESULT_CHUNK_BYTES = 1 << 18  # result files are streamed in pieces of this size
# Uploads and a batch's output and error files expire this long after their creation
# (``expires_after`` / ``output_expires_after``; OpenAI keeps batch files 30 days otherwise, and an
# organization may hold 100 GB of files). A week outlasts the 24 h window and a Results task
# retried days later; the Results task deletes them sooner (``delete_stored``).
DEFAULT_FILE_EXPIRY_SECONDS = 7 * 24 * 3600
FILE_EXPIRY_RANGE = (3600, 2_592_000)  # what the API accepts (openai-python file_create_params.py)

_OUTCOMES = {
    "completed": BatchOutcome.COMPLETED,
    "failed": BatchOutcome.FAILED,
    "expired": BatchOutcome.EXPIRED,
    "cancelled": BatchOutcome.CANCELLED,
}

# Batch-level codes that OpenAI writes into the error file's ``error.code`` (no HTTP response).
_LINE_ERROR_CODES = {
    "batch_expired": ErrorType.EXPIRED,
    "batch_cancelled": ErrorType.CANCELLED,
}
_CONTENT_CODES = {"content_filter", "content_policy_violation"}
_CONTEXT_CODES = {"context_length_exceeded", "string_above_max_length"}


class OpenAIBackend(BatchBackend):
    provider = "openai"
    default_limits = ProviderLimits(
        max_requests=50_000,
        max_bytes=200 * 1024 * 1024,
        max_request_bytes=10 * 1024 * 1024,
        custom_id_pattern=None,
        custom_id_max_length=512,
        single_model_per_batch=True,
    )
    console_url_template: ClassVar[str | None] = "https://platform.openai.com/batches/{batch_id}"
    request_format = "openai"
    default_metadata: ClassVar[bool] = True

    # The parts of a chat body that every item of a job shares, built on its first item.
    _chat_body: tuple[RequestSpec, dict[str, Any], str | None] | None = None
    _endpoint: tuple[RequestSpec, str] | None = None

    # Building requests ---------------------------------------------------------------------
    def build_body(self, spec: RequestSpec, text: str) -> dict[str, Any]:
        if spec.kind is Kind.EMBEDDING:
            return {"model": spec.model, "input": text, **spec.parameters}
        shared = self._chat_body
        if shared is None or shared[0] is not spec:
            if self.request_endpoint(spec) == RESPONSES:
                template = responses_body_template(
                    spec.model, spec.system_prompt, spec.parameters, spec.response_schema
                )
                shared = (spec, template, None if "input" in spec.parameters else "input")
            else:
                shared = (spec, chat_body_template(spec), None if "messages" in spec.parameters else "messages")
            self._chat_body = shared
        # (``parameters`` may replace the prompt's key, as they may replace any key)
        body = shared[1].copy()
        if shared[2] == "input":  # Responses: the prompt is the ``input`` string
            body["input"] = text
        elif shared[2] == "messages":
            user = {"role": "user", "content": text}
            body["messages"] = (
                [{"role": "system", "content": spec.system_prompt}, user] if spec.system_prompt else [user]
            )
        return body

    def build_line(self, custom_id: str, spec: RequestSpec, body: dict[str, Any]) -> dict[str, Any]:
        return {"custom_id": custom_id, "method": "POST", "url": self.line_url(spec), "body": body}

    def line_url(self, spec: RequestSpec) -> str:
        """The endpoint as the lines and the create call name it (Azure spells it without ``/v1``)."""
        return self.request_endpoint(spec)

    def request_endpoint(self, spec: RequestSpec) -> str:
        """``/v1/chat/completions``, ``/v1/responses`` or ``/v1/embeddings`` (``openai_endpoints``): the
        operator's ``endpoint=``, else the connection's ``endpoint`` extra, else chosen by the model."""
        known = self._endpoint
        if known is None or known[0] is not spec:  # (asked once per line where lines are built one by one)
            requested = spec.options.get("endpoint") or self.config.extra.get("endpoint")
            if spec.kind is Kind.EMBEDDING and not spec.options.get("endpoint"):
                requested = None  # a connection's chat endpoint does not apply to embedding jobs
            endpoint = choose_endpoint(spec.kind, spec.model, requested)
            check_host_serves(endpoint, self.config.extra.get("endpoints"))
            known = self._endpoint = (spec, endpoint)
        return known[1]

    def check_spec(self, spec: RequestSpec) -> None:
        self.request_endpoint(spec)  # an endpoint that cannot take the job's kind: refused before any I/O
        file_expiry(spec)

    def line_encoder(self, spec: RequestSpec) -> LineEncoder | None:
        """Chat lines from fixed JSON fragments around the id and the prompt (``line_encoder.py``)."""
        from airflow_llm_batch.batch.backends.line_encoder import fragment_encoder

        return fragment_encoder(self, spec) if spec.kind is Kind.CHAT else None

    # Clients ------------------------------------------------------------------------------------
    @functools.cached_property
    def client(self) -> OpenAI:
        from openai import OpenAI

        return OpenAI(**self._client_kwargs())

    @functools.cached_property
    def async_client(self) -> AsyncOpenAI:
        from openai import AsyncOpenAI

        return AsyncOpenAI(**self._client_kwargs())

    def prepare_async(self) -> None:
        _ = self.async_client.batches

    def _client_kwargs(self) -> dict[str, Any]:
        extra = self.config.extra
        organization = {"organization": extra.get("organization") or None, "project": extra.get("project") or None}
        return {**self.config.client_kwargs(), **organization}

    # Talking to the provider ----------------------------------------------------------------------
    def submit_chunk(self, chunk: ChunkFile, spec: RequestSpec, job_key: JobKey) -> str:
        expiry = self._file_expiry(spec)
        # Sent as multipart fields ``expires_after[anchor]`` / ``expires_after[seconds]`` on the
        # upload and as a JSON object on the batch (reference/provider-apis.md section 2.1-2.2).
        expires: Any = {"anchor": "created_at", "seconds": expiry}
        upload_expiry: dict[str, Any] = {} if expiry is None else {"expires_after": expires}
        output_expiry: dict[str, Any] = {} if expiry is None else {"output_expires_after": expires}
        with chunk.path.open("rb") as stream:
            uploaded = self.client.files.create(
                file=(chunk.path.name, stream, "application/jsonl"), purpose="batch", **upload_expiry
            )
        with metadata_refused(self.provider):
            batch = self.client.batches.create(
                input_file_id=uploaded.id,
                endpoint=chunk_endpoint(chunk) or self.line_url(spec),  # type: ignore[arg-type]
                completion_window="24h",
                **self._tags(job_key, chunk.index),
                **output_expiry,
            )
        return batch.id

    def delete_stored(self, statuses: Sequence[BatchStatus], job_key: JobKey, *, batches: bool) -> StorageCleanup:
        """The input, output and error file of every batch (OpenAI has no batch delete:
        ``reference/provider-apis.md`` section 2.2)."""
        cleanup = StorageCleanup()
        for status in statuses:
            for key in ("input_file_id", "output_file_id", "error_file_id"):
                file_id = status.details.get(key)
                if file_id:
                    cleanup.delete(file_id, self.client.files.delete)
        return cleanup

    # Host facts (``docs/platforms.md``): an OpenAI-compatible host may lack batch metadata or an endpoint.
    @property
    def keeps_metadata(self) -> bool:
        """Whether batches are tagged with the job key (``metadata`` extra; OpenAI: yes)."""
        return host_flag(self.config.extra.get("metadata"), self.default_metadata, "metadata")

    def _file_expiry(self, spec: RequestSpec) -> int | None:
        """Seconds after which the job's input and output files expire (``file_expiry``); a
        platform may need one (Azure's file-count cap) or take none (an OpenAI-compatible host)."""
        return file_expiry(spec)

    def _tags(self, job_key: JobKey, chunk_index: int) -> dict[str, Any]:
        return {"metadata": batch_metadata(job_key, chunk_index)} if self.keeps_metadata else {}

    def find_batches(self, job_key: JobKey) -> dict[int, str]:
        """OpenAI cannot filter batches by metadata, so scan the newest ones (the tag is exact).

        The list is newest first, so where a chunk has several batches the newest is kept. A host
        without metadata has no tags to match: nothing is found, the job's record is all there is.
        """
        if not self.keeps_metadata:
            return {}
        wanted = job_key.digest()
        found: dict[int, str] = {}
        for scanned, batch in enumerate(self.client.batches.list(limit=100)):
            metadata = batch.metadata or {}
            chunk = str(metadata.get(META_CHUNK, ""))
            if metadata.get(META_JOB) == wanted and chunk.isdigit():
                found.setdefault(int(chunk), batch.id)
            if scanned >= FIND_SCAN_LIMIT:
                break
        return found

    # The status is read from the raw JSON, not the SDK's ``Batch`` model: building that model is
    # a third of a status call's Python time, paid on every poll of every waiting batch
    # (docs/performance.md). Error answers still raise the SDK's exceptions.
    def get_status(self, batch_id: str) -> BatchStatus:
        return _status_of(jsonl.loads(self.client.batches.with_raw_response.retrieve(batch_id).content))

    async def aget_status(self, batch_id: str) -> BatchStatus:
        raw = await self.async_client.batches.with_raw_response.retrieve(batch_id)
        return _status_of(jsonl.loads(raw.content))

    def cancel(self, batch_id: str) -> None:
        self.client.batches.cancel(batch_id)

    async def acancel(self, batch_id: str) -> None:
        await self.async_client.batches.cancel(batch_id)

    def iter_outcomes(self, status: BatchStatus, kind: Kind) -> Iterator[RawOutcome]:
        for lines in self._result_lines(status):
            for line in lines:
                yield parse_result_line(line, kind)

    def outcome_blocks(self, status: BatchStatus, kind: Kind) -> Iterator[OutcomeBlock] | None:
        """The same outcomes as :meth:`iter_outcomes`, about a thousand lines at a time as columns
        (``records.OutcomeBlock``); ``None`` for embeddings, which take the one-line path."""
        if kind is not Kind.CHAT:
            return None
        read_one = functools.partial(parse_result_line, kind=kind)
        return (read_chat_block(lines, read_one) for lines in self._result_lines(status))

    def _result_lines(self, status: BatchStatus) -> Iterator[list[bytes]]:
        """The non-empty lines of the output file, then of the error file, in blocks.

        Split on bytes: ``iter_lines()`` of the HTTP client splits decoded text at every Unicode
        line boundary, U+2028 included, which JSON strings may hold unescaped.
        """
        for key in ("output_file_id", "error_file_id"):
            file_id = status.details.get(key)
            if file_id:
                with self._open_result_file(file_id) as chunks:
                    yield from jsonl.line_blocks(chunks)

    @contextlib.contextmanager
    def _open_result_file(self, file_id: str) -> Iterator[Iterable[bytes]]:
        """One result file's bytes, streamed in chunks (a file never sits whole in memory)."""
        with self.client.files.with_streaming_response.content(file_id) as response:
            yield response.iter_bytes(RESULT_CHUNK_BYTES)

    def test_connection(self) -> tuple[bool, str]:
        self.client.batches.list(limit=1)
        return True, "Connected to the OpenAI Batch API"

    def close(self) -> None:
        if "client" in self.__dict__:
            self.client.close()

    async def aclose(self) -> None:
        if "async_client" in self.__dict__:
            await self.async_client.close()


def file_expiry(spec: RequestSpec) -> int | None:
    """Seconds after which the job's files expire at OpenAI (``provider_options={"file_expiry_seconds": N}``;
    ``None``: OpenAI's own default of 30 days)."""
    value = spec.options.get("file_expiry_seconds", DEFAULT_FILE_EXPIRY_SECONDS)
    if value is None:
        return None
    low, high = FILE_EXPIRY_RANGE
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigurationError(
            f"provider_options file_expiry_seconds must be a whole number of seconds from {low} (1 hour) to "
            f"{high} (30 days), or None for OpenAI's default; got {value!r}"
        )
    return value


def _status_of(batch: dict[str, Any]) -> BatchStatus:
    """The Batch object as the API sends it (https://platform.openai.com/docs/api-reference/batch/object);
    ``request_counts``, ``errors`` and ``usage`` may be null or absent."""
    counts = batch.get("request_counts") or {}
    completed = counts.get("completed") or 0
    failed = counts.get("failed") or 0
    errors = tuple(
        f"{e.get('code')}: {e.get('message')}" + (f" (line {e['line']})" if e.get("line") is not None else "")
        for e in ((batch.get("errors") or {}).get("data") or [])
    )
    usage = batch.get("usage") or {}
    state = str(batch.get("status"))
    return BatchStatus(
        batch_id=str(batch["id"]),
        state=state,
        outcome=_OUTCOMES.get(state),
        total=counts.get("total") or 0,
        done=completed + failed,
        failed=failed,
        errors=errors,
        details={
            "input_file_id": batch.get("input_file_id"),
            "output_file_id": batch.get("output_file_id"),
            "error_file_id": batch.get("error_file_id"),
            "input_tokens": usage.get("input_tokens"),
            "output_tokens": usage.get("output_tokens"),
        },
    )


def parse_result_line(line: str | bytes, kind: Kind) -> RawOutcome:
    """One line of an output or error file. Malformed lines become server errors for their item."""
    if kind is Kind.CHAT:
        outcome = succeeded_chat_line(line)  # the usual line, decoded faster; None for any other
        if outcome is not None:
            return outcome
    try:
        record = jsonl.loads(line)
        custom_id = record["custom_id"]
    except (jsonl.JSONDecodeError, KeyError, TypeError):
        return RawOutcome(
            custom_id="",
            succeeded=False,
            error_type=ErrorType.SERVER_ERROR,
            error_message="malformed result line",
        )
    response = record.get("response")
    error = record.get("error")
    if response is None or response.get("status_code") != 200:
        return _failed_line(custom_id, response, error)
    body = response.get("body") or {}
    if body.get("object") == "response":  # a line of a /v1/responses batch
        return responses_outcome(custom_id, body)
    usage = body.get("usage") or {}
    if kind is Kind.EMBEDDING:
        data = body.get("data") or []
        return RawOutcome(
            custom_id=custom_id,
            succeeded=bool(data),
            embedding=data[0].get("embedding") if data else None,
            error_type=None if data else ErrorType.SERVER_ERROR,
            error_message=None if data else "no embedding in the response",
            model=body.get("model"),
            input_tokens=usage.get("prompt_tokens"),
            output_tokens=0,
        )
    choice = (body.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    finish_reason = choice.get("finish_reason")
    outcome = RawOutcome(
        custom_id=custom_id,
        succeeded=True,
        text=message.get("content"),
        model=body.get("model"),
        input_tokens=usage.get("prompt_tokens"),
        output_tokens=usage.get("completion_tokens"),
        finish_reason=finish_reason,
    )
    if finish_reason == "content_filter" or message.get("refusal"):
        outcome.succeeded = False
        outcome.error_type = ErrorType.CONTENT_FILTERED
        outcome.error_message = message.get("refusal") or "the output was filtered by the provider"
    return outcome


def _failed_line(custom_id: str, response: dict[str, Any] | None, error: dict[str, Any] | None) -> RawOutcome:
    if response is None:
        code = (error or {}).get("code") or ""
        return RawOutcome(
            custom_id=custom_id,
            succeeded=False,
            error_type=_LINE_ERROR_CODES.get(code, ErrorType.SERVER_ERROR),
            error_message=(error or {}).get("message") or code or "no response",
        )
    status_code = int(response.get("status_code") or 0)
    body_error = ((response.get("body") or {}).get("error")) or {}
    code = str(body_error.get("code") or body_error.get("type") or "")
    message = body_error.get("message") or f"HTTP {status_code}"
    return RawOutcome(
        custom_id=custom_id,
        succeeded=False,
        error_type=classify_http_error(status_code, code),
        error_message=message,
    )


def classify_http_error(status_code: int, code: str) -> ErrorType:
    """OpenAI's per-request HTTP failures onto the taxonomy."""
    if status_code == 429:
        return ErrorType.RATE_LIMITED
    if status_code >= 500 or status_code == 0:
        return ErrorType.SERVER_ERROR
    if status_code in (401, 403):
        return ErrorType.AUTH
    if code in _CONTENT_CODES:
        return ErrorType.CONTENT_FILTERED
    if code in _CONTEXT_CODES:
        return ErrorType.CONTEXT_LENGTH
    return ErrorType.INVALID_REQUEST
