"""Request bodies judged by the installed SDK's own request types, so the check follows its version.

- OpenAI: the ``TypedDict`` create params of ``openai`` (chat completions, embeddings, Responses).
- Anthropic: ``anthropic``'s ``MessageCreateParamsNonStreaming`` (the ``params`` of a batch request).
- Gemini and Vertex: ``google-genai``'s pydantic request types (``Content``, ``GenerationConfig``,
  ``GenerateContentConfig``, ``EmbedContentConfig``). Field names pass in either spelling: the
  REST API reads proto JSON, whose parsers accept the camelCase JSON name and the snake_case proto
  name alike, and Google's batch guide shows a file line with ``generation_config``. What the
  batch service refuses is a field in the wrong place, e.g. ``thinking_config`` at the top of the
  request instead of under ``generationConfig`` (``400 no such field: 'thinking_config'``,
  reported: UKGovernmentBEIS/inspect_ai#3257), and a field given twice in both spellings.

The SDKs' ``TypedDict`` s do not refuse unknown keys and their ``Iterable`` fields are validated
lazily by pydantic; :func:`_strict` rewrites pydantic's compiled schema so that unknown keys are
refused at every level and iterables are read as lists, then ``pydantic_core`` validates in strict
mode (no ``"0.5"`` for a number: the services refuse that too). Validators are built once per
process and kind (about 50 ms); a body then costs some microseconds.

Vendor SDKs are imported here only inside functions: this module is loaded at execute time.
"""

from __future__ import annotations

import copy
import difflib
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from airflow_llm_batch.batch.records import Kind

MAX_PROBLEMS_PER_BODY = 3


@dataclass(frozen=True)
class BodyProblem:
    """One thing wrong with a body: where (``messages[0].role``), and what to change."""

    path: str
    message: str


@dataclass(frozen=True)
class BodyType:
    """A validator of one kind of body and the words that name it in messages.

    :param judge: e.g. ``"openai 3.63.0's CompletionCreateParams"``.
    :param validate: returns the problems of a body (empty: it fits).
    """

    judge: str
    validate: Callable[[Mapping[str, Any]], list[BodyProblem]]


def body_type(provider: str, kind: Kind, endpoint: str | None = None, placement: bool = True) -> BodyType | None:
    """The installed SDK's type for this provider's bodies of ``kind``; ``None`` when no SDK is installed.

    :param placement: Gemini only: name a generation field at the top of the request (it belongs
        under ``generationConfig``) and a field given in both spellings.
    """
    try:
        if provider == "openai":
            return _openai(endpoint or ("/v1/embeddings" if kind is Kind.EMBEDDING else "/v1/chat/completions"))
        if provider == "anthropic":
            return _anthropic()
        if provider in ("gemini", "vertex"):
            return _gemini(kind, placement)
    except ImportError:
        return None
    return None


def sdk_version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:  # pragma: no cover - the import above would have failed
        return "?"


# OpenAI and Anthropic: TypedDicts through pydantic-core ----------------------------------------
_OPENAI_TYPES = {
    "/v1/chat/completions": ("openai.types.chat.completion_create_params", "CompletionCreateParamsNonStreaming"),
    "/v1/embeddings": ("openai.types.embedding_create_params", "EmbeddingCreateParams"),
    "/v1/responses": ("openai.types.responses.response_create_params", "ResponseCreateParamsNonStreaming"),
}


@functools.cache
def _openai(endpoint: str) -> BodyType | None:
    import importlib

    if endpoint not in _OPENAI_TYPES:
        return None
    module, name = _OPENAI_TYPES[endpoint]
    typed_dict = getattr(importlib.import_module(module), name)
    return BodyType(f"openai {sdk_version('openai')}'s {name}", _typed_dict_validator(typed_dict))


@functools.cache
def _anthropic() -> BodyType:
    from anthropic.types.message_create_params import MessageCreateParamsNonStreaming

    judge = f"anthropic {sdk_version('anthropic')}'s MessageCreateParamsNonStreaming"
    return BodyType(judge, _typed_dict_validator(MessageCreateParamsNonStreaming))


def _typed_dict_validator(typed_dict: Any) -> Callable[[Mapping[str, Any]], list[BodyProblem]]:
    import typing

    from pydantic import TypeAdapter, ValidationError
    from pydantic_core import SchemaValidator

    validator = SchemaValidator(_strict(copy.deepcopy(TypeAdapter(typed_dict).core_schema)))
    top_level = tuple(typing.get_type_hints(typed_dict))

    def validate(body: Mapping[str, Any]) -> list[BodyProblem]:
        try:
            validator.validate_python(body, strict=True)
        except ValidationError as err:
            return describe(err.errors(include_url=False), body, top_level)
        return []

    return validate


def _strict(node: Any) -> Any:
    """pydantic's core schema of a TypedDict, refusing unknown keys everywhere, iterables as lists."""
    if isinstance(node, dict):
        if node.get("type") == "typed-dict":
            node["extra_behavior"] = "forbid"
        elif node.get("type") == "generator":  # ``Iterable[X]``: validated lazily, i.e. never, otherwise
            node["type"] = "list"
        for value in node.values():
            _strict(value)
    elif isinstance(node, list):
        for value in node:
            _strict(value)
    return node


# Gemini: google-genai's pydantic models, by alias --------------------------------------------
# The request fields of a batch input line beside the ones typed below (GenerateContentRequest in
# the Gemini API reference); each is typed by the GenerateContentConfig field of the same alias.
_GEMINI_REQUEST_LEVEL = ("safetySettings", "tools", "toolConfig", "cachedContent", "labels", "serviceTier")
_GEMINI_EMBED_LEVEL = ("taskType", "title", "outputDimensionality", "autoTruncate")


@functools.cache
def _gemini(kind: Kind, placement: bool) -> BodyType:
    from google.genai import types
    from pydantic import TypeAdapter

    content = TypeAdapter(types.Content)
    if kind is Kind.EMBEDDING:
        parts: dict[str, Any] = {"content": content}
        nested: tuple[Any, tuple[str, ...]] = (types.EmbedContentConfig, _GEMINI_EMBED_LEVEL)
        name = "EmbedContentConfig"
    else:
        parts = {
            "contents": TypeAdapter(list[types.Content]),
            "systemInstruction": content,
            "generationConfig": TypeAdapter(types.GenerationConfig),
        }
        nested = (types.GenerateContentConfig, _GEMINI_REQUEST_LEVEL)
        name = "Content, GenerationConfig and GenerateContentConfig"
    generation_fields = frozenset(_camel(field) for field in types.GenerationConfig.model_fields)
    judge = f"google-genai {sdk_version('google-genai')}'s {name}"
    validate = functools.partial(_validate_gemini, parts, nested, generation_fields if placement else frozenset())
    return BodyType(judge, validate)


def _validate_gemini(
    parts: Mapping[str, Any],
    nested: tuple[Any, Sequence[str]],
    generation_fields: frozenset[str],
    body: Mapping[str, Any],
) -> list[BodyProblem]:
    from pydantic import ValidationError

    from airflow_llm_batch.batch import jsonl

    model, level_fields = nested
    known = (*parts, *level_fields)
    problems: list[BodyProblem] = []
    request: dict[str, Any] = {}  # by the camelCase name
    for key, value in body.items():
        name = _camel(key)
        if name in request:
            problems.append(BodyProblem(key, f"is given twice ({name!r} and {key!r}); keep one"))
        elif name in known:
            request[name] = value
        elif name in generation_fields:
            problems.append(BodyProblem(key, "belongs under generationConfig, not at the top of the request"))
        else:
            problems.append(BodyProblem(key, _unknown_key(key, known)))
    for key, adapter in parts.items():
        if key in request:
            try:  # JSON mode, as the service reads the line: enum names as strings, strictly typed
                adapter.validate_json(jsonl.dumps(request[key]), strict=True, by_alias=True, by_name=True)
            except ValidationError as err:
                problems += describe(err.errors(include_url=False), request[key], (), prefix=key)
    level = {key: request[key] for key in level_fields if key in request}
    if level:
        try:
            model.model_validate_json(jsonl.dumps(level), strict=True, by_alias=True, by_name=True)
        except ValidationError as err:
            problems += describe(err.errors(include_url=False), level, level_fields)
    return problems[:MAX_PROBLEMS_PER_BODY]


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


# Errors in the user's words ------------------------------------------------------------------
_EXPECTED = {
    "string_type": "a string",
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "true or false",
    "list_type": "a list",
    "dict_type": "an object",
    "typed_dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
    "none_required": "null",
    "enum": "one of the documented values",
}


def describe(
    errors: Sequence[Mapping[str, Any]], body: Any, top_level: Sequence[str], prefix: str = ""
) -> list[BodyProblem]:
    """pydantic's errors as one problem per field of the body, union branches resolved.

    A union (``messages[]`` is one of six message types) reports an error per member tried. The
    members whose literal tag (``role``, ``type``) differs from the body's are not the one meant
    and are dropped; when none is left, the tag itself is what is wrong.
    """
    located = [(_split_loc(error["loc"], body), error) for error in errors]
    # A member that refused the value's type (``str`` for a list) is not the one meant when
    # another member looked inside the value: keep what that one found.
    inside = {path[:depth] for (path, _), _ in located for depth in range(len(path))}
    located = [
        ((path, branch), error)
        for (path, branch), error in located
        if not (error["type"].endswith("_type") and path in inside)
    ]
    wrong_tag = {branch for (path, branch), error in located if error["type"] == "literal_error"}
    meant = [(path, branch, error) for (path, branch), error in located if branch not in wrong_tag]
    if not meant:  # every member refused the tag: say which tags there are, at the deepest one
        tags = [(path, branch, error) for (path, branch), error in located if error["type"] == "literal_error"]
        deepest = max((len(path) for path, _, _ in tags), default=0)
        meant = [(path, branch, error) for path, branch, error in tags if len(path) == deepest]
    by_path: dict[str, list[Mapping[str, Any]]] = {}
    for path, _branch, error in meant:
        by_path.setdefault(_join(prefix, path), []).append(error)
    return [_problem(path, found, top_level) for path, found in by_path.items()][:MAX_PROBLEMS_PER_BODY]


def _split_loc(loc: Sequence[Any], body: Any) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """``loc`` -> (the path in the body, the union members tried on the way there).

    A step that is no key or index of the body there is the name of a union member pydantic
    tried, except a missing field's name, which ends the ``loc``.
    """
    path: list[Any] = []
    trail: list[Any] = []
    members = 0
    here = body
    for position, step in enumerate(loc):
        last = position == len(loc) - 1
        if (
            isinstance(here, Mapping)
            and isinstance(step, str)
            and (step in here or (last and not _is_member_name(step)))
        ):
            here = here.get(step)
        elif isinstance(here, list) and isinstance(step, int) and not isinstance(step, bool):
            here = here[step] if 0 <= step < len(here) else None
        else:
            trail.append(("member", step))
            members = len(trail)
            continue
        path.append(step)
        trail.append(step)
    return tuple(path), tuple(trail[:members])


def _is_member_name(step: str) -> bool:
    # pydantic names union members by their type: ``ChatCompletionUserMessageParam``, ``str``,
    # ``list[...]``, ``function-after[...]``. Body keys are snake_case or camelCase words.
    return step[:1].isupper() or "[" in step or step in ("str", "int", "float", "bool", "none", "dict", "list")


def _join(prefix: str, path: Sequence[Any]) -> str:
    text = prefix
    for step in path:
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else str(step))
    return text or "(the body)"


def _problem(path: str, errors: Sequence[Mapping[str, Any]], top_level: Sequence[str]) -> BodyProblem:
    first = errors[0]
    kind = first["type"]
    name = path.rsplit(".", 1)[-1]
    if kind == "extra_forbidden":
        return BodyProblem(path, _unknown_key(name, top_level if "." not in path and "[" not in path else ()))
    if kind == "missing":
        return BodyProblem(path, "is required and missing; add it")
    if kind == "literal_error":
        literal = [str(e.get("ctx", {}).get("expected", "")) for e in errors if e["type"] == "literal_error"]
        expected = list(dict.fromkeys(literal))  # in the SDK's order: the common ones come first
        shown = " or ".join(expected[:8]) + (f" (or {len(expected) - 8} more)" if len(expected) > 8 else "")
        return BodyProblem(path, f"is {first.get('input')!r}; use {shown}")
    wanted = sorted({_EXPECTED.get(e["type"], e["msg"].removeprefix("Input should be ")) for e in errors})
    got = type(first.get("input")).__name__
    return BodyProblem(path, f"should be {' or '.join(wanted)}, not {_json_type(got)}")


def _unknown_key(name: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
    if not close and "_" in name and _camel(name) in known:  # snake_case where the line needs camelCase
        close = [_camel(name)]
    hint = f"; did you mean {close[0]!r}?" if close else "; remove it"
    return f"is not a field this request accepts{hint}"


def _json_type(python_type: str) -> str:
    return {
        "str": "a string",
        "int": "an integer",
        "float": "a number",
        "bool": "a boolean",
        "dict": "an object",
        "list": "a list",
        "NoneType": "null",
    }.get(python_type, python_type)
