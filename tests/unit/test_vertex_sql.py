"""The SQL that builds Vertex request tables: literals, the prompt expression, the checks' words."""

from __future__ import annotations

import json

import duckdb
import pytest

from airflow_llm_batch.batch.backends.base import ClientConfig, RequestSpec
from airflow_llm_batch.batch.backends.vertex import VertexBackend
from airflow_llm_batch.batch.backends.vertex_sql import (
    check_sql,
    chunk_sql,
    problems_of,
    prompt_expression,
    request_json_parts,
    sql_string,
    staged_select,
)
from airflow_llm_batch.batch.records import Kind
from airflow_llm_batch.batch.schema import ResponseSchema
from airflow_llm_batch.batch.templates import PromptTemplate
from airflow_llm_batch.emulator.bigquery.engine import MACROS
from airflow_llm_batch.emulator.bigquery.sql import split_statements
from airflow_llm_batch.exceptions import ConfigurationError

TEXTS = [
    "plain",
    'it\'s "quoted"',
    "back\\slash \\n \\u0041 \\x41",
    "new\nline\r\ttab",
    "control \x00\x01\x1f\x7f",
    "unicode é ☃ 😀 \u2028\u2029",
    "",
]


def duck() -> duckdb.DuckDBPyConnection:
    db = duckdb.connect()
    for macro in MACROS:
        db.execute(macro)
    return db


def evaluate(db: duckdb.DuckDBPyConnection, googlesql: str, **columns: object) -> object:
    """Run a GoogleSQL expression through the emulator's translation, with columns as a one-row table."""
    names = ", ".join(f"$v{i} AS {name}" for i, name in enumerate(columns)) or "1 AS unused"
    values = {f"v{i}": value for i, value in enumerate(columns.values())}
    [statement] = split_statements(f"SELECT {googlesql} FROM (SELECT {names})")
    return db.execute(statement, values).fetchone()[0]


@pytest.mark.parametrize("text", TEXTS)
def test_a_literal_reads_back_as_its_text(text):
    literal = sql_string(text)
    assert "\n" not in literal and "\x00" not in literal  # one line, no raw control characters
    if "\x00" not in text:  # DuckDB strings cannot hold NUL; BigQuery's can
        assert evaluate(duck(), literal) == text


def test_the_prompt_expression_renders_as_the_template_does():
    template = 'Say "{a}" \\ {{literal}} {b}\n{a}-{c_d}'
    item = {"a": 'x"y\\z\n', "b": "é ☃", "c_d": 42}
    expression = prompt_expression(template)
    assert expression.count("CAST(`a` AS STRING)") == 2 and "CAST(`c_d` AS STRING)" in expression
    assert evaluate(duck(), expression, **item) == PromptTemplate(template).render(item)


def test_the_request_json_is_the_worker_paths_around_the_prompt():
    backend = VertexBackend(ClientConfig(api_key="t", extra={"project": "p"}))
    schema = ResponseSchema.coerce({"type": "object", "properties": {"x": {"type": "string"}}})
    spec = RequestSpec("gemini-2.5-flash", Kind.CHAT, 'sys "q" ☃', {"temperature": 0.2}, schema)
    before, after = request_json_parts(backend, spec)
    prompt = 'a "b" \\ \n é'
    assert json.loads(before + json.dumps(prompt) + after) == backend.build_body(spec, prompt)


def test_the_staged_select_ends_a_trailing_comment_and_nulls_the_request_of_a_null_field():
    sql = staged_select("SELECT 'k' AS id, CAST(NULL AS STRING) AS body -- note;", "id", "<{body}>", ('{"t":', "}"))
    assert "-- note\n) AS llm_batch_source" in sql and ";" not in sql
    [statement] = split_statements(sql)
    assert duck().execute(statement).fetchone() == ("k", None, "body")


def test_chunks_cover_the_rows_once():
    db = duck()
    db.execute("CREATE SCHEMA d")
    db.execute("CREATE TABLE d.staged AS SELECT CAST(i AS VARCHAR) AS key, NULL AS request FROM range(10) t(i)")
    keys = []
    for index in range(3):
        [statement] = split_statements(chunk_sql("p.d.staged", f"p.d.c{index}", index, 3, 4))
        db.execute(statement)
        keys += [key for (key,) in db.execute(f"SELECT key FROM d.c{index}").fetchall()]
    assert sorted(keys) == sorted(str(i) for i in range(10))
    assert (
        chunk_sql("p.d.s", "p.d.c", 0, 1, 10) == "CREATE OR REPLACE TABLE `p.d.c` AS SELECT key, request FROM `p.d.s`"
    )


def test_the_check_query_counts_and_names_each_problem():
    db = duck()
    db.execute("CREATE SCHEMA d")
    db.execute(
        "CREATE TABLE d.staged AS SELECT * FROM (VALUES "
        "('a', CAST('{}' AS JSON), NULL), ('a', CAST('{}' AS JSON), NULL), (NULL, CAST('{}' AS JSON), NULL), "
        "('  ', CAST('{}' AS JSON), NULL), ('n', NULL, 'body'), ('big', CAST('{\"t\": \"xxxxxxxxxx\"}' AS JSON), NULL)"
        ") t(key, request, null_field)"
    )
    [statement] = split_statements(check_sql("p.d.staged", 12))
    cursor = db.execute(statement)
    check = dict(zip([c[0] for c in cursor.description], cursor.fetchone(), strict=True))
    assert (check["items"], check["empty_ids"], check["duplicate_ids"], check["null_values"], check["oversized"]) == (
        6,
        2,
        1,
        1,
        1,
    )
    problems = problems_of(check, "ticket_id", "vertex", 12)
    assert problems == [
        "2 row(s) of the source have a null or empty id in column 'ticket_id'; every row needs an id",
        "item 'a': id field 'ticket_id' is a duplicate; ids must be unique in a run (1 id(s) appear more than once)",
        "item 'n': field 'body' is null; the prompt template uses {body} "
        "(1 row(s) have a null field the template uses)",
        "item 'big': its request is above vertex's limit of 12 bytes per request; shorten the item's text "
        "(1 request(s) are; the largest is 18 bytes)",
    ]


def test_a_column_name_that_cannot_be_quoted_is_refused():
    with pytest.raises(ConfigurationError, match="cannot be quoted"):
        prompt_expression("{a`b}")


def test_a_template_with_nested_fields_takes_the_worker_path_not_sql():
    from pathlib import Path

    from airflow_llm_batch.batch.backends.base import InPlaceRequests, RequestSpec
    from airflow_llm_batch.batch.backends.vertex_tables import obstacles
    from airflow_llm_batch.batch.records import JobKey, Kind

    class Source:
        def as_sql(self, project):
            return "SELECT 1"

    def job(template):
        spec = RequestSpec("gemini-2.5-flash", Kind.CHAT)
        return InPlaceRequests(Source(), "id", template, None, spec, None, Path("/tmp"), JobKey("d", "t", "r"))

    assert obstacles(job("{title}\n\n{text}")) == []
    assert obstacles(job("{meta.product}: {text}")) == [
        "the prompt template reads nested fields ({a.b}), which the SQL path does not build"
    ]
