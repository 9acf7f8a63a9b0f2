"""Which OpenAI endpoint a job's requests go to, what the connection says its host supports
(``endpoints``, ``metadata``: OpenAI-compatible hosts, ``docs/platforms.md``), the batch tags,
the chat and Responses request bodies, and the Responses result body.

The Batch API runs lines against one endpoint per batch (``/v1/chat/completions``,
``/v1/embeddings``, ``/v1/responses``...: openai-python ``batches.create``'s ``endpoint`` literal).
Chat jobs go to chat completions unless the user asks for ``endpoint="responses"``, or the model
is one OpenAI serves on ``/v1/responses`` only (:data:`RESPONSES_ONLY_MODELS`): the rows are the
same either way (:func:`responses_outcome` reads a Response into the chat vocabulary).

Shapes: openai-python's ``ResponseCreateParams`` (the request) and ``Response`` (the result
body: ``output`` items of type ``message`` with ``output_text`` / ``refusal`` parts, ``usage``
with ``input_tokens`` / ``output_tokens``, ``status`` ``completed`` / ``incomplete`` / ``failed``
and ``incomplete_details.reason``).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping
from typing import Any

from airflow_llm_batch.batch import jsonl
from airflow_llm_batch.batch.backends.base import ChunkFile, RequestSpec
from airflow_llm_batch.batch.records import ErrorType, JobKey, Kind, RawOutcome
from airflow_llm_batch.exceptions import ConfigurationError

META_JOB = "airflow_job_key"  # the batch metadata keys a job's batches are found again by
META_CHUNK = "airflow_chunk"
CHAT = "/v1/chat/completions"
EMBEDDINGS = "/v1/embeddings"
RESPONSES = "/v1/responses"
# What users write (``endpoint=`` on the operator, ``endpoints`` in a connection's extra) -> path.
ENDPOINT_NAMES = {
    "chat": CHAT,
    "chat/completions": CHAT,
    CHAT: CHAT,
    "responses": RESPONSES,
    RESPONSES: RESPONSES,
    "embeddings": EMBEDDINGS,
    EMBEDDINGS: EMBEDDINGS,
}

OUTPUT_LIMIT = "max_output_tokens"
CHAT_OUTPUT_LIMITS = ("max_tokens", "max_completion_tokens")

RESPONSES_ONLY_AS_OF = "2026-12"
# Models OpenAI serves on /v1/responses only (their chat-completions calls answer 404), as known
# in ``RESPONSES_ONLY_AS_OF`` (written without internet access, not re-checked when committed):
# - gpt-5-pro, gpt-5.x-pro: OpenAI's model pages list only the Responses endpoint; reported as
#   404s on chat completions in BerriAI/litellm#15258 and langchain-ai/langchain#34306.
# - o1-pro, o3-pro, o3-deep-research, o4-mini-deep-research: the model pages list "v1/responses"
#   as their only endpoint (platform.openai.com/docs/models).
# Matched against the whole model name, with or without a date suffix. A model this table does
# not know goes to chat completions unless the job sets ``endpoint="responses"``.
RESPONSES_ONLY_MODELS = re.compile(
    r"(gpt-5(\.\d+)?-pro|o1-pro|o3-pro|o3-deep-research|o4-mini-deep-research)(-\d{4}-\d{2}-\d{2})?"
)


def endpoint_path(name: Any, where: str = "endpoint") -> str:
    """The endpoint path of a user's name for it (``"responses"`` -> ``/v1/responses``)."""
    path = ENDPOINT_NAMES.get(str(name).strip().lower()) if isinstance(name, str) else None
    if path is None:
        raise ConfigurationError(
            f"{where} must be one of 'chat', 'responses' or 'embeddings' (or their /v1/... paths), not {name!r}"
        )
    return path


def check_host_serves(endpoint: str, served: Any) -> None:
    """Refuse an endpoint the connection says its host does not serve (``endpoints`` extra:
    a list, or a comma-separated string, of names or paths; unset: every endpoint)."""
    if served is None or served == "" or served == []:
        return
    names = served.split(",") if isinstance(served, str) else list(served)
    paths = {endpoint_path(name.strip() if isinstance(name, str) else name, "the endpoints extra") for name in names}
    if endpoint not in paths:
        raise ConfigurationError(
            f"the connection says its host serves only {sorted(paths)}, and this job needs {endpoint}: choose "
            "another endpoint (endpoint= on the operator) or model, or correct the connection's endpoints extra"
        )


_TRUE, _FALSE = ("true", "yes", "1", "on"), ("false", "no", "0", "off")


def host_flag(value: Any, default: bool, name: str) -> bool:
    """A yes/no fact of a connection's extra: JSON true/false, or the text the connection form stores."""
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise ConfigurationError(f"the connection's {name!r} extra must be true or false, not {value!r}")


def responses_only(model: str) -> bool:
    """Whether ``model`` is known to be served on ``/v1/responses`` only."""
    return RESPONSES_ONLY_MODELS.fullmatch(model) is not None


def choose_endpoint(kind: Kind, model: str, requested: Any = None) -> str:
    """The endpoint of a job: the one asked for (``provider_options["endpoint"]``), else by kind and model."""
    if kind is Kind.EMBEDDING:
        if requested not in (None, "auto") and endpoint_path(requested) != EMBEDDINGS:
            raise ConfigurationError(
                f"endpoint {requested!r} does not take embedding requests: leave endpoint unset for embeddings"
            )
        return EMBEDDINGS
    if requested in (None, "auto"):
        return RESPONSES if responses_only(model) else CHAT
    path = endpoint_path(requested)
    if path == EMBEDDINGS:
        raise ConfigurationError("endpoint 'embeddings' is for kind='embedding' jobs; this job is chat")
    return path


# Host facts ---------------------------------------------------------------------------------------
@contextlib.contextmanager
def metadata_refused(provider: str) -> Iterator[None]:
    """A host that refuses batch ``metadata`` (HTTP 400 naming it), told in terms of the connection."""
    try:
        yield
    except Exception as error:
        if getattr(error, "status_code", None) != 400 or "metadata" not in str(getattr(error, "param", "") or error):
            raise
        raise ConfigurationError(
            f"{provider}: the host refused the batch's metadata tags ({type(error).__name__}): set "
            "\"metadata\": false in the connection's extra (re-attaching then relies on the job's record; "
            "docs/platforms.md)"
        ) from error


def chunk_endpoint(chunk: ChunkFile) -> str | None:
    """The ``url`` of the chunk's first line: a retry round copies its lines from the first round's
    files (with their endpoint) and knows only the model and kind of the job, not its options."""
    with chunk.path.open("rb") as stream:
        first = stream.readline()
    try:
        url = jsonl.loads(first).get("url") if first.strip() else None
    except (jsonl.JSONDecodeError, AttributeError):
        return None
    return url if isinstance(url, str) else None


# Requests -----------------------------------------------------------------------------------------
def chat_body_template(spec: RequestSpec) -> dict[str, Any]:
    """A chat body with every key in its place; only ``messages`` differs from item to item."""
    body: dict[str, Any] = {"model": spec.model, "messages": None, **spec.parameters}
    if spec.response_schema is not None:
        body["response_format"] = _response_format(spec)
    return body


def _response_format(spec: RequestSpec) -> dict[str, Any]:
    assert spec.response_schema is not None
    return {
        "type": "json_schema",
        "json_schema": {"name": spec.response_schema.name, "schema": spec.response_schema.schema},
    }


def batch_metadata(job_key: JobKey, chunk_index: int) -> dict[str, str]:
    # Values are capped at 512 characters by the API; the digest is what lookups match on, the
    # readable parts are for people browsing the provider's console.
    return {
        META_JOB: job_key.digest(),
        META_CHUNK: str(chunk_index),
        "airflow_dag_id": job_key.dag_id[:512],
        "airflow_task_id": job_key.task_id[:512],
        "airflow_run_id": job_key.run_id[:512],
    }


def responses_body_template(
    model: str, system_prompt: str | None, parameters: Mapping[str, Any], schema: Any
) -> dict[str, Any]:
    """A Responses body with every key in place; only ``input`` differs from item to item.

    The system prompt is ``instructions`` (the Responses API's system message); structured output
    is ``text.format`` of type ``json_schema`` (the Responses spelling of chat's ``response_format``);
    chat's output limit ``max_tokens`` / ``max_completion_tokens`` is sent as ``max_output_tokens``
    (the one name the Responses API takes), so a DAG's parameters work on both endpoints.
    """
    body: dict[str, Any] = {"model": model, "input": None}
    if system_prompt:
        body["instructions"] = system_prompt
    for name, value in parameters.items():
        body[OUTPUT_LIMIT if name in CHAT_OUTPUT_LIMITS and OUTPUT_LIMIT not in parameters else name] = value
    if schema is not None:
        text = dict(body.get("text") or {})
        text["format"] = {"type": "json_schema", "name": schema.name, "schema": schema.schema}
        body["text"] = text
    return body


# Results ------------------------------------------------------------------------------------------
# ``Response.error.code`` (openai-python ``ResponseError``) onto the taxonomy; others: server error.
_ERROR_CODES = {
    "rate_limit_exceeded": ErrorType.RATE_LIMITED,
    "server_error": ErrorType.SERVER_ERROR,
    "invalid_prompt": ErrorType.INVALID_REQUEST,
    "invalid_image": ErrorType.INVALID_REQUEST,
}


def responses_outcome(custom_id: str, body: Mapping[str, Any]) -> RawOutcome:
    """A Response (``object: "response"``) of a line with HTTP 200, in the chat rows' vocabulary.

    ``finish_reason`` is ``stop`` for a completed response and ``length`` for one cut at
    ``max_output_tokens`` (chat completions' words, so rows read the same on both endpoints); a
    refusal part or ``incomplete_details.reason == "content_filter"`` is a filtered item.
    """
    usage = body.get("usage") or {}
    texts, refusals = [], []
    for item in body.get("output") or []:
        if not isinstance(item, Mapping) or item.get("type") != "message":
            continue  # reasoning summaries, tool calls: not the answer's text
        for part in item.get("content") or []:
            if isinstance(part, Mapping) and part.get("type") == "output_text":
                texts.append(str(part.get("text") or ""))
            elif isinstance(part, Mapping) and part.get("type") == "refusal":
                refusals.append(str(part.get("refusal") or ""))
    status = body.get("status")
    reason = (body.get("incomplete_details") or {}).get("reason")
    outcome = RawOutcome(
        custom_id=custom_id,
        succeeded=True,
        text="".join(texts) if texts else None,
        model=body.get("model"),
        input_tokens=usage.get("input_tokens"),
        output_tokens=usage.get("output_tokens"),
        finish_reason="length" if reason in ("max_output_tokens", "max_messages") else "stop",
    )
    error = body.get("error") or {}
    if status == "failed" or error:
        outcome.succeeded, outcome.finish_reason = False, None
        outcome.error_type = _ERROR_CODES.get(str(error.get("code")), ErrorType.SERVER_ERROR)
        outcome.error_message = error.get("message") or f"the response ended {status}"
    elif refusals or reason == "content_filter":
        outcome.succeeded, outcome.finish_reason = False, "content_filter"
        outcome.error_type = ErrorType.CONTENT_FILTERED
        outcome.error_message = " ".join(refusals) or "the output was filtered by the provider"
    elif status not in ("completed", "incomplete"):
        outcome.succeeded, outcome.finish_reason = False, None
        outcome.error_type = ErrorType.SERVER_ERROR
        outcome.error_message = f"the response has status {status!r}, not completed"
    return outcome
