"""The requests of a Gemini batch as the API receives them: inline entries or lines of an input file.

Inline requests are ``batch.inputConfig.requests.requests[]`` entries ``{"request": {...},
"metadata": {"key": ...}}``; a file holds ``{"key", "request"}`` lines (``reference/provider-apis.md``
section 4.1). A file line that cannot be read becomes an item with a ``problem``, answered with an
error entry (or, in strict mode, refused at create by ``gemini/strict.py``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from airflow_llm_batch.emulator.gemini.files import GeminiError
from airflow_llm_batch.emulator.gemini.lines import field as proto_field


@dataclass(frozen=True)
class Item:
    """One request of a batch and its fate, fixed at create.

    :param key: ``metadata.key`` (inline) or ``key`` (file line); None when the request had none.
    :param problem: why a file line could not be read; it is answered with an error entry.
    """

    key: str | None
    request: dict[str, Any]
    metadata: dict[str, Any] | None
    error_kind: str | None = None
    invalid_output: bool = False
    malformed_line: bool = False
    problem: str | None = None
    line: int | None = None


def parse_inline(inline: Any) -> list[Item]:
    """``inputConfig.requests.requests[]``: ``{"request": {...}, "metadata": {"key": ...}}`` entries."""
    entries = proto_field(inline, "requests")
    if not isinstance(entries, list) or not entries:
        raise GeminiError(400, "batch.inputConfig.requests.requests must hold at least one request.")
    items = []
    for index, entry in enumerate(entries):
        request = proto_field(entry, "request")
        if not isinstance(request, dict):
            raise GeminiError(400, f"batch.inputConfig.requests.requests[{index}].request is required.")
        metadata = entry.get("metadata") if isinstance(entry.get("metadata"), dict) else None
        key = metadata.get("key") if metadata else None
        items.append(Item(str(key) if key is not None else None, request, metadata))
    return items


def parse_file(content: bytes) -> list[Item]:
    """A JSONL input file of ``{"key", "request"}`` lines; unreadable lines become error entries."""
    items = []
    for number, raw in enumerate(content.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
        except ValueError:
            line = None
        key = line.get("key") if isinstance(line, dict) else None
        request = proto_field(line, "request")
        if not isinstance(request, dict):
            problem = f"Line {number} of the input file is not a JSON object with a 'request'."
            items.append(Item(str(key) if key is not None else None, {}, None, problem=problem, line=number))
            continue
        items.append(Item(str(key) if key is not None else None, request, None, line=number))
    if not items:
        raise GeminiError(400, "The input file holds no requests.")
    return items
