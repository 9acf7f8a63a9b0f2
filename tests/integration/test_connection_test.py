"""The connection form's Test button: the hook's test_connection against the emulator."""

from __future__ import annotations

import json

import pytest

from airflow_llm_batch.hooks.llm_batch import LLMBatchHook

KEY = "the-right-key"
PROVIDERS = ("openai", "anthropic", "gemini")


@pytest.fixture
def emulator(llm_batch_emulator):
    llm_batch_emulator.set_scenario(api_key=KEY)
    return llm_batch_emulator


def _hook(monkeypatch, emulator, provider, key):
    url = {"openai": emulator.openai_base_url, "anthropic": emulator.anthropic_base_url}.get(
        provider, emulator.gemini_base_url
    )
    conn = {"conn_type": f"llm_batch_{provider}", "host": url, "password": key, "extra": {"max_retries": 0}}
    monkeypatch.setenv(f"AIRFLOW_CONN_TEST_{provider.upper()}", json.dumps(conn))
    return LLMBatchHook(f"test_{provider}")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_the_right_key_connects(monkeypatch, emulator, provider):
    ok, message = _hook(monkeypatch, emulator, provider, KEY).test_connection()
    assert ok, message
    assert message.startswith("Connected to the")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_wrong_key_fails_saying_so_without_the_key(monkeypatch, emulator, provider):
    ok, message = _hook(monkeypatch, emulator, provider, "sk-not-the-key-42").test_connection()
    assert not ok
    assert message.startswith("The provider rejected the API key (HTTP 40")
    assert "sk-not-the-key-42" not in message


def test_an_unreachable_base_url_says_so(monkeypatch):
    conn = {
        "conn_type": "llm_batch_openai",
        "host": "http://127.0.0.1:9/v1",
        "password": "k",
        "extra": {"max_retries": 0},
    }
    monkeypatch.setenv("AIRFLOW_CONN_TEST_DOWN", json.dumps(conn))
    ok, message = LLMBatchHook("test_down").test_connection()
    assert not ok
    assert message.startswith("Could not reach the provider")


def _bedrock_hook(monkeypatch, emulator, key_id, endpoint=None):
    """An AWS connection (the Amazon provider's type) to the emulated Bedrock; the emulator checks the key id."""
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    extra = {"endpoint_url": endpoint or emulator.aws_endpoint_url, "region_name": "us-east-1", "max_retries": 0}
    conn = {"conn_type": "aws", "login": key_id, "password": "aws-secret-42", "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_TEST_BEDROCK", json.dumps(conn))
    return LLMBatchHook("test_bedrock")


def test_bedrock_connects_and_a_wrong_key_says_so_without_the_secret(monkeypatch, emulator):
    ok, message = _bedrock_hook(monkeypatch, emulator, KEY).test_connection()
    assert ok and message == "Connected to Amazon Bedrock batch inference in us-east-1"
    ok, message = _bedrock_hook(monkeypatch, emulator, "AKIANOTTHEKEY").test_connection()
    assert not ok and message.startswith("The provider rejected the API key (HTTP 403)")
    assert "aws-secret-42" not in message
    ok, message = _bedrock_hook(monkeypatch, emulator, KEY, endpoint="http://127.0.0.1:9").test_connection()
    assert not ok and message.startswith("Could not reach the provider")
