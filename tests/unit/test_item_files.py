"""Reading items from a JSONL file: a bad line is named by the file's own line number only."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_llm_batch.exceptions import InvalidInputError
from airflow_llm_batch.io.sources import iter_file_items


def _read(path: Path) -> list:
    return list(iter_file_items(path))


def test_a_line_that_is_not_utf8_says_so_with_the_byte_and_column(tmp_path: Path):
    path = tmp_path / "items.jsonl"
    path.write_bytes(b'{"id": "a", "text": "ok"}\n{"id": "b", "text": "caf\xe9"}\n')
    with pytest.raises(InvalidInputError) as err:
        _read(path)
    message = str(err.value)
    assert "items.jsonl line 2: not UTF-8 text (byte 0xe9 at column 25); save the file as UTF-8" in message
    assert "not valid JSON" not in message


def test_broken_json_names_the_file_line_and_a_column_not_a_second_line_number(tmp_path: Path):
    path = tmp_path / "items.jsonl"
    path.write_text('{"id": "a"}\n{"id": "b"}\n{"id": "c",}\n')
    with pytest.raises(InvalidInputError) as err:
        _read(path)
    message = str(err.value)
    assert "items.jsonl line 3: not valid JSON (" in message and " at column " in message
    assert "line 1 column" not in message and "(char " not in message
