"""Provider backends, looked up by name. Each module imports its SDK only inside its methods."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from airflow_llm_batch.batch.backends.base import BatchBackend, ClientConfig, ProviderLimits
from airflow_llm_batch.exceptions import ConfigurationError

BACKENDS: dict[str, str] = {
    "openai": "airflow_llm_batch.batch.backends.openai:OpenAIBackend",
    "anthropic": "airflow_llm_batch.batch.backends.anthropic:AnthropicBackend",
    "gemini": "airflow_llm_batch.batch.backends.gemini:GeminiBackend",
    "vertex": "airflow_llm_batch.batch.backends.vertex:VertexBackend",
}

# Providers whose batch APIs take embedding requests; shown in the error for the others.
EMBEDDING_PROVIDERS = ("openai", "gemini")


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


def create_backend(
    provider: str, config: ClientConfig, limit_overrides: Mapping[str, Any] | None = None
) -> BatchBackend:
    cls = backend_class(provider)
    return cls(config, cls.default_limits.with_overrides(limit_overrides))


__all__ = [
    "BACKENDS",
    "EMBEDDING_PROVIDERS",
    "BatchBackend",
    "ClientConfig",
    "ProviderLimits",
    "backend_class",
    "create_backend",
]
