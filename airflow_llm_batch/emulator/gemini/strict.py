"""Strict mode for the Gemini Developer API: request bodies checked at create, as the API parses them.

The API parses a batch's requests as proto JSON when the batch is created and answers 400
``INVALID_ARGUMENT`` for an unknown field or a value of the wrong type; no batch is created:

- inline requests, in the JSON body: Google's "Invalid JSON payload received. Unknown name "x" at
  '...': Cannot find field." and "Invalid value at '...' (TYPE_FLOAT), "hot"" (the API gateway's
  wording for every Google JSON API);
- input-file lines: "Error on line 1: invalid JSON, near column 1032: no such field:
  'thinking_config'" (reported: UKGovernmentBEIS/inspect_ai#3257, fixed by #3273: generation
  parameters belong under ``generationConfig``, not at the top of the request).

Proto JSON accepts a field's camelCase JSON name and its snake_case proto name alike (the proto3
JSON mapping: "parsers accept both"), and inspect_ai's flat dump used ``system_instruction``
without complaint, so snake_case names are accepted; ``gemini_camel_case_file_lines`` refuses them
in file lines for those who read the reports more strictly.

The fields are those of ``GenerateContentRequest`` / ``EmbedContentRequest`` in the Gemini API
reference (ai.google.dev/api/generate-content, /api/embeddings), cross-checked against the
google-genai 3.x converters (``models.py`` ``_GenerateContentConfig_to_mldev``), written down here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from airflow_llm_batch.emulator.gemini.files import GeminiError

# A field's proto type: a scalar name, a message (dict of fields), or ("repeated", element).
Spec = Any
PART: dict[str, Spec] = {
    "text": "string",
    "thought": "bool",
    "thoughtSignature": "string",
    "mediaResolution": "object",
    **{
        name: "object"
        for name in (
            "inlineData",
            "fileData",
            "functionCall",
            "functionResponse",
            "executableCode",
            "codeExecutionResult",
            "videoMetadata",
            "partMetadata",
            "toolCall",
            "toolResponse",
            "audioTranscription",
            "mediaProcessing",
            "speechMetadata",
            "documentMetadata",
            "spreadsheetMetadata",
            "audioMetadata",
        )
    },
}
CONTENT: dict[str, Spec] = {"role": "string", "parts": ("repeated", PART)}
THINKING_CONFIG: dict[str, Spec] = {"includeThoughts": "bool", "thinkingBudget": "int32", "thinkingLevel": "enum"}
GENERATION_CONFIG: dict[str, Spec] = {
    "stopSequences": ("repeated", "string"),
    "responseMimeType": "string",
    "responseSchema": "object",
    "responseJsonSchema": "any",
    "responseModalities": ("repeated", "enum"),
    "candidateCount": "int32",
    "maxOutputTokens": "int32",
    "temperature": "float",
    "topP": "float",
    "topK": "int32",
    "seed": "int32",
    "presencePenalty": "float",
    "frequencyPenalty": "float",
    "responseLogprobs": "bool",
    "logprobs": "int32",
    "enableEnhancedCivicAnswers": "bool",
    "speechConfig": "object",
    "thinkingConfig": THINKING_CONFIG,
    "imageConfig": "object",
    "mediaResolution": "enum",
    "audioTranscriptionConfig": "object",
}
GENERATE_REQUEST: dict[str, Spec] = {
    "model": "string",
    "contents": ("repeated", CONTENT),
    "systemInstruction": CONTENT,
    "generationConfig": GENERATION_CONFIG,
    "tools": ("repeated", "object"),
    "toolConfig": "object",
    "safetySettings": ("repeated", "object"),
    "cachedContent": "string",
    "labels": "object",
    "serviceTier": "enum",
    "store": "bool",
    "continuationToken": "string",
}
EMBED_REQUEST: dict[str, Spec] = {
    "model": "string",
    "content": CONTENT,
    "taskType": "enum",
    "title": "string",
    "outputDimensionality": "int32",
}
PROTO_TYPE_NAMES = {
    "string": "TYPE_STRING",
    "int32": "TYPE_INT32",
    "float": "TYPE_FLOAT",
    "bool": "TYPE_BOOL",
    "enum": "TYPE_ENUM",
    "object": "TYPE_MESSAGE",
}
MAX_REPORTED_LINES = 10
_NUMBER = re.compile(r"^-?\d+(\.\d+)?([eE][-+]?\d+)?$")


class FieldProblem(ValueError):
    """One field the parser refuses: ``unknown`` names it, else ``path`` and ``proto_type`` say why."""

    def __init__(self, path: str, name: str | None = None, proto_type: str | None = None, value: Any = None) -> None:
        super().__init__(path)
        self.path, self.name, self.proto_type, self.value = path, name, proto_type, value


def inline_problem(request: Any, kind: str, where: str) -> str | None:
    """The 400 message for an inline request, in the API gateway's wording, or None."""
    try:
        _check_message(request, GENERATE_REQUEST if kind == "generate" else EMBED_REQUEST, where, camel_only=False)
    except FieldProblem as problem:
        if problem.name is not None:
            name, path = problem.name, problem.path
            return f"Invalid JSON payload received. Unknown name \"{name}\" at '{path}': Cannot find field."
        return f"Invalid value at '{problem.path}' ({problem.proto_type}), {_show(problem.value)}"
    return None


def file_line_problem(request: Any, kind: str, line: int, camel_only: bool) -> str | None:
    """The message for one input-file line, as the API reports it per line, or None."""
    try:
        _check_message(request, GENERATE_REQUEST if kind == "generate" else EMBED_REQUEST, "request", camel_only)
    except FieldProblem as problem:
        if problem.name is not None:
            return f"Error on line {line}: invalid JSON: no such field: '{problem.name}'"
        shown = _show(problem.value)
        return f"Error on line {line}: invalid JSON: invalid value at '{problem.path}' ({problem.proto_type}): {shown}"
    return None


def _check_message(value: Any, fields: dict[str, Spec], path: str, camel_only: bool) -> None:
    if not isinstance(value, dict):
        raise FieldProblem(path, proto_type="TYPE_MESSAGE", value=value)
    for name, child in value.items():
        camel = _camel(name)
        if camel not in fields or (camel_only and camel != name):
            raise FieldProblem(path, name=name)
        if child is not None:
            _check_value(child, fields[camel], f"{path}.{_snake(camel)}", camel_only)


def _check_value(value: Any, spec: Spec, path: str, camel_only: bool) -> None:
    if isinstance(spec, dict):
        _check_message(value, spec, path, camel_only)
    elif isinstance(spec, tuple):
        if not isinstance(value, list):
            raise FieldProblem(path, proto_type=_proto_type(spec[1]), value=value)
        for index, element in enumerate(value):
            _check_value(element, spec[1], f"{path}[{index}]", camel_only)
    elif not _scalar_ok(value, spec):
        raise FieldProblem(path, proto_type=_proto_type(spec), value=value)


def _scalar_ok(value: Any, spec: str) -> bool:
    """Proto JSON: numbers may come as numeric strings, integers must be integral, bools are bools."""
    if spec == "any":
        return True
    if spec == "object":
        return isinstance(value, dict)
    if spec == "string":
        return isinstance(value, str)
    if spec == "bool":
        return isinstance(value, bool)
    if spec == "enum":
        return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))
    if isinstance(value, bool):
        return False
    if isinstance(value, str):
        if spec == "float" and value in ("NaN", "Infinity", "-Infinity"):
            return True
        if not _NUMBER.match(value):
            return False
        value = float(value)
    if spec == "float":
        return isinstance(value, int | float)
    return isinstance(value, int | float) and float(value).is_integer()


def _proto_type(spec: Spec) -> str:
    return "TYPE_MESSAGE" if isinstance(spec, dict | tuple) else PROTO_TYPE_NAMES.get(spec, "TYPE_MESSAGE")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _snake(name: str) -> str:
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), name)


def _show(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else repr(value)


def refuse_bad_requests(items: Sequence[Any], kind: str, from_file: bool, camel_only: bool) -> None:
    """Strict mode: 400 INVALID_ARGUMENT at create for requests the API cannot parse (``gemini/strict.py``).

    Inline requests stop at the first problem, as a JSON body parse does; a file reports up to ten
    lines, one ``Error on line N`` each, as users have seen it (inspect_ai#3257).
    """
    if not from_file:
        for index, item in enumerate(items):
            where = f"batch.input_config.requests.requests[{index}].request"
            problem = inline_problem(item.request, kind, where)
            if problem is not None:
                raise GeminiError(400, problem)
        return
    problems = []
    for item in items:
        line = item.line or 0
        if item.problem is not None:
            problems.append(f"Error on line {line}: invalid JSON: the line is not an object with a 'request'")
        else:
            problem = file_line_problem(item.request, kind, line, camel_only)
            if problem is not None:
                problems.append(problem)
    if problems:
        raise GeminiError(400, "\n".join(problems[:MAX_REPORTED_LINES]))
