"""Small builders and readers shared by the emulator tests (plain functions, no fixtures)."""

from __future__ import annotations

import json
from typing import Any

from openai import OpenAI


def chat_line(custom_id: str, text: str, model: str = "gpt-4o-mini", **body: Any) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": model, "messages": [{"role": "user", "content": text}], **body},
    }


def jsonl(lines: list[dict[str, Any]]) -> bytes:
    return ("\n".join(json.dumps(line) for line in lines) + "\n").encode()


def read_jsonl(client: OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    return [json.loads(row) for row in client.files.content(file_id).text.splitlines() if row.strip()]
