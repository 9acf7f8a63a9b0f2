"""The GoogleSQL that builds Vertex AI request tables (text only, no I/O).

``vertex_tables.py`` runs it; the module docstring there tells the whole path. Everything here is
GoogleSQL (BigQuery's dialect), never DuckDB-only: the emulator runs it through its translation
and a few macros (``TO_JSON_STRING``, ``PARSE_JSON``, ``BYTE_LENGTH``; ``emulator/bigquery``).
"""

from __future__ import annotations

import hashlib
import json
import string
from collections.abc import Mapping
from typing import Any, Protocol

from airflow_llm_batch.batch.backends.base import RequestSpec
from airflow_llm_batch.exceptions import ConfigurationError


class BodyBuilder(Protocol):
    """A backend, as far as the SQL text needs one: what one request's body looks like."""

    def build_body(self, spec: RequestSpec, text: str) -> dict[str, Any]: ...


_PROMPT = "\x00llm-batch-prompt\x00"  # stands for the prompt text while the static JSON is built


def sql_string(text: str) -> str:
    """``text`` as a GoogleSQL string literal; control characters as ``\\uXXXX`` escapes."""
    out = ["'"]
    for char in text:
        if char == "\\":
            out.append("\\\\")
        elif char == "'":
            out.append("\\'")
        elif char == "\n":
            out.append("\\n")
        elif char == "\r":
            out.append("\\r")
        elif char == "\t":
            out.append("\\t")
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    out.append("'")
    return "".join(out)


def column(name: str) -> str:
    """A column name as a quoted identifier (template fields may hold ``-``)."""
    if "`" in name or "\\" in name or not name:
        raise ConfigurationError(f"column name {name!r} cannot be quoted in GoogleSQL")
    return f"`{name}`"


def template_fields(template: str) -> tuple[list[tuple[str, str | None]], tuple[str, ...]]:
    """The template's ``(literal, field)`` pieces (``{{`` already a brace) and its fields in order."""
    pieces = [(literal, name) for literal, name, _, _ in string.Formatter().parse(template)]
    return pieces, tuple(dict.fromkeys(name for _, name in pieces if name is not None))


def prompt_expression(template: str) -> str:
    """The rendered prompt as SQL: literals and ``CAST(column AS STRING)`` joined with ``||``."""
    parts: list[str] = []
    for literal, name in template_fields(template)[0]:
        if literal:
            parts.append(sql_string(literal))
        if name is not None:
            parts.append(f"CAST({column(name)} AS STRING)")
    return " || ".join(parts) or "''"


def request_json_parts(backend: BodyBuilder, spec: RequestSpec) -> tuple[str, str]:
    """The request's JSON before and after the prompt's JSON string, as the worker path builds it."""
    encoded = json.dumps(backend.build_body(spec, _PROMPT), ensure_ascii=False, separators=(",", ":"))
    before, found, after = encoded.partition(json.dumps(_PROMPT))
    if not found or json.dumps(_PROMPT) in after:
        raise ConfigurationError("vertex: the request body does not hold the prompt once; use requests_in_sql=False")
    return before, after


def staged_select(source_sql: str, id_field: str, template: str, json_parts: tuple[str, str]) -> str:
    """``key``, ``request`` (JSON, NULL when a field is) and ``null_field`` of every source row."""
    fields = template_fields(template)[1]
    before, after = json_parts
    prompt = f"TO_JSON_STRING({prompt_expression(template)})"
    request = f"PARSE_JSON({sql_string(before)} || {prompt} || {sql_string(after)})"
    if fields:
        null_field = "CASE " + " ".join(f"WHEN {column(f)} IS NULL THEN {sql_string(f)}" for f in fields) + " END"
        any_null = " OR ".join(f"{column(f)} IS NULL" for f in fields)
        request = f"CASE WHEN {any_null} THEN NULL ELSE {request} END"
    else:
        null_field = "CAST(NULL AS STRING)"
    # The newline before ")" ends a trailing "-- comment" of the source query.
    return (
        f"SELECT CAST({column(id_field)} AS STRING) AS key, {request} AS request, {null_field} AS null_field\n"
        f"FROM ({source_sql.strip().rstrip(';')}\n) AS llm_batch_source"
    )


def check_sql(staged: str, max_request_bytes: int) -> str:
    """One row: items, bytes, and the count and an example of every kind of bad row.

    (Names avoid GoogleSQL's reserved keywords: a CTE called ``rows`` is a syntax error there.)
    """
    return f"""WITH checked AS (
  SELECT key, null_field, BYTE_LENGTH(TO_JSON_STRING(request)) AS size FROM `{staged}`
), duplicates AS (
  SELECT key FROM checked WHERE key IS NOT NULL AND TRIM(key) != '' GROUP BY key HAVING COUNT(*) > 1
)
SELECT
  (SELECT COUNT(*) FROM checked) AS items,
  (SELECT COALESCE(SUM(size), 0) FROM checked) AS total_bytes,
  (SELECT COUNT(*) FROM checked WHERE key IS NULL OR TRIM(key) = '') AS empty_ids,
  (SELECT COUNT(*) FROM duplicates) AS duplicate_ids,
  (SELECT MIN(key) FROM duplicates) AS duplicate_example,
  (SELECT COUNT(*) FROM checked WHERE null_field IS NOT NULL) AS null_values,
  (SELECT MIN(CONCAT(null_field, ' ', COALESCE(key, ''))) FROM checked WHERE null_field IS NOT NULL) AS null_example,
  (SELECT COUNT(*) FROM checked WHERE size > {int(max_request_bytes)}) AS oversized,
  (SELECT MIN(key) FROM checked WHERE size > {int(max_request_bytes)}) AS oversized_example,
  (SELECT MAX(size) FROM checked) AS largest"""


def chunk_sql(staged: str, target: str, chunk: int, chunks: int, per_chunk: int) -> str:
    """The request table of one chunk: ``key`` and ``request`` of its share of the staged rows."""
    if chunks == 1:
        return f"CREATE OR REPLACE TABLE `{target}` AS SELECT key, request FROM `{staged}`"
    low, high = chunk * per_chunk, (chunk + 1) * per_chunk
    return (
        f"CREATE OR REPLACE TABLE `{target}` AS SELECT key, request FROM ("
        f"SELECT key, request, ROW_NUMBER() OVER (ORDER BY key) AS row_position FROM `{staged}`) AS numbered "
        f"WHERE row_position > {low} AND row_position <= {high}"
    )


def problems_of(check: Mapping[str, Any], id_field: str, provider: str, max_request_bytes: int) -> list[str]:
    """The check row in words, naming an example id and how many rows each problem has."""
    problems = []
    if check["empty_ids"]:
        problems.append(
            f"{check['empty_ids']:,} row(s) of the source have a null or empty id in column '{id_field}'; "
            "every row needs an id"
        )
    if check["duplicate_ids"]:
        problems.append(
            f"item '{check['duplicate_example']}': id field '{id_field}' is a duplicate; ids must be unique in a "
            f"run ({check['duplicate_ids']:,} id(s) appear more than once)"
        )
    if check["null_values"]:
        field, _, key = str(check["null_example"]).partition(" ")
        problems.append(
            f"item '{key}': field '{field}' is null; the prompt template uses {{{field}}} "
            f"({check['null_values']:,} row(s) have a null field the template uses)"
        )
    if check["oversized"]:
        problems.append(
            f"item '{check['oversized_example']}': its request is above {provider}'s limit of "
            f"{max_request_bytes:,} bytes per request; shorten the item's text ({check['oversized']:,} "
            f"request(s) are; the largest is {check['largest']:,} bytes)"
        )
    return problems


def fingerprint_of(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
