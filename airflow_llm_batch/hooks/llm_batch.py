"""Connections to the providers' batch APIs, as Airflow hooks.

A connection holds the API key (password), the base URL (host; the emulator's URL in tests), and
extras: ``organization``/``project`` (OpenAI), ``work_dir``, ``provider`` (to override the one the
connection type implies), ``max_retries``, ``limits`` (lower per-batch limits, e.g.
``{"max_requests": 1000}``). The backend follows from the connection type, so a DAG
switches provider by switching its connection and model.

This module is imported when DAG files are parsed: it imports no provider SDK.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow.sdk import BaseHook

from airflow_llm_batch.batch.backends import BatchBackend, ClientConfig, create_backend
from airflow_llm_batch.exceptions import ConfigurationError

PROVIDER_BY_CONN_TYPE = {
    "llm_batch_openai": "openai",
    "openai": "openai",
    "llm_batch_anthropic": "anthropic",
    "anthropic": "anthropic",
    "llm_batch_gemini": "gemini",
    "gemini": "gemini",
}


def provider_of(conn_type: str | None, extra: Mapping[str, Any], override: str | None = None) -> str:
    """The provider a connection speaks to: the explicit override, the ``provider`` extra, or the type."""
    provider = override or extra.get("provider") or PROVIDER_BY_CONN_TYPE.get(conn_type or "")
    if not provider:
        known = ", ".join(sorted(PROVIDER_BY_CONN_TYPE))
        raise ConfigurationError(
            f"cannot tell the provider of a connection of type {conn_type!r}; use one of the types "
            f"{known}, or set provider= on the operator"
        )
    return str(provider)


def backend_from_connection(
    conn: Any, provider: str | None = None, limit_overrides: Mapping[str, Any] | None = None
) -> BatchBackend:
    """Build the backend for a connection object (sync or async lookups both end here)."""
    extra = dict(conn.extra_dejson or {})
    name = provider_of(conn.conn_type, extra, provider)
    base_url = conn.host or extra.get("base_url") or None
    config = ClientConfig(api_key=conn.password or None, base_url=base_url, extra=extra)
    # Limits: the connection's ``limits`` extra (e.g. a smaller enqueued-token quota of one
    # organization), then the operator's ``provider_limits`` on top.
    limits = {**(extra.get("limits") or {}), **(limit_overrides or {})}
    return create_backend(name, config, limits)


class LLMBatchHook(BaseHook):
    """A batch backend built from an Airflow connection.

    :param conn_id: the connection; its type picks the provider (``llm_batch_openai``,
        ``llm_batch_anthropic``, ``llm_batch_gemini``, or the official providers' ``openai`` /
        ``anthropic`` types).
    :param provider: overrides the provider the connection type implies.
    :param limit_overrides: lower (or raise) the provider's batch limits, e.g. ``{"max_requests": 1000}``.
    """

    conn_name_attr = "conn_id"
    default_conn_name = "llm_batch_default"
    conn_type = "llm_batch_openai"
    hook_name = "LLM Batch"

    def __init__(
        self,
        conn_id: str = default_conn_name,
        provider: str | None = None,
        limit_overrides: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.conn_id = conn_id
        self.provider = provider
        self.limit_overrides = dict(limit_overrides or {})
        self._backend: BatchBackend | None = None

    def get_conn(self) -> BatchBackend:
        if self._backend is None:
            conn = self.get_connection(self.conn_id)
            self._backend = backend_from_connection(conn, self.provider, self.limit_overrides)
        return self._backend

    def connection_extra(self) -> dict[str, Any]:
        return dict(self.get_connection(self.conn_id).extra_dejson or {})

    @classmethod
    async def aget_backend(
        cls, conn_id: str, provider: str | None = None, limit_overrides: Mapping[str, Any] | None = None
    ) -> BatchBackend:
        """For triggers: the connection is looked up without blocking the event loop."""
        from airflow.sdk import Connection

        conn = await Connection.async_get(conn_id)
        return backend_from_connection(conn, provider, limit_overrides)

    def test_connection(self) -> tuple[bool, str]:
        try:
            return self.get_conn().test_connection()
        except Exception as err:  # the UI shows the message; keep it free of secrets
            return False, f"{type(err).__name__}: {_redact(str(err), self)}"

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": ["schema", "port", "login"],
            "relabeling": {"password": "API Key", "host": "Base URL"},
            "placeholders": {
                "host": "leave empty for the provider's public endpoint",
                "extra": '{"work_dir": "s3://bucket/llm-batch"}',
            },
        }


def _redact(message: str, hook: LLMBatchHook) -> str:
    try:
        secret = hook.get_connection(hook.conn_id).password
    except Exception:
        return message
    return message.replace(secret, "***") if secret else message


class LLMBatchOpenAIHook(LLMBatchHook):
    """OpenAI Batch API. Base URL must end in ``/v1`` (e.g. ``http://127.0.0.1:8765/openai/v1``)."""

    conn_type = "llm_batch_openai"
    hook_name = "LLM Batch: OpenAI"
    default_conn_name = "llm_batch_openai_default"


class LLMBatchAnthropicHook(LLMBatchHook):
    """Anthropic Message Batches. Base URL without ``/v1`` (e.g. ``http://127.0.0.1:8765/anthropic``)."""

    conn_type = "llm_batch_anthropic"
    hook_name = "LLM Batch: Anthropic"
    default_conn_name = "llm_batch_anthropic_default"


class LLMBatchGeminiHook(LLMBatchHook):
    """Gemini Batch API (Developer API, API key)."""

    conn_type = "llm_batch_gemini"
    hook_name = "LLM Batch: Gemini"
    default_conn_name = "llm_batch_gemini_default"
