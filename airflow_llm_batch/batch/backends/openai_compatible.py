"""OpenAI-compatible hosts: OpenAI's Files and Batch API at another address (Groq, DeepInfra,
kluster.ai, a self-hosted gateway...), with the host's own limits and without some features.

What the host supports is said by the connection (type ``llm_batch_openai_compatible``), never
guessed from its address; the extras (``docs/platforms.md``):

- ``metadata``: whether batches keep ``metadata`` (default **false** here: a host that refuses
  it would fail every create, one that drops it would make the look-up by tag find nothing). Without
  it, a batch is found again only through the job's record (``batch/job.py``): a create response
  lost between the call and the record leaves a batch the retry cannot see, and that chunk is
  created and paid again, as on Anthropic (``docs/reliability.md``).
- ``endpoints``: the endpoints the host serves (``["chat", "embeddings"]``); a job needing another
  is refused before any call. Unset: any.
- ``limits``: the host's per-batch limits where lower than OpenAI's (``{"max_requests": 10000}``).
- ``endpoint``: the endpoint of every chat job (``"chat"`` or ``"responses"``).

Files are uploaded without an expiry unless the job sets ``file_expiry_seconds`` (a host may not
know OpenAI's ``expires_after``); the package still deletes them once the results are written.

The host's base URL is required (there is no default address). Request bodies are judged by the
pre-flight check against the ``openai`` package's types, as OpenAI's are; model names are the host's
own, so no model family is checked.
"""

from __future__ import annotations

from typing import Any

from airflow_llm_batch.batch.backends.base import RequestSpec
from airflow_llm_batch.batch.backends.openai import OpenAIBackend, file_expiry
from airflow_llm_batch.exceptions import ConfigurationError


class OpenAICompatibleBackend(OpenAIBackend):
    provider = "openai_compatible"
    console_url_template = None  # the host's console, if any, is not known here
    default_metadata = False

    def _client_kwargs(self) -> dict[str, Any]:
        if not self.config.base_url:
            raise ConfigurationError(
                "an llm_batch_openai_compatible connection needs the host's base URL (ending in /v1, e.g. "
                "https://api.groq.com/openai/v1) in its host field"
            )
        return super()._client_kwargs()

    def _file_expiry(self, spec: RequestSpec) -> int | None:
        """Only when the job asks (``provider_options={"file_expiry_seconds": N}``): ``expires_after``
        and ``output_expires_after`` are recent OpenAI parameters a host may not know, and refuse."""
        return file_expiry(spec) if "file_expiry_seconds" in spec.options else None

    def test_connection(self) -> tuple[bool, str]:
        self.client.batches.list(limit=1)
        return True, f"Connected to the batch API at {self.config.base_url}"
