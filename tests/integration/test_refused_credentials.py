"""A wrong API key, as the real SDKs raise it, is reported with the connection id and what to fix."""

from __future__ import annotations

import pytest

from airflow_llm_batch.batch.credentials import credentials_of
from airflow_llm_batch.exceptions import ConfigurationError

WRONG_KEY = "sk-wrong-key-0123456789"


def test_a_refused_key_names_the_connection_and_never_the_key(flow, llm_batch_emulator):
    # The flow's backend sends the key "k"; the emulator now accepts only another one.
    llm_batch_emulator.set_scenario(api_key=WRONG_KEY)
    with pytest.raises(ConfigurationError) as err, credentials_of("my_llm_conn", flow.provider):
        flow.submit([{"id": "a", "text": "hello"}])
    message = str(err.value)
    assert f"{flow.provider} refused the credentials of connection 'my_llm_conn' (HTTP " in message
    assert "check the API key in the connection's password" in message
    assert WRONG_KEY not in message and "'k'" not in message
    # The SDK's own error stays attached for the log.
    assert err.value.__cause__ is not None


def test_other_errors_pass_through_unchanged():
    with pytest.raises(ValueError, match="not about credentials"), credentials_of("c", "openai"):
        raise ValueError("not about credentials")
