"""Bedrock batch records: the input lines a job reads, and the output lines it writes.

Shapes from the Bedrock user guide ("Format and upload your batch inference data", "View the
results of a batch inference job"; Anthropic Claude Messages and Amazon Titan Text Embeddings V2
inference parameters), as read 2026-12. The answers come from the emulator's fake model
(``fake_llm``) through the Anthropic module's Message builder: Claude on Bedrock answers with the
same Message body, without ``model`` in the request.

Strict checks of a record, each an ``error`` record ``{"errorCode": 400, "errorMessage"}``:
Claude bodies must carry ``anthropic_version: bedrock-2023-05-31``, ``max_tokens`` and
``messages``, and no ``model`` (InvokeModel bodies name no model); Titan bodies need ``inputText``
and take ``dimensions`` of 256, 512 or 1024; Cohere Embed v3 bodies need ``texts`` and an
``input_type`` and take no other keys than ``truncate`` and ``embedding_types`` (1024-dimension
answers, no token counts).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from airflow_llm_batch.emulator import fake_llm
from airflow_llm_batch.emulator.anthropic import lines as anthropic_lines
from airflow_llm_batch.emulator.scenario import Scenario

CLAUDE = re.compile(r"([a-z]+\.)?anthropic\.claude-.+")
TITAN_EMBED = re.compile(r"([a-z]+\.)?amazon\.titan-embed-text-v2:0")
TITAN_DIMENSIONS = (256, 512, 1024)
COHERE_EMBED = re.compile(r"([a-z]+\.)?cohere\.embed-(english|multilingual)-v3")
COHERE_KEYS = {"texts", "input_type", "truncate", "embedding_types"}
COHERE_INPUT_TYPES = ("search_document", "search_query", "classification", "clustering")
COHERE_DIMENSIONS = 1024  # Embed v3 English and Multilingual
ITEM_ERRORS = {
    "rate_limited": (429, "Too many requests, please wait before trying again. (emulated)"),
    "server_error": (500, "The model encountered an internal error. (emulated)"),
    "invalid_request": (400, "Malformed input request, please reformat your input and try again. (emulated)"),
    "context_length": (400, "Input is too long for requested model. (emulated)"),
    "content_filtered": (400, "The request was blocked by the model's content filters. (emulated)"),
}


def family_of(model: str) -> str | None:
    if CLAUDE.fullmatch(model):
        return "claude"
    if TITAN_EMBED.fullmatch(model):
        return "titan_embed"
    if COHERE_EMBED.fullmatch(model):
        return "cohere_embed"
    return None


@dataclass
class Record:
    """One input record: its id, its ``modelInput``, why it cannot run, and its drawn fate."""

    record_id: str
    raw: str
    model_input: Any
    problem: str | None = None
    fate: str | None = None
    invalid_output: bool = False
    torn: bool = False

    def fails(self, family: str | None) -> bool:
        """Whether its output is an ``error`` (Claude's content filter answers with a refusal instead)."""
        if self.problem is not None:
            return True
        return self.fate is not None and not (self.fate == "content_filtered" and family == "claude")

    def draw_fate(self, scenario: Scenario, family: str, occurrence: int) -> None:
        if self.problem is not None:
            return
        self.fate = scenario.item_error(self.record_id, occurrence)
        self.invalid_output = family == "claude" and scenario.has_invalid_output(self.record_id, occurrence)
        self.torn = scenario.has_malformed_line(self.record_id, occurrence)


def parse_input(content: bytes, family: str) -> list[Record]:
    """The records of one input file; a record without an id gets one, as the guide says Bedrock does."""
    found = []
    for number, raw in enumerate(content.decode("utf-8", "replace").splitlines()):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
        except ValueError:
            line = None
        if not isinstance(line, dict):
            found.append(Record(f"{number:011d}", raw, None, "The record is not a JSON object."))
            continue
        record_id = str(line.get("recordId") or f"{number:011d}")
        model_input = line.get("modelInput")
        found.append(Record(record_id, raw, model_input, body_problem(model_input, family)))
    return found


def body_problem(body: Any, family: str) -> str | None:
    if not isinstance(body, dict):
        return "modelInput is required and must be a JSON object."
    if family == "cohere_embed":
        extra = sorted(set(body) - COHERE_KEYS)
        if extra:
            return f"Malformed input request: extraneous key [{extra[0]}] is not permitted"
        texts = body.get("texts")
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            return "Malformed input request: texts must be a non-empty list of strings"
        if body.get("input_type") not in COHERE_INPUT_TYPES:
            return f"Malformed input request: input_type must be one of {list(COHERE_INPUT_TYPES)}"
        return None
    if family == "titan_embed":
        if not isinstance(body.get("inputText"), str) or not body["inputText"]:
            return "Malformed input request: required key [inputText] not found"
        dimensions = body.get("dimensions", 1024)
        if dimensions not in TITAN_DIMENSIONS:
            return f"Malformed input request: dimensions must be one of {list(TITAN_DIMENSIONS)}"
        return None
    if body.get("anthropic_version") != "bedrock-2023-05-31":
        return "Malformed input request: anthropic_version must be bedrock-2023-05-31"
    if "model" in body:
        return "Malformed input request: extraneous key [model] is not permitted"
    if not isinstance(body.get("max_tokens"), int) or not isinstance(body.get("messages"), list):
        return "Malformed input request: required keys [max_tokens, messages] not found"
    return None


def output_line(model: str, job_id: str, record: Record, scenario: Scenario) -> tuple[str, bool]:
    """The record's output line, and whether the model answered it (billed)."""
    line: dict[str, Any] = {"recordId": record.record_id, "modelInput": record.model_input}
    family = family_of(model)
    answered = False
    if record.problem is not None:
        line["error"] = {"errorCode": 400, "errorMessage": record.problem}
    elif record.fails(family):
        code, message = ITEM_ERRORS[str(record.fate)]
        line["error"] = {"errorCode": code, "errorMessage": message}
    elif family == "cohere_embed":
        texts = [str(text) for text in record.model_input["texts"]]
        vectors = [fake_llm.embed(text, COHERE_DIMENSIONS) for text in texts]
        line["modelOutput"] = {
            "embeddings": vectors,
            "id": job_id,
            "response_type": "embeddings_floats",
            "texts": texts,
        }
        answered = True
    elif family == "titan_embed":
        text = str(record.model_input["inputText"])
        vector = fake_llm.embed(text, int(record.model_input.get("dimensions", 1024)))
        line["modelOutput"] = {"embedding": vector, "inputTextTokenCount": fake_llm.count_tokens(text)}
        answered = True
    else:
        params = {**record.model_input, "model": model}
        refused = record.fate == "content_filtered"
        line["modelOutput"] = anthropic_lines.answer(job_id, record.record_id, params, record.invalid_output, refused)
        answered = True
    text = json.dumps(line, separators=(",", ":"), ensure_ascii=False)
    return (text[: len(text) // 2] if record.torn else text), answered
