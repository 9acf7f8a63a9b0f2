from __future__ import annotations

import pytest

from airflow_llm_batch.batch.backends.base import ClientConfig, RequestSpec
from airflow_llm_batch.batch.backends.openai import OpenAIBackend
from airflow_llm_batch.batch.records import Kind
from airflow_llm_batch.batch.schema import ResponseSchema

SCHEMA = {
    "type": "object",
    "properties": {"label": {"type": "string", "enum": ["a", "b"]}, "score": {"type": "integer"}},
    "required": ["label", "score"],
}


@pytest.fixture
def openai_backend():
    return OpenAIBackend(ClientConfig(api_key="unused", base_url="http://127.0.0.1:9/v1"))


@pytest.fixture
def chat_spec():
    return RequestSpec(
        model="gpt-test", kind=Kind.CHAT, system_prompt="be brief", response_schema=ResponseSchema.coerce(SCHEMA)
    )
