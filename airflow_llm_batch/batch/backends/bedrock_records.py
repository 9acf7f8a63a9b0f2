"""Amazon Bedrock batch inference records: request bodies in, output records back onto the taxonomy.

No AWS SDK here (plain JSON), so the wire rules are unit-testable. Facts from the Bedrock user guide
(docs.aws.amazon.com/bedrock/latest/userguide/, as read 2026-12; ``BEDROCK_FACTS_AS_OF`` in
``bedrock.py``):

- An input record is ``{"recordId": ..., "modelInput": <the InvokeModel body of the model>}``
  ("Format and upload your batch inference data"); the model is named by the job, not the body.
- Each output record repeats ``recordId`` and ``modelInput`` and carries ``modelOutput`` (the
  InvokeModel response body) or, for a record that failed, an ``error`` object
  ``{"errorCode": <HTTP code>, "errorMessage": ...}`` in its place ("View the results of a batch
  inference job"). Output order is not guaranteed to follow the input.
- Claude's body is Anthropic's Messages body with ``anthropic_version: bedrock-2023-05-31`` and no
  ``model``; its output is an Anthropic Message. Titan Text Embeddings V2 takes ``inputText``
  (with ``dimensions`` 256/512/1024 and ``normalize``) and answers ``embedding`` and
  ``inputTextTokenCount`` ("Amazon Titan Embeddings Text", model parameters). Cohere Embed takes
  ``texts`` and ``input_type`` and answers ``embeddings`` (a list per text), without token counts
  ("Cohere Embed models", model parameters).

**Structured output** goes as forced tool use (``tools`` + ``tool_choice``) in Claude's native body.
The guide's batch inference page has said both that batch jobs take no tool calling or
``response_format`` (an earlier version) and that tool calling works for jobs of the InvokeModel
invocation type with the model's native body (the current one; jobs here are InvokeModel jobs,
the API's default). A forced tool's ``input`` is JSON that follows the tool's schema, and the
results step validates it against the user's full schema, as on every provider; a job whose
records the service refuses shows it as ``error`` records (``invalid_request`` rows), not silently.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from airflow_llm_batch.batch import jsonl
from airflow_llm_batch.batch.backends.anthropic import DEFAULT_MAX_TOKENS, message_outcome
from airflow_llm_batch.batch.records import ErrorType, Kind, RawOutcome
from airflow_llm_batch.batch.schema import ResponseSchema

ANTHROPIC_VERSION = "bedrock-2023-05-31"
# Model ids: foundation models (``anthropic.claude-...``, ``amazon.titan-embed-text-v2:0``) or
# cross-region inference profiles (``us.anthropic.claude-...``, ``eu.``, ``apac.``, ``global.``).
CLAUDE_MODEL = re.compile(r"([a-z]+\.)?anthropic\.claude-.+")
TITAN_EMBED_MODEL = re.compile(r"([a-z]+\.)?amazon\.titan-embed-text-.+")
COHERE_EMBED_MODEL = re.compile(r"([a-z]+\.)?cohere\.embed-.+")
_TOOL_NAME_UNSAFE = re.compile(r"[^a-zA-Z0-9_-]")
_CONTEXT_MESSAGE = re.compile(
    r"prompt is too long|too many (input )?tokens|input is too long|context (limit|window|length)", re.IGNORECASE
)
_LEADING_ID = re.compile(rb'^\s*\{\s*"recordId"\s*:\s*"([^"\\]{1,128})"')
# errorCode (an HTTP status) -> taxonomy; 424 is Bedrock's "model error" (the model itself failed).
_ERROR_CODES = {
    400: ErrorType.INVALID_REQUEST,
    401: ErrorType.AUTH,
    403: ErrorType.AUTH,
    408: ErrorType.SERVER_ERROR,
    413: ErrorType.CONTEXT_LENGTH,
    424: ErrorType.SERVER_ERROR,
    429: ErrorType.RATE_LIMITED,
}


def model_family(model: str, kind: Kind) -> str | None:
    """``claude``, ``titan_embed`` or ``cohere_embed``: the model ids this backend builds bodies for."""
    if kind is Kind.CHAT and CLAUDE_MODEL.fullmatch(model):
        return "claude"
    if kind is Kind.EMBEDDING and TITAN_EMBED_MODEL.fullmatch(model):
        return "titan_embed"
    if kind is Kind.EMBEDDING and COHERE_EMBED_MODEL.fullmatch(model):
        return "cohere_embed"
    return None


def claude_body(
    text: str, system_prompt: str | None, parameters: Mapping[str, Any], schema: ResponseSchema | None
) -> dict[str, Any]:
    """Anthropic's Messages body as Bedrock takes it; structured output as a forced tool."""
    body: dict[str, Any] = {"anthropic_version": ANTHROPIC_VERSION, "max_tokens": DEFAULT_MAX_TOKENS}
    if system_prompt:
        body["system"] = system_prompt
    body["messages"] = [{"role": "user", "content": text}]
    body.update({k: v for k, v in parameters.items() if k != "model"})
    if schema is not None:
        name = tool_name(schema)
        body["tools"] = [
            {"name": name, "description": f"Answer with {schema.name}.", "input_schema": dict(schema.schema)}
        ]
        body["tool_choice"] = {"type": "tool", "name": name}
    return body


def tool_name(schema: ResponseSchema) -> str:
    """A tool name Anthropic accepts (``^[a-zA-Z0-9_-]{1,64}$``) for the schema."""
    return (_TOOL_NAME_UNSAFE.sub("_", schema.name) or "answer")[:64]


def titan_embed_body(text: str, parameters: Mapping[str, Any]) -> dict[str, Any]:
    """Titan Text Embeddings: ``inputText`` plus its own parameter names (``dimensions``, ``normalize``)."""
    return {"inputText": text, **{k: v for k, v in parameters.items() if k != "model"}}


def cohere_embed_body(text: str, parameters: Mapping[str, Any]) -> dict[str, Any]:
    """Cohere Embed: ``texts`` (one per record here) and ``input_type`` (``search_document`` unless
    the parameters say otherwise); its other parameters pass as Cohere names them (``truncate``)."""
    rest = {k: v for k, v in parameters.items() if k != "model"}
    return {"texts": [text], "input_type": rest.pop("input_type", "search_document"), **rest}


def parse_record(line: str | bytes, kind: Kind) -> RawOutcome:
    """One output record onto the taxonomy; a torn line keeps its record id where it can be read."""
    try:
        record = jsonl.loads(line)
    except jsonl.JSONDecodeError:
        record = None
    if not isinstance(record, dict):
        raw = line.encode() if isinstance(line, str) else line
        match = _LEADING_ID.match(raw)
        return RawOutcome(
            custom_id=match.group(1).decode() if match else "",
            succeeded=False,
            error_type=ErrorType.SERVER_ERROR,
            error_message="malformed result line",
        )
    record_id = str(record.get("recordId") or "")
    error = record.get("error")
    output = record.get("modelOutput")
    if error is not None or not isinstance(output, dict):
        return _errored(record_id, error)
    if kind is Kind.EMBEDDING:
        return _embedding(record_id, output)
    return message_outcome(record_id, output)


def _errored(record_id: str, error: Any) -> RawOutcome:
    if not isinstance(error, dict):
        return RawOutcome(record_id, False, error_type=ErrorType.SERVER_ERROR, error_message="no modelOutput, no error")
    code = _int(error.get("errorCode"))
    message = str(error.get("errorMessage") or f"the record failed with error code {code}")
    return RawOutcome(record_id, False, error_type=classify_error(code, message), error_message=message)


def classify_error(code: int, message: str) -> ErrorType:
    """A record's ``errorCode`` (an HTTP status) and message onto the taxonomy; unknown codes are transient."""
    if _CONTEXT_MESSAGE.search(message):
        return ErrorType.CONTEXT_LENGTH
    if code in _ERROR_CODES:
        return _ERROR_CODES[code]
    if 400 <= code < 500:
        return ErrorType.INVALID_REQUEST
    return ErrorType.SERVER_ERROR


def _embedding(record_id: str, output: Mapping[str, Any]) -> RawOutcome:
    """Titan's ``embedding``, or the first of Cohere's ``embeddings`` (one text per record)."""
    values = output.get("embedding")
    cohere = output.get("embeddings")
    if values is None and isinstance(cohere, dict):  # embedding_types given: {"float": [[...]]}
        cohere = cohere.get("float")
    if values is None and isinstance(cohere, list) and cohere:
        values = cohere[0]
    if not isinstance(values, list) or not values:
        return RawOutcome(record_id, False, error_type=ErrorType.SERVER_ERROR, error_message="no embedding in output")
    return RawOutcome(
        record_id, True, embedding=values, input_tokens=_int(output.get("inputTextTokenCount")), output_tokens=0
    )


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def manifest_counts(raw: bytes) -> dict[str, int]:
    """``manifest.json.out``: the job's record and token counts (empty when it cannot be read)."""
    try:
        found = json.loads(raw)
    except ValueError:
        return {}
    return {k: _int(v) for k, v in found.items()} if isinstance(found, dict) else {}
