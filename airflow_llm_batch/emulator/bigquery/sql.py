"""GoogleSQL (BigQuery's dialect) to DuckDB, for the subset this package and its examples use.

Not a parser: one pass over the text that knows strings, comments and quoted names, which is
enough to translate the differences that matter here without touching string contents:

- `` `project.dataset.table` `` becomes ``"dataset"."table"`` (the emulator keeps one namespace
  of datasets; the project is ignored);
- ``"text"`` is a string literal in GoogleSQL and becomes ``'text'``; ``\\'`` escapes become ``''``;
- ``@name`` query parameters become DuckDB's ``$name``;
- ``INT64``, ``FLOAT64``, ``BYTES``, ``NUMERIC``, ``SAFE_CAST`` and ``JSON_VALUE`` (a string, not
  JSON) get their DuckDB names;
- a script is split into statements at ``;`` (DuckDB binds parameters per statement only).

``PARSE_JSON``, ``TO_JSON_STRING``, ``BYTE_LENGTH`` and ``DATE(x)`` are DuckDB macros (see ``engine.py``);
``JSON_OBJECT``, ``JSON_ARRAY``, ``CONCAT`` and ``BEGIN``/``COMMIT TRANSACTION``
exist in both dialects.
"""

from __future__ import annotations

import re
import string

TYPE_WORDS = {
    "INT64": "BIGINT",
    "FLOAT64": "DOUBLE",
    "BYTES": "BLOB",
    "NUMERIC": "DECIMAL(38, 9)",
    "BIGNUMERIC": "DECIMAL(38, 9)",
    "SAFE_CAST": "TRY_CAST",
    "JSON_VALUE": "json_extract_string",
}
_WORD = re.compile(r"[A-Za-z_][A-Za-z_0-9]*")
# GoogleSQL's escapes in string literals ("Lexical structure": \a \b \f \n \r \t \v, \xhh,
# \uhhhh, \Uhhhhhhhh); any other escaped character stands for itself (\\ \' \" \`).
_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_HEX_ESCAPES = {"x": 2, "u": 4, "U": 8}


class SqlError(ValueError):
    """The statement uses something the translation cannot handle (an unterminated string...)."""


def split_statements(sql: str) -> list[str]:
    """The script's statements, translated to DuckDB, without empty ones."""
    statements: list[str] = []
    current: list[str] = []
    index, length = 0, len(sql)
    while index < length:
        char = sql[index]
        if char == ";":
            statements.append("".join(current))
            current = []
            index += 1
        elif char in "'\"":
            literal, index = _string(sql, index)
            current.append(literal)
        elif char == "`":
            end = sql.find("`", index + 1)
            if end < 0:
                raise SqlError("unterminated quoted identifier (backtick)")
            current.append(quoted_name(sql[index + 1 : end]))
            index = end + 1
        elif sql.startswith("--", index) or char == "#":
            end = sql.find("\n", index)
            index = length if end < 0 else end
        elif sql.startswith("/*", index):
            end = sql.find("*/", index + 2)
            if end < 0:
                raise SqlError("unterminated comment")
            index = end + 2
        elif char == "@" and index + 1 < length and (sql[index + 1].isalpha() or sql[index + 1] == "_"):
            match = _WORD.match(sql, index + 1)
            assert match is not None
            current.append("$" + match.group(0))
            index = match.end()
        elif char.isalpha() or char == "_":
            match = _WORD.match(sql, index)
            assert match is not None
            word = match.group(0)
            current.append(TYPE_WORDS.get(word.upper(), word))
            index = match.end()
        else:
            current.append(char)
            index += 1
    statements.append("".join(current))
    return [s.strip() for s in statements if s.strip()]


def quoted_name(name: str) -> str:
    """`` `p.d.t` `` -> ``"d"."t"``; `` `d.t` `` -> ``"d"."t"``; `` `x` `` -> ``"x"``."""
    parts = name.split(".")
    if len(parts) == 3:
        parts = parts[1:]
    return ".".join('"' + part.replace('"', '""') + '"' for part in parts)


def _string(sql: str, start: int) -> tuple[str, int]:
    """A GoogleSQL string literal at ``start`` as a DuckDB literal, and the index after it."""
    quote = sql[start]
    chars: list[str] = []
    index = start + 1
    while index < len(sql):
        char = sql[index]
        if char == "\\" and index + 1 < len(sql):
            escaped = sql[index + 1]
            digits = _HEX_ESCAPES.get(escaped, 0)
            if digits:
                code = sql[index + 2 : index + 2 + digits]
                if len(code) != digits or any(c not in string.hexdigits for c in code):
                    raise SqlError(f"illegal escape sequence \\{escaped}{code}")
                chars.append(chr(int(code, 16)))
                index += 2 + digits
                continue
            chars.append(_ESCAPES.get(escaped, escaped))
            index += 2
            continue
        if char == quote:
            return "'" + "".join(chars).replace("'", "''") + "'", index + 1
        chars.append(char)
        index += 1
    raise SqlError("unterminated string literal")


def first_word(statement: str) -> str:
    """The statement's first keyword, upper-cased (``SELECT``, ``WITH``, ``DELETE``...)."""
    match = _WORD.search(statement)
    return match.group(0).upper() if match else ""
