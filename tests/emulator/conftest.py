"""Helpers for the emulator tests: a real OpenAI client and small batch builders.

The ``llm_batch_emulator`` fixture itself comes from ``airflow_llm_batch.emulator.pytest_plugin``
(a ``pytest11`` entry point), exactly as users' own tests get it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from emulator_test_helpers import jsonl
from openai import OpenAI

from airflow_llm_batch.emulator import Emulator

Submit = Callable[..., Any]


@pytest.fixture
def emu(llm_batch_emulator: Emulator) -> Emulator:
    return llm_batch_emulator


@pytest.fixture
def client(emu: Emulator) -> Iterator[OpenAI]:
    with OpenAI(api_key="test-key", base_url=emu.openai_base_url, max_retries=0) as openai_client:
        yield openai_client


@pytest.fixture
def submit(client: OpenAI) -> Submit:
    """Upload lines as a batch input file and create the batch; returns the Batch."""

    def _submit(
        lines: list[dict[str, Any]] | bytes,
        endpoint: str = "/v1/chat/completions",
        metadata: dict[str, str] | None = None,
    ) -> Any:
        content = lines if isinstance(lines, bytes) else jsonl(lines)
        uploaded = client.files.create(file=("input.jsonl", content, "application/jsonl"), purpose="batch")
        extra = {"metadata": metadata} if metadata is not None else {}
        return client.batches.create(
            input_file_id=uploaded.id,
            endpoint=endpoint,
            completion_window="24h",
            **extra,  # type: ignore[arg-type]
        )

    return _submit
