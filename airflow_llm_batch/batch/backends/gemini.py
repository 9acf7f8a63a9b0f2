"""Gemini Batch API on the Developer API (API key): inline requests or an uploaded JSONL file.

Wire facts (``shared/reference/provider-apis.md`` sections 4.1, 4.2, 4.4, 4.5):

- One model per batch: it is in the URL (``models/M:batchGenerateContent``), never in the body.
- Inline requests must keep the whole create request under 20 MB; a file may hold 2 GB.
  The Developer API documents sizes, not a request count; 100,000 per batch is our choice.
- The job key travels in ``display_name`` (``airflow:<dag>/<task>:job_key=<digest>:chunk=<n>``),
  the only tag the Developer API has; :meth:`GeminiBackend.find_batches` scans for it.
- Results are inline (``dest.inlined_responses``, keys in ``metadata.key``) or a responses file of
  ``{"key", "response"|"error"}`` lines. Embeddings always go through a file: the SDK's inline
  embedding form has no per-request metadata, so results could only be matched by position.
- Job states arrive as ``JOB_STATE_*`` (the SDK maps ``BATCH_STATE_*``). Only SUCCEEDED, FAILED,
  CANCELLED and EXPIRED are terminal; PARTIALLY_SUCCEEDED is read as completed with its per-item
  errors kept. ``batchStats`` and the Operation's ``error`` are dropped by the SDK in Developer
  mode, so counts are known only from inline results, and a failed job's reason may be absent.
"""

from __future__ import annotations

import functools
import io
import json
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_llm_batch.batch import jsonl
from airflow_llm_batch.batch.backends.base import (
    BatchBackend,
    ChunkFile,
    ClientConfig,
    ProviderLimits,
    RequestSpec,
    StatusRefusal,
)
from airflow_llm_batch.batch.backends.storage_cleanup import StorageCleanup
from airflow_llm_batch.batch.records import BatchOutcome, BatchStatus, ErrorType, JobKey, Kind, RawOutcome
from airflow_llm_batch.exceptions import ConfigurationError

if TYPE_CHECKING:
    from google.genai import Client

JSONL_MIME = "application/jsonl"
# The 20 MB limit covers the whole create request as the SDK sends it (json.dumps: spaces after
# separators, non-ASCII escaped), so the measured request must also leave room for the envelope.
INLINE_REQUEST_LIMIT = 20 * 1024 * 1024 - 64 * 1024
NAME_PART_LENGTH = 40
FIND_SCAN_LIMIT = 1000
EMBEDDING_PARAMETERS = {"dimensions": "outputDimensionality", "task_type": "taskType", "title": "title"}
# Common names users bring from other providers, onto Gemini's generationConfig names.
PARAMETER_ALIASES = {
    "max_tokens": "maxOutputTokens",
    "max_completion_tokens": "maxOutputTokens",
    "stop": "stopSequences",
}
# GenerateContentRequest fields that sit beside generationConfig, not inside it.
REQUEST_LEVEL_FIELDS = frozenset({"safetySettings", "tools", "toolConfig", "cachedContent", "labels", "serviceTier"})
# finishReason values that mean the answer was withheld by a policy (types.FinishReason).
BLOCKED_FINISH_REASONS = frozenset({"SAFETY", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII"})
# google.rpc.Status may carry gRPC codes instead of HTTP ones; the HTTP equivalents.
_GRPC_TO_HTTP = {1: 499, 2: 500, 3: 400, 4: 504, 5: 404, 7: 403, 8: 429, 9: 400, 11: 400, 13: 500, 14: 503, 16: 401}
_SERVER_STATUSES = frozenset({"INTERNAL", "UNAVAILABLE", "DEADLINE_EXCEEDED", "UNKNOWN"})
_CONTEXT_WORDS = ("token", "context", "too long")

_OUTCOMES = {
    "JOB_STATE_SUCCEEDED": BatchOutcome.COMPLETED,
    "JOB_STATE_PARTIALLY_SUCCEEDED": BatchOutcome.COMPLETED,
    "JOB_STATE_FAILED": BatchOutcome.FAILED,
    "JOB_STATE_CANCELLED": BatchOutcome.CANCELLED,
    "JOB_STATE_EXPIRED": BatchOutcome.EXPIRED,
}


class GeminiBackend(BatchBackend):
    """The Gemini Developer API's batch mode through ``google.genai``.

    ``config.extra`` keys: ``api_version`` (the SDK's default: ``v1`` from google-genai 3.0, ``v1beta``
    in 2.x; ``v1beta`` for the REST docs' paths), ``inline_max_bytes`` (chunks at most this big are
    sent inline; default 20 MB), ``max_retries`` (SDK retries on 408/429/5xx; default 2), ``timeout`` (seconds).
    """

    provider = "gemini"
    default_limits = ProviderLimits(
        max_requests=100_000,
        max_bytes=2 * 1024 * 1024 * 1024,
        max_request_bytes=20 * 1024 * 1024,
        custom_id_pattern=None,
        single_model_per_batch=True,
    )
    # AI Studio lists batches at https://aistudio.google.com/batches, but has no per-batch page.
    console_url_template = None

    # Building requests ---------------------------------------------------------------------
    def build_body(self, spec: RequestSpec, text: str) -> dict[str, Any]:
        """A ``GenerateContentRequest`` (or ``EmbedContentRequest``) in REST JSON, without the model."""
        if spec.kind is Kind.EMBEDDING:
            body: dict[str, Any] = {"content": {"parts": [{"text": text}]}}
            for name, value in spec.parameters.items():
                body[EMBEDDING_PARAMETERS.get(name, name)] = value
            return body
        body = {"contents": [{"role": "user", "parts": [{"text": text}]}]}
        if spec.system_prompt:
            body["systemInstruction"] = {"parts": [{"text": spec.system_prompt}]}
        request_level, generation = generation_parameters(spec.parameters)
        body.update(request_level)
        if spec.response_schema is not None:
            # responseJsonSchema takes full JSON Schema ($defs, $ref, anyOf); responseSchema only
            # Gemini's OpenAPI subset, which pydantic's schemas often exceed.
            generation["responseMimeType"] = "application/json"
            generation["responseJsonSchema"] = spec.response_schema.schema
        if generation:
            body["generationConfig"] = generation
        return body

    def build_line(self, custom_id: str, spec: RequestSpec, body: dict[str, Any]) -> dict[str, Any]:
        """The input-file line form; inline submission converts it (see :func:`inlined_request`)."""
        return {"key": custom_id, "request": body}

    def check_spec(self, spec: RequestSpec) -> None:
        """Refuse parameters the API would refuse, before anything is written or sent."""
        if spec.kind is Kind.EMBEDDING:
            known = set(EMBEDDING_PARAMETERS) | set(EMBEDDING_PARAMETERS.values())
            unknown = sorted(set(spec.parameters) - known)
            if unknown:
                raise ConfigurationError(
                    f"gemini embeddings take the parameters {sorted(EMBEDDING_PARAMETERS)}; got {unknown}"
                )
            return
        from google.genai import types
        from pydantic import ValidationError

        _, generation = generation_parameters(spec.parameters)
        try:
            types.GenerationConfig.model_validate(generation)
        except ValidationError as err:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(root)'}: {e['msg']}" for e in err.errors())
            raise ConfigurationError(
                f"gemini: parameters do not fit generationConfig ({problems}); use Gemini's names "
                "(temperature, topP, maxOutputTokens, ...) or max_tokens"
            ) from None

    # Clients ------------------------------------------------------------------------------------
    @functools.cached_property
    def client(self) -> Client:
        """The one ``genai.Client``; kept on the backend because collecting it closes its HTTP client.

        ``client.aio`` (the async surface used in the triggerer) shares its configuration.
        """
        from google import genai

        # vertexai=False: GOOGLE_GENAI_USE_VERTEXAI in the environment must not switch APIs.
        return genai.Client(vertexai=False, api_key=self.config.api_key, http_options=http_options(self.config))

    def prepare_async(self) -> None:
        _ = self.client.aio.batches

    @property
    def inline_max_bytes(self) -> int:
        return int(self.config.extra.get("inline_max_bytes", 20 * 1024 * 1024))

    # Talking to the provider ----------------------------------------------------------------------
    def submit_chunk(self, chunk: ChunkFile, spec: RequestSpec, job_key: JobKey) -> str:
        # Plain dicts: the SDK validates them into its config and InlinedRequest types.
        config: Any = {"display_name": display_name(job_key, chunk.index)}
        inline: Any = None
        if spec.kind is Kind.CHAT and chunk.bytes <= self.inline_max_bytes:
            inline = self._inline_requests(chunk)
        if inline is not None:
            batch = self.client.batches.create(model=chunk.model, src=inline, config=config)
            return str(batch.name)
        file_name = self._upload(chunk, config["display_name"])
        if spec.kind is Kind.EMBEDDING:
            with warnings.catch_warnings():
                # create_embeddings is marked experimental in google-genai; the warning is noise here.
                warnings.filterwarnings("ignore", message=r".*create_embeddings\(\) is experimental")
                batch = self.client.batches.create_embeddings(
                    model=chunk.model,
                    src={"file_name": file_name},
                    config=config,
                )
        else:
            batch = self.client.batches.create(model=chunk.model, src=file_name, config=config)
        return str(batch.name)

    def _inline_requests(self, chunk: ChunkFile) -> list[dict[str, Any]] | None:
        """The chunk as SDK inline requests, or None when the sent request would pass 20 MB."""
        requests = [inlined_request(line) for line in jsonl.read_jsonl(chunk.path)]
        if len(json.dumps(requests)) > INLINE_REQUEST_LIMIT:
            return None
        return requests

    def _upload(self, chunk: ChunkFile, name: str) -> str:
        with chunk.path.open("rb") as stream:
            # ObjectStoragePath streams are not io.IOBase, which the SDK requires of file objects.
            readable = stream if isinstance(stream, io.IOBase) else _Readable(stream)
            uploaded = self.client.files.upload(file=readable, config={"mime_type": JSONL_MIME, "display_name": name})
        return str(uploaded.name)

    def find_batches(self, job_key: JobKey) -> dict[int, str]:
        """The Developer API cannot filter batches, so scan the newest ones for the display name."""
        found: dict[int, str] = {}
        for scanned, batch in enumerate(self.client.batches.list(config={"page_size": 100})):
            chunk = chunk_of_display_name(batch.display_name, job_key)
            if chunk is not None:
                found.setdefault(chunk, str(batch.name))
            if scanned >= FIND_SCAN_LIMIT:
                break
        return found

    def get_status(self, batch_id: str) -> BatchStatus:
        return status_of(self.client.batches.get(name=batch_id))

    async def aget_status(self, batch_id: str) -> BatchStatus:
        return status_of(await self.client.aio.batches.get(name=batch_id))

    def status_refusal(self, error: BaseException) -> StatusRefusal | None:
        """Also a wrong key: the Gemini API answers it 400 ``INVALID_ARGUMENT`` "API key not valid" with
        the ``ErrorInfo`` reason ``API_KEY_INVALID``, not 401 (a missing or unpermitted key is 403
        ``PERMISSION_DENIED``: https://ai.google.dev/gemini-api/docs/troubleshooting)."""
        refusal = super().status_refusal(error)
        if refusal is None and getattr(error, "code", None) == 400 and "API_KEY_INVALID" in str(error):
            return StatusRefusal("auth", 400, "ClientError, INVALID_ARGUMENT, API_KEY_INVALID")
        return refusal

    def cancel(self, batch_id: str) -> None:
        self.client.batches.cancel(name=batch_id)

    async def acancel(self, batch_id: str) -> None:
        await self.client.aio.batches.cancel(name=batch_id)

    def iter_outcomes(self, status: BatchStatus, kind: Kind) -> Iterator[RawOutcome]:
        for entry in status.details.get("inlined_responses") or ():
            yield parse_result(entry.model_dump(mode="json", by_alias=True, exclude_none=True), kind)
        file_name = status.details.get("responses_file")
        if file_name:
            # The SDK streams a download into a writable file; a temporary file keeps memory flat.
            with tempfile.TemporaryFile() as buffer:
                self.client.files.download(file=file_name, destination=buffer)
                buffer.seek(0)
                for line in buffer:
                    if line.strip():
                        yield parse_result_line(line, kind)

    def delete_stored(self, statuses: Sequence[BatchStatus], job_key: JobKey, *, batches: bool) -> StorageCleanup:
        """The job's uploaded input files (found by their display name: the Developer API's batch
        does not say which file it read) and each batch's output file, which Gemini refuses to
        delete today (see :func:`_output_kept`)."""
        cleanup = StorageCleanup()
        for scanned, stored in enumerate(self.client.files.list(config={"page_size": 100})):
            if chunk_of_display_name(stored.display_name, job_key) is not None:
                cleanup.delete(str(stored.name), lambda name: self.client.files.delete(name=name))
            if scanned >= FIND_SCAN_LIMIT:
                break
        for status in statuses:
            output = status.details.get("responses_file")
            if output:
                cleanup.delete(str(output), lambda name: self.client.files.delete(name=name), _output_kept)
        return cleanup

    def test_connection(self) -> tuple[bool, str]:
        self.client.batches.list(config={"page_size": 1})
        return True, "Connected to the Gemini Batch API"

    def close(self) -> None:
        if "client" in self.__dict__:
            self.client.close()

    async def aclose(self) -> None:
        if "client" in self.__dict__:
            await self.client.aio.aclose()


class _Readable(io.RawIOBase):
    """A binary stream presented as ``io.IOBase`` (what ``files.upload`` accepts besides a path)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        return bytes(self._stream.read(size))

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return int(self._stream.seek(offset, whence))

    def tell(self) -> int:
        return int(self._stream.tell())


def _output_kept(error: Exception) -> str | None:
    """Why a batch's output file stays: its id ``batch-<36 characters>`` is longer than the 40 that a
    file delete accepts, while get and download take it (python-genai#1759, open; js-genai#1227).
    Gemini deletes every file 48 hours after its creation, so it goes then."""
    if getattr(error, "code", None) == 400 and "40 characters" in str(error):
        return (
            "Gemini refuses to delete batch output files (their id is longer than the 40 characters a delete "
            "accepts: googleapis/python-genai#1759); it expires 48 hours after the batch ended"
        )
    return None


def display_name(job_key: JobKey, chunk_index: int) -> str:
    """``airflow:<dag>/<task>:job_key=<digest>:chunk=<n>``; the digest is what lookups match on."""
    dag, task = job_key.dag_id[:NAME_PART_LENGTH], job_key.task_id[:NAME_PART_LENGTH]
    return f"airflow:{dag}/{task}:job_key={job_key.digest()}:chunk={chunk_index}"


def chunk_of_display_name(name: str | None, job_key: JobKey) -> int | None:
    """The chunk index a :func:`display_name` names, if it names this job key."""
    prefix, found, chunk = (name or "").rpartition(":chunk=")
    if not found or not chunk.isdigit() or not prefix.endswith(f":job_key={job_key.digest()}"):
        return None
    return int(chunk)


def http_options(config: ClientConfig) -> Any:
    """The ``genai`` client's HTTP options from the connection: endpoint, API version, timeout, retries."""
    from google.genai import types

    options: dict[str, Any] = {}
    if config.base_url:
        options["base_url"] = config.base_url
    if config.extra.get("api_version"):
        options["api_version"] = str(config.extra["api_version"])
    if config.timeout is not None:
        options["timeout"] = int(config.timeout * 1000)  # genai counts milliseconds
    if config.max_retries > 0:
        options["retry_options"] = types.HttpRetryOptions(attempts=config.max_retries + 1)
    return types.HttpOptions(**options)


def status_of(batch: Any) -> BatchStatus:
    """A ``BatchJob`` as a :class:`BatchStatus`.

    Counts: the SDK drops ``batchStats`` in Developer mode, so ``total`` and ``done`` stay 0 while
    the batch runs (progress lines fall back to the manifest's counts); once ended, inline results
    give them. A failed job's reason (the Operation's ``error``) is dropped by the SDK too.
    """
    state = str(getattr(batch.state, "value", batch.state) or "JOB_STATE_UNSPECIFIED")
    state = state.replace("BATCH_STATE_", "JOB_STATE_", 1)  # the SDK maps these; unknown names pass through
    outcome = _OUTCOMES.get(state)
    dest = batch.dest
    inline = (dest.inlined_responses or dest.inlined_embed_content_responses) if dest is not None else None
    errors: tuple[str, ...] = ()
    if outcome is BatchOutcome.FAILED:
        error = batch.error
        reason = f"{error.code}: {error.message}" if error is not None and error.message else None
        errors = (reason or "Gemini reported the batch as failed; the SDK passes on no reason (see AI Studio)",)
    total = len(inline) if outcome is not None and inline else 0
    failed = sum(1 for entry in inline if entry.error is not None) if total and inline else 0
    return BatchStatus(
        batch_id=str(batch.name),
        state=state,
        outcome=outcome,
        total=total,
        done=total,
        failed=failed,
        errors=errors,
        details={
            "inlined_responses": inline if outcome is not None else None,
            "responses_file": dest.file_name if dest is not None else None,
            # SUCCEEDED can be reported before the output is set (tidyverse/ellmer#926): the
            # Results task reads the job again for a while rather than calling every item missing.
            "output_pending": outcome is BatchOutcome.COMPLETED and not inline and not (dest and dest.file_name),
        },
    )


# Request and result records (pure functions, unit-tested) ----------------------------------------


def generation_parameters(parameters: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split ``spec.parameters`` into request-level fields and ``generationConfig``, camelCased.

    Gemini's own names pass in either case (``maxOutputTokens``, ``top_p``); ``max_tokens`` and
    ``stop`` are accepted from other providers' vocabulary.
    """
    request_level: dict[str, Any] = {}
    generation: dict[str, Any] = {}
    for name, value in parameters.items():
        camel = PARAMETER_ALIASES.get(name) or _camel(name)
        (request_level if camel in REQUEST_LEVEL_FIELDS else generation)[camel] = value
    return request_level, generation


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def inlined_request(line: Mapping[str, Any]) -> dict[str, Any]:
    """One input-file line as the SDK's ``InlinedRequest`` dict, keeping the key in ``metadata``.

    The SDK rebuilds the REST request from ``contents`` and a ``GenerateContentConfig``: the
    ``generationConfig`` fields and the request-level ones (``systemInstruction``, ``tools``...)
    all go into ``config``, whose pydantic type accepts the camelCase names as aliases.
    """
    request = dict(line["request"])
    request.pop("model", None)
    contents = request.pop("contents", None)
    generation = request.pop("generationConfig", None) or request.pop("generation_config", None) or {}
    inline: dict[str, Any] = {"contents": contents, "metadata": {"key": str(line["key"])}}
    config = {**request, **generation}
    if config:
        inline["config"] = config
    return inline


def parse_result_line(line: str | bytes, kind: Kind) -> RawOutcome:
    """One line of a responses file; a malformed line becomes a server error for an unknown item."""
    try:
        record = jsonl.loads(line)
    except jsonl.JSONDecodeError:
        record = None
    if not isinstance(record, dict):
        return RawOutcome(
            custom_id="", succeeded=False, error_type=ErrorType.SERVER_ERROR, error_message="malformed result line"
        )
    return parse_result(record, kind)


def parse_result(record: Mapping[str, Any], kind: Kind) -> RawOutcome:
    """One result: ``{"key"|"metadata": {"key"}, "response": {...}}`` or the same with ``"error"``."""
    custom_id = str(record.get("key") or (record.get("metadata") or {}).get("key") or "")
    error = record.get("error")
    if error:
        message = str(error.get("message") or error.get("status") or "the request failed")
        error_type = classify_error(int(error.get("code") or 0), str(error.get("status") or ""), message)
        return RawOutcome(custom_id=custom_id, succeeded=False, error_type=error_type, error_message=message)
    response = record.get("response")
    if not isinstance(response, dict):
        return RawOutcome(custom_id, False, error_type=ErrorType.SERVER_ERROR, error_message="no response and no error")
    if kind is Kind.EMBEDDING:
        values = (response.get("embedding") or {}).get("values")
        return RawOutcome(
            custom_id=custom_id,
            succeeded=bool(values),
            embedding=values or None,
            error_type=None if values else ErrorType.SERVER_ERROR,
            error_message=None if values else "no embedding in the response",
            input_tokens=response.get("tokenCount"),
            output_tokens=0,
        )
    return _chat_outcome(custom_id, response)


def _chat_outcome(custom_id: str, response: Mapping[str, Any]) -> RawOutcome:
    usage = response.get("usageMetadata") or {}
    # Thinking tokens are billed as output, so they count with the candidates' tokens.
    output_parts = [usage.get("candidatesTokenCount"), usage.get("thoughtsTokenCount")]
    outcome = RawOutcome(
        custom_id=custom_id,
        succeeded=True,
        model=response.get("modelVersion"),
        input_tokens=usage.get("promptTokenCount"),
        output_tokens=sum(n for n in output_parts if n) if any(n is not None for n in output_parts) else None,
    )
    block_reason = (response.get("promptFeedback") or {}).get("blockReason")
    candidates = response.get("candidates") or []
    if block_reason or not candidates:
        outcome.succeeded = False
        outcome.error_type = ErrorType.CONTENT_FILTERED if block_reason else ErrorType.SERVER_ERROR
        outcome.error_message = f"the prompt was blocked ({block_reason})" if block_reason else "no candidates"
        return outcome
    candidate = candidates[0]
    parts = (candidate.get("content") or {}).get("parts") or []
    texts = [p["text"] for p in parts if isinstance(p.get("text"), str) and not p.get("thought")]
    outcome.text = "".join(texts) if texts else None
    outcome.finish_reason = candidate.get("finishReason")
    if outcome.finish_reason in BLOCKED_FINISH_REASONS:
        outcome.succeeded = False
        outcome.error_type = ErrorType.CONTENT_FILTERED
        outcome.error_message = f"the answer was blocked (finishReason {outcome.finish_reason})"
    return outcome


def classify_error(code: int, status: str, message: str) -> ErrorType:
    """A per-request error (HTTP or gRPC code, canonical status, message) onto the taxonomy."""
    if 0 < code < 100:
        code = _GRPC_TO_HTTP.get(code, 500)
    status = status.upper()
    if code == 429 or status == "RESOURCE_EXHAUSTED":
        return ErrorType.RATE_LIMITED
    if code == 499 or status == "CANCELLED":
        return ErrorType.CANCELLED
    if code >= 500 or status in _SERVER_STATUSES or (code == 0 and not status):
        return ErrorType.SERVER_ERROR
    if code in (401, 403) or status in ("UNAUTHENTICATED", "PERMISSION_DENIED"):
        return ErrorType.AUTH
    if any(word in message.lower() for word in _CONTEXT_WORDS):
        return ErrorType.CONTEXT_LENGTH
    return ErrorType.INVALID_REQUEST
