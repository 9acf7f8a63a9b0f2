"""The connection's ``timeout`` and ``max_retries`` extras reach every provider's SDK client."""

from __future__ import annotations

import pytest

from airflow_llm_batch.batch.backends import create_backend
from airflow_llm_batch.batch.backends.base import ClientConfig

SETTINGS = {"timeout": "12.5", "max_retries": "4"}


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_openai_style_clients_take_the_timeout_and_retries(provider):
    backend = create_backend(provider, ClientConfig(api_key="k", base_url="http://127.0.0.1:9/v1", extra=SETTINGS))
    for client in (backend.client, backend.async_client):  # type: ignore[attr-defined]
        assert client.timeout == 12.5 and client.max_retries == 4
        assert str(client.base_url).startswith("http://127.0.0.1:9/v1")


def test_the_openai_client_takes_the_organization_and_project():
    extra = {"organization": "org-1", "project": "proj-1"}
    backend = create_backend("openai", ClientConfig(api_key="k", base_url="http://127.0.0.1:9/v1", extra=extra))
    assert (backend.client.organization, backend.client.project) == ("org-1", "proj-1")  # type: ignore[attr-defined]


def test_openai_style_clients_keep_the_sdk_defaults_without_settings():
    backend = create_backend("openai", ClientConfig(api_key="k", base_url="http://127.0.0.1:9/v1"))
    assert backend.client.max_retries == 2  # type: ignore[attr-defined]
    assert backend.client.timeout != 12.5  # type: ignore[attr-defined]


def test_the_genai_client_takes_the_timeout_in_milliseconds_and_retries_as_attempts():
    extra = {**SETTINGS, "api_version": "v1beta"}
    backend = create_backend("gemini", ClientConfig(api_key="k", base_url="http://127.0.0.1:9/gemini", extra=extra))
    options = backend.client._api_client._http_options  # type: ignore[attr-defined]
    assert options.timeout == 12500 and options.retry_options.attempts == 5
    assert options.base_url.startswith("http://127.0.0.1:9/gemini") and options.api_version == "v1beta"
