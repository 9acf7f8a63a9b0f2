"""The contract every provider backend keeps. A backend is the only place that knows a wire format.

Adding a provider means one file here (a :class:`BatchBackend` subclass registered in
``backends/__init__.py``) and one emulator module; nothing else changes.
"""

from __future__ import annotations

import importlib
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from airflow_llm_batch.batch.backends.storage_cleanup import StorageCleanup
from airflow_llm_batch.batch.record_store import RecordStore
from airflow_llm_batch.batch.records import BatchStatus, JobKey, Kind, RawOutcome
from airflow_llm_batch.batch.schema import ResponseSchema
from airflow_llm_batch.batch.storage import StoragePath
from airflow_llm_batch.exceptions import ConfigurationError


@dataclass(frozen=True)
class ProviderLimits:
    """What one batch may hold at a provider. Tests lower these to force splitting.

    :param max_requests: requests per batch.
    :param max_bytes: bytes of the batch's request file (or inline body).
    :param max_request_bytes: bytes of one request line.
    :param custom_id_pattern: regex (full match) of the ids the provider accepts; ``None``: any string.
    :param custom_id_max_length: longest id the provider accepts.
    :param single_model_per_batch: whether every request of one batch must name the same model.
    """

    max_requests: int
    max_bytes: int
    max_request_bytes: int
    custom_id_pattern: str | None = None
    custom_id_max_length: int = 512
    single_model_per_batch: bool = False

    def with_overrides(self, overrides: Mapping[str, Any] | None) -> ProviderLimits:
        if not overrides:
            return self
        unknown = set(overrides) - set(self.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown provider limit(s): {sorted(unknown)}")
        return replace(self, **dict(overrides))


@dataclass(frozen=True)
class ClientConfig:
    """What a backend needs to build its SDK client. Built from a connection; never serialized.

    :param api_key: the secret. Kept out of ``repr`` so it cannot reach a log by accident.
    :param base_url: the provider endpoint; the emulator's URL in tests and the demo.
    :param extra: provider-specific settings (organization, project, location, ...).
    :param login: the connection's login, where the provider's credential has two parts (the AWS
        access key id of Bedrock; the secret is ``api_key``). Kept out of ``repr`` too.
    """

    api_key: str | None = field(default=None, repr=False)
    base_url: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    login: str | None = field(default=None, repr=False)

    @property
    def max_retries(self) -> int:
        """The SDK's own retries of a failed call (``max_retries`` extra; the SDKs' default 2)."""
        return int(self.extra.get("max_retries", 2))

    @property
    def timeout(self) -> float | None:
        """Seconds per HTTP call (``timeout`` extra), or None for the SDK's default."""
        value = self.extra.get("timeout")
        return None if value is None else float(value)

    def client_kwargs(self) -> dict[str, Any]:
        """Key, endpoint, retries and timeout, as the ``openai`` and ``anthropic`` clients take them."""
        kwargs: dict[str, Any] = {
            "api_key": self.api_key,
            "base_url": self.base_url or None,
            "max_retries": self.max_retries,
        }
        if self.timeout is not None:
            kwargs["timeout"] = self.timeout
        return kwargs


@dataclass(frozen=True)
class ChunkFile:
    """One chunk of requests, to become one batch: lines written to the work dir at ``path``, or,
    with ``table``, a table the provider reads itself (Vertex request tables built in BigQuery;
    ``path`` is then the file that records the tables)."""

    index: int
    path: StoragePath
    count: int
    bytes: int
    model: str
    table: str | None = None


@dataclass(frozen=True)
class PreparedJob:
    """The chunks of one job, ready to submit, and what identifies their content."""

    chunks: tuple[ChunkFile, ...]
    item_count: int
    fingerprint: str


@dataclass(frozen=True)
class LineEncoder:
    """Encodes the request line of one rendered prompt straight to bytes (``line_encoder.py``).

    :param model: the model every line names (for the one-model-per-batch rule).
    :param encode: ``encode(custom_id, text)`` -> the line, without its newline.
    :param encode_all: ``encode_all(custom_ids, texts)`` -> the lines of a block, the bytes of
        ``encode`` for each pair, in C-level loops (``None``: the pass encodes one at a time).
    """

    model: str
    encode: Callable[[str, str], bytes]
    encode_all: Callable[[list[str], list[str]], list[bytes]] | None = None


@dataclass(frozen=True)
class InPlaceRequests:
    """What a backend needs to build a job's requests where its items already are
    (:meth:`BatchBackend.prepare_in_place`), instead of the worker writing chunk files.

    :param source: the items object as the user gave it (e.g. a ``BigQuerySource``); a backend
        recognizes the sources it can build from by what they offer (``as_sql``), never by import.
    :param force: ``requests_in_sql``: ``True`` in place or fail, ``None`` when it fits, ``False`` never.
    :param layout_root: the attempt's folder in the work dir (``state.JobLayout``).
    :param records: where the job's record lives (``state.JobLayout.records``; ``None``: its state file).
    """

    source: Any
    id_field: str
    template: str | None
    body_field: str | None
    spec: RequestSpec
    force: bool | None
    layout_root: StoragePath
    job_key: JobKey
    on_input_change: str = "fail"
    records: RecordStore | None = None


@dataclass(frozen=True)
class RequestSpec:
    """How each item becomes a request: the same for every item of a job."""

    model: str
    kind: Kind
    system_prompt: str | None = None
    parameters: Mapping[str, Any] = field(default_factory=dict)
    response_schema: ResponseSchema | None = None
    options: Mapping[str, Any] = field(default_factory=dict)


class BatchBackend(ABC):
    """One provider's batch API behind a provider-neutral surface.

    Sync methods run in workers (submit, results); :meth:`aget_status` runs in the triggerer and
    must never block its event loop, so it uses the SDK's async client.
    """

    provider: ClassVar[str]
    default_limits: ClassVar[ProviderLimits]
    supports_embeddings: ClassVar[bool] = True
    # Why an embedding job can be refused as soon as the DAG is parsed (the provider has no
    # embeddings batch API at all), and the prefix of the provider's own model names (``claude``)
    # that tells the provider without a connection. ``None``: checked at execute (check_spec).
    embeddings_refusal: ClassVar[str | None] = None
    model_prefix: ClassVar[str | None] = None
    console_url_template: ClassVar[str | None] = None
    # Whose request bodies this backend sends, where several backends share one API's shape
    # (OpenAI, OpenAI-compatible hosts, Azure OpenAI: ``"openai"``); ``None``: the provider's own.
    request_format: ClassVar[str | None] = None

    def __init__(self, config: ClientConfig, limits: ProviderLimits | None = None) -> None:
        self.config = config
        self.limits = limits or self.default_limits

    # Building requests (no I/O) ------------------------------------------------------------
    @abstractmethod
    def build_body(self, spec: RequestSpec, text: str) -> dict[str, Any]:
        """The provider-native body for one item's rendered prompt (or embedding input)."""

    @abstractmethod
    def build_line(self, custom_id: str, spec: RequestSpec, body: dict[str, Any]) -> dict[str, Any]:
        """One line of the chunk file, in the form :meth:`submit_chunk` sends."""

    def request_endpoint(self, spec: RequestSpec) -> str | None:
        """The API path the job's requests run against where the provider has several for one kind
        (OpenAI: chat completions or Responses); ``None`` where the kind decides it."""
        return None

    def line_encoder(self, spec: RequestSpec) -> LineEncoder | None:
        """Optionally, a faster way from a rendered prompt to its line's bytes (``line_encoder.py``);
        ``None``: the lines are built with :meth:`build_body` and :meth:`build_line`."""
        return None

    # Building requests where the items are (optional) ------------------------------------------
    def in_place_obstacles(self, job: InPlaceRequests) -> list[str]:
        """Why this backend cannot build ``job``'s requests in place (empty: it can)."""
        return ["the provider is not vertex"]

    def prepare_in_place(self, job: InPlaceRequests) -> PreparedJob | None:
        """The job's requests built where its items are (Vertex: tables built by BigQuery from a
        BigQuery source, no row through the worker), or ``None``: the worker writes chunk files.
        Only called when :meth:`in_place_obstacles` is empty."""
        return None

    def retry_in_place(
        self, previous_root: StoragePath, job: InPlaceRequests, retryable: Mapping[int, set[str]]
    ) -> PreparedJob | None:
        """A retry round's requests selected from the previous attempt's in-place requests, or
        ``None`` when that attempt wrote chunk files (the worker then copies their lines)."""
        return None

    def check_spec(self, spec: RequestSpec) -> None:  # noqa: B027 - optional hook
        """Raise ConfigurationError for what this provider cannot do (called before any I/O)."""

    def check_model(self, spec: RequestSpec) -> None:
        """Refuse a model that cannot serve the request kind here, before any API call.

        Checked by name family (``MODEL_FAMILIES``), since listing models would be an API call;
        ``provider_options={"check_model": False}`` skips it for names the families do not know.
        """
        if not spec.options.get("check_model", True):
            return
        family = MODEL_FAMILIES.get(self.provider, {}).get(spec.kind.value)
        if family is not None and not re.fullmatch(family[0], spec.model):
            raise ConfigurationError(
                f"model {spec.model!r} is not {'an' if spec.kind.value[0] in 'aeiou' else 'a'} "
                f"{spec.kind.value} model on {self.provider} "
                f"(expected {family[1]}); set provider_options={{'check_model': False}} to skip this check"
            )

    def chunk_problems(self, chunks: Sequence[ChunkFile]) -> list[str]:
        """What the provider would refuse about the job's chunks as a whole (e.g. a chunk under a
        minimum size), checked before the first chunk is created; empty: nothing."""
        return []

    # Talking to the provider ------------------------------------------------------------------
    @abstractmethod
    def submit_chunk(self, chunk: ChunkFile, spec: RequestSpec, job_key: JobKey) -> str:
        """Create a batch from a chunk file, tagged with the job key where possible; return its id."""

    def find_batch(self, job_key: JobKey, chunk_index: int) -> str | None:
        """The batch an earlier try created for this chunk, if the provider can tell (tags)."""
        return self.find_batches(job_key).get(chunk_index)

    def find_batches(self, job_key: JobKey) -> dict[int, str]:
        """Every batch created for the job key, by chunk index (the newest where a chunk has several),
        found through the provider's tags; empty where the provider has none (Anthropic)."""
        return {}

    @abstractmethod
    def get_status(self, batch_id: str) -> BatchStatus: ...

    @abstractmethod
    async def aget_status(self, batch_id: str) -> BatchStatus: ...

    @abstractmethod
    def cancel(self, batch_id: str) -> None: ...

    async def acancel(self, batch_id: str) -> None:
        raise NotImplementedError

    @abstractmethod
    def iter_outcomes(self, status: BatchStatus, kind: Kind) -> Iterator[RawOutcome]:
        """Stream the ended batch's results, one outcome per result line, in any order."""

    def delete_stored(self, statuses: Sequence[BatchStatus], job_key: JobKey, *, batches: bool) -> StorageCleanup:
        """Delete what the job's ended batches left at the provider (input and result files; with
        ``batches``, the batches themselves where the provider allows it). Called once the results
        are written; never raises for a delete the provider refuses (``storage_cleanup.py``)."""
        return StorageCleanup()

    def is_capacity_error(self, error: BaseException) -> bool:
        """Whether a create call was refused for the account's queue quota or capacity: nothing was
        created or billed, and the chunk may be sent again once capacity frees.

        429 on create is how Anthropic (rate-limit docs), Gemini and Vertex (RESOURCE_EXHAUSTED,
        googleapis/python-genai#1901) refuse a batch over their queue quota.
        """
        return error_status(error) == 429 or "RESOURCE_EXHAUSTED" in str(error)

    def refused_for_capacity(self, errors: tuple[str, ...] | list[str]) -> bool:
        """Whether a batch that failed as a whole (its ``BatchStatus.errors``, ``"code: message"``)
        was refused for queue quota or capacity, rather than for its content."""
        return any(_error_code(error) in CAPACITY_ERROR_CODES or "RESOURCE_EXHAUSTED" in error for error in errors)

    def is_transient(self, error: BaseException) -> bool:
        """Whether an error talking to the provider may go away on its own (429, 5xx, dropped connection)."""
        return is_transient_error(error)

    def status_refusal(self, error: BaseException) -> StatusRefusal | None:
        """Whether a failed status call can never succeed by waiting (rejected key, unknown batch)."""
        return status_refusal(error)

    def test_connection(self) -> tuple[bool, str]:
        """A cheap authenticated call, for the connection form's Test button."""
        return False, f"{self.provider}: connection test is not implemented"

    def console_url(self, batch_id: str) -> str | None:
        if self.console_url_template is None:
            return None
        return self.console_url_template.format(batch_id=batch_id)

    def prepare_async(self) -> None:  # noqa: B027 - optional hook
        """Build the async client and import what its calls use, ahead of the first call.

        The first status call of a fresh client imports the vendor SDK and builds its resources
        (0.3 s for ``openai``, up to 2 s for ``anthropic`` on a busy machine): done on the event
        loop, that stalls every trigger of the triggerer. The triggers call this in a worker thread.
        """

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the sync client."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release the async client."""


# provider -> kind -> (regex of model names that serve it, what the message says is expected).
MODEL_FAMILIES: dict[str, dict[str, tuple[str, str]]] = {
    "openai": {
        "chat": (r"(?!.*embedding).+", "a chat model such as gpt-4.1-mini, not an embedding model"),
        "embedding": (r".*embedding.*", "an embedding model such as text-embedding-3-small"),
    },
    "anthropic": {"chat": (r"claude-.+", "a Claude model such as claude-sonnet-4-5")},
    "gemini": {
        "chat": (r"(models/|tunedModels/)?(?!.*embedding).+", "a Gemini model such as gemini-2.5-flash"),
        "embedding": (r"(models/)?.*embedding.*", "an embedding model such as gemini-embedding-001"),
    },
}
MODEL_FAMILIES["vertex"] = MODEL_FAMILIES["gemini"]

_TRANSIENT_STATUS = {408, 409, 425, 429}
# Whole-batch failure codes that mean "over the queue quota", not "bad input": OpenAI's
# token_limit_exceeded (openai/openai-python#2084) and its request-limit twin (community.openai.com
# 1002388), Anthropic's rate_limit_error, Google's RESOURCE_EXHAUSTED / 429.
CAPACITY_ERROR_CODES = frozenset(
    {"token_limit_exceeded", "request_limit_exceeded", "rate_limit_error", "RESOURCE_EXHAUSTED", "429"}
)


def _error_code(error: str) -> str:
    return error.split(":", 1)[0].strip()


def error_status(error: BaseException) -> int | None:
    """The HTTP status an SDK exception carries (``status_code`` or ``code``), if any."""
    status = getattr(error, "status_code", None)
    if not isinstance(status, int):
        status = getattr(error, "code", None)
    return status if isinstance(status, int) and status > 0 else None


@dataclass(frozen=True)
class StatusRefusal:
    """A status call the provider refused for good: polling again cannot change the answer.

    :param kind: ``auth`` (401/403, or a key the provider calls invalid) or ``not_found`` (404).
    :param status: the HTTP status of the answer.
    :param detail: the SDK's error class and the provider's own code, never its message: OpenAI's
        401 message quotes the start and end of the rejected key.
    """

    kind: str
    status: int
    detail: str

    def message(self, provider: str, conn_id: str, batch_id: str) -> str:
        """What the task log says: the connection and the batch, what happened, what to do."""
        answer = f"HTTP {self.status}, {self.detail}"
        if self.kind == "auth":
            return (
                f"{provider} rejected the credentials of connection {conn_id!r} while the task waited for batch "
                f"{batch_id} ({answer}). Waiting cannot help: fix the key or its permissions in the connection, "
                "then clear this task to wait again (the batch itself is not affected)."
            )
        return (
            f"{provider} says batch {batch_id} does not exist ({answer}), asked through connection {conn_id!r}. "
            "It was deleted, belongs to another account or project, or the connection now points at another "
            "endpoint. Waiting cannot help; the task fails without retrying."
        )


def status_refusal(error: BaseException) -> StatusRefusal | None:
    """401/403 as ``auth`` and 404 as ``not_found``, whichever SDK raised them; else None."""
    status = _http_status(error)
    if status in (401, 403):
        return StatusRefusal("auth", status, _detail(error))
    if status == 404:
        return StatusRefusal("not_found", status, _detail(error))
    return None


def _http_status(error: BaseException) -> int | None:
    # openai and anthropic: ``status_code`` (their ``code`` is the provider's string code);
    # google.genai: ``code``.
    for name in ("status_code", "code"):
        value = getattr(error, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _detail(error: BaseException) -> str:
    """The SDK's error class and the provider's code (``invalid_api_key``, ``NOT_FOUND``), if any."""
    codes = [getattr(error, name, None) for name in ("code", "status")]
    named = [str(code) for code in codes if isinstance(code, str) and code]
    return ", ".join([type(error).__name__, *named])


def is_transient_error(error: BaseException) -> bool:
    """429 and 5xx answers, timeouts and connections dropped mid-stream, whichever SDK raised them.

    The three LLM SDKs raise their own exception classes for answers (with ``status_code`` or
    ``code``) and let their HTTP client's transport errors through while a response body is streamed:
    httpx2's in current releases, httpx's in the older ones our floors allow (openai 2.x and
    google-genai 2.x require httpx, their 3.x releases httpx2), so both count.
    """
    status = error_status(error)
    if status is not None:
        return status in _TRANSIENT_STATUS or status >= 500
    if isinstance(error, ConnectionError | TimeoutError) or type(error).__name__ in (
        "APIConnectionError",
        "APITimeoutError",
    ):
        return True
    return any(isinstance(error, transport_error) for transport_error in _http_transport_errors())


def _http_transport_errors() -> list[type[BaseException]]:
    """The ``TransportError`` classes of whichever HTTP clients (httpx2, httpx) are installed."""
    errors: list[type[BaseException]] = []
    for name in ("httpx2", "httpx"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        errors.append(module.TransportError)
    return errors
