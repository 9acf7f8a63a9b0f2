"""Connections to the providers' batch APIs, as Airflow hooks.

A connection holds the API key (password), the base URL (host; the emulator's URL in tests), and
extras: ``organization``/``project`` (OpenAI), ``work_dir``, ``provider`` (to override the one the
connection type implies), ``max_retries``, ``limits`` (lower per-batch limits, e.g.
``{"max_requests": 1000}``). The backend follows from the connection type, so a DAG
switches provider by switching its connection and model.

This module is imported when DAG files are parsed: it imports no provider SDK.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from airflow.sdk import BaseHook

from airflow_llm_batch.batch.backends import BatchBackend, ClientConfig, create_backend
from airflow_llm_batch.batch.backends.aws_calls import aws_http_status
from airflow_llm_batch.exceptions import ConfigurationError
from airflow_llm_batch.http_logs import has_userinfo, quiet_http_client_logs, redact_url

PROVIDER_BY_CONN_TYPE = {
    "llm_batch_openai": "openai",
    "openai": "openai",
    "llm_batch_openai_compatible": "openai_compatible",
    "llm_batch_azure_openai": "azure_openai",
    "llm_batch_anthropic": "anthropic",
    "anthropic": "anthropic",
    "llm_batch_gemini": "gemini",
    "gemini": "gemini",
    "llm_batch_vertex": "vertex",
    "llm_batch_bedrock": "bedrock",
    # The Amazon provider's AWS connection (``aws_default``): read here without that provider.
    "aws": "bedrock",
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
    quiet_http_client_logs()
    extra = dict(conn.extra_dejson or {})
    name = provider_of(conn.conn_type, extra, provider)
    base_url = conn.host or extra.get("base_url") or None
    if base_url and has_userinfo(str(base_url)):
        # The SDKs take the key from the password field and send it as a header; a key in the URL
        # would be sent as basic auth (replacing the SDK's header) and would reach every logged URL.
        raise ConfigurationError(
            f"connection {getattr(conn, 'conn_id', '?')!r}: its host {redact_url(str(base_url))} carries credentials "
            "before '@'. Put the API key in the connection's password field and the plain URL in its host."
        )
    config = ClientConfig(
        api_key=conn.password or None, base_url=base_url, extra=extra, login=getattr(conn, "login", None) or None
    )
    # Limits: the connection's ``limits`` extra (e.g. a smaller enqueued-token quota of one
    # organization), then the operator's ``provider_limits`` on top.
    limits = {**(extra.get("limits") or {}), **(limit_overrides or {})}
    return create_backend(name, config, limits)


def prepared_backend(
    conn: Any, provider: str | None = None, limit_overrides: Mapping[str, Any] | None = None
) -> BatchBackend:
    """The backend with its async client ready (the SDK imported): for a worker thread of the triggerer."""
    backend = backend_from_connection(conn, provider, limit_overrides)
    backend.prepare_async()
    return backend


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
        return await asyncio.to_thread(prepared_backend, conn, provider, limit_overrides)

    def test_connection(self) -> tuple[bool, str]:
        """For the connection form's Test button: one cheap authenticated call (list one batch)."""
        try:
            return self.get_conn().test_connection()
        except Exception as err:  # the UI shows the message; keep it free of secrets
            return False, _test_failure(err, self)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Airflow 3.1 reads a connection type's form only from methods defined on its hook class
        # itself (not inherited): give every connection type's hook its own.
        super().__init_subclass__(**kwargs)
        cls.get_connection_form_widgets = classmethod(_form_widgets)  # type: ignore[assignment,method-assign]
        cls.get_ui_field_behaviour = classmethod(_ui_field_behaviour)  # type: ignore[assignment,method-assign]

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """Extra form fields on Airflow 3.1 (3.2+ reads ``conn-fields`` from the provider info)."""
        return _form_widgets(cls)

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Hidden, relabelled and pre-filled fields on Airflow 3.1 (3.2+ reads the provider info)."""
        return _ui_field_behaviour(cls)


def _form_widgets(cls: type[LLMBatchHook]) -> dict[str, Any]:
    from airflow_llm_batch.get_provider_info import connection_form

    fields = connection_form(cls.conn_type).get("conn-fields", {})
    if not fields:
        return {}
    # Airflow 3.1's API server stands in fakes for these when Flask-AppBuilder is not installed.
    from flask_appbuilder.fieldwidgets import BS3TextFieldWidget
    from flask_babel import lazy_gettext
    from wtforms import StringField

    return {
        name: StringField(
            lazy_gettext(field["label"]),
            widget=BS3TextFieldWidget(),
            description=field.get("description", ""),
            default=field["schema"].get("default"),
        )
        for name, field in fields.items()
    }


def _ui_field_behaviour(cls: type[LLMBatchHook]) -> dict[str, Any]:
    from airflow_llm_batch.get_provider_info import connection_form

    behaviour = connection_form(cls.conn_type).get("ui-field-behaviour", {})
    return {
        "hidden_fields": list(behaviour.get("hidden-fields", [])),
        "relabeling": dict(behaviour.get("relabeling", {})),
        "placeholders": dict(behaviour.get("placeholders", {})),
    }


def _test_failure(err: Exception, hook: LLMBatchHook) -> str:
    """What the Test button shows for a failed call: the cause in words, never the key."""
    # botocore's ClientError carries its HTTP status in its response (aws_http_status).
    status = getattr(err, "status_code", None) or getattr(err, "code", None) or aws_http_status(err)
    detail = f"{type(err).__name__}: {_redact(str(err), hook)}"
    # OpenAI and Anthropic answer a bad key with 401; Gemini with 400 and reason API_KEY_INVALID;
    # AWS with 403 (UnrecognizedClientException, InvalidSignatureException).
    if status in (401, 403) or "API_KEY_INVALID" in detail:
        return f"The provider rejected the API key (HTTP {status}): check the connection's password. {detail}"
    if type(err).__name__ in (
        "APIConnectionError",
        "ConnectError",
        "ConnectTimeout",
        "APITimeoutError",
        "EndpointConnectionError",
    ):
        return f"Could not reach the provider: check the Base URL (host) and the network. {detail}"
    return detail


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


class LLMBatchVertexHook(LLMBatchHook):
    """Vertex AI batch prediction with BigQuery tables: password = OAuth access token (or empty for
    Application Default Credentials); extras ``project``, ``location``, ``bigquery_dataset``,
    ``bigquery_endpoint``; host = the Vertex base URL (e.g. ``http://127.0.0.1:8765/vertex``)."""

    conn_type = "llm_batch_vertex"
    hook_name = "LLM Batch: Vertex AI"
    default_conn_name = "llm_batch_vertex_default"


class LLMBatchOpenAICompatibleHook(LLMBatchHook):
    """An OpenAI-compatible batch API (Groq, DeepInfra, a gateway...): host = its base URL ending in
    ``/v1``; extras say what it supports: ``metadata`` (batch tags, default false), ``endpoints``,
    ``limits`` (``docs/platforms.md``)."""

    conn_type = "llm_batch_openai_compatible"
    hook_name = "LLM Batch: OpenAI-compatible host"
    default_conn_name = "llm_batch_openai_compatible_default"


class LLMBatchAzureOpenAIHook(LLMBatchHook):
    """Azure OpenAI global batch: host = the resource endpoint (``https://<resource>.openai.azure.com``),
    password = an API key (or an Entra ID token with ``"auth": "entra_id"``), extra ``api_version``
    (``v1`` by default); the model is the deployment name (``docs/platforms.md``)."""

    conn_type = "llm_batch_azure_openai"
    hook_name = "LLM Batch: Azure OpenAI"
    default_conn_name = "llm_batch_azure_openai_default"


class LLMBatchBedrockHook(LLMBatchHook):
    """Amazon Bedrock batch inference: login = AWS access key id, password = secret access key (both
    empty: boto3's default credentials), extras ``region_name``, ``endpoint_url``, ``bedrock_role_arn``,
    ``bedrock_s3_uri`` (``docs/platforms.md``). Connections of the Amazon provider's type ``aws``
    (``aws_default``) work too, without that provider installed."""

    conn_type = "llm_batch_bedrock"
    hook_name = "LLM Batch: Amazon Bedrock"
    default_conn_name = "llm_batch_bedrock_default"
