"""Provider backends, looked up by name. Each module imports its SDK only inside its methods."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from airflow_llm_batch.batch.backends.base import BatchBackend, ClientConfig, ProviderLimits
from airflow_llm_batch.exceptions import ConfigurationError

BACKENDS: dict[str, str] = {
    "openai": "airflow_llm_batch.batch.backends.openai:OpenAIBackend",
    "openai_compatible": "airflow_llm_batch.batch.backends.openai_compatible:OpenAICompatibleBackend",
    "azure_openai": "airflow_llm_batch.batch.backends.azure_openai:AzureOpenAIBackend",
    "anthropic": "airflow_llm_batch.batch.backends.anthropic:AnthropicBackend",
    "gemini": "airflow_llm_batch.batch.backends.gemini:GeminiBackend",
    "vertex": "airflow_llm_batch.batch.backends.vertex:VertexBackend",
    "bedrock": "airflow_llm_batch.batch.backends.bedrock:BedrockBackend",
}


def backend_class(provider: str) -> type[BatchBackend]:
    try:
        target = BACKENDS[provider]
    except KeyError:
        raise ConfigurationError(
            f"unknown provider {provider!r}; choose one of: {', '.join(sorted(BACKENDS))}"
        ) from None
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        raise ConfigurationError(f"provider {provider!r} is not available in this install: {err}") from err
    cls: type[BatchBackend] = getattr(module, class_name)
    return cls


def embeddings_refusal(provider: str | None, model: str) -> str | None:
    """Why an embedding job is refused already when the DAG is parsed: the named provider, or the
    one whose models the name belongs to (``claude-...``), has no embeddings batch API. ``None``:
    no such refusal (other limits are checked at execute). Reads the backends' class facts only
    (no client, no I/O), and only for embedding jobs."""
    for name in BACKENDS:
        cls = backend_class(name)
        if cls.embeddings_refusal and (provider == name or (cls.model_prefix and model.startswith(cls.model_prefix))):
            return cls.embeddings_refusal
    return None


def create_backend(
    provider: str, config: ClientConfig, limit_overrides: Mapping[str, Any] | None = None
) -> BatchBackend:
    cls = backend_class(provider)
    return cls(config, cls.default_limits.with_overrides(limit_overrides))


__all__ = [
    "BACKENDS",
    "BatchBackend",
    "ClientConfig",
    "ProviderLimits",
    "backend_class",
    "create_backend",
    "embeddings_refusal",
]
