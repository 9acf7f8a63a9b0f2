"""Azure OpenAI batches (global batch deployments): OpenAI's Files and Batch API on an Azure
resource, through the ``openai`` package's Azure client.

Connection (type ``llm_batch_azure_openai``): host = the resource endpoint
(``https://<resource>.openai.azure.com``); extra ``api_version`` = an Azure API version
(``2025-04-01-preview``: ``openai.AzureOpenAI``) or ``v1`` (the default: the ``/openai/v1/`` path,
``openai.OpenAI``); credentials = an API key in the password, or ``"auth": "entra_id"`` with a
Microsoft Entra ID access token in the password, or without one ``azure-identity``'s
``DefaultAzureCredential`` (installed separately). The job's ``model`` is the deployment name.

Azure's own facts (learn.microsoft.com/azure/ai-foundry/openai/how-to/batch, "Global batch
limits", as known in ``AZURE_FACTS_AS_OF``, written without internet access):

- at most 100,000 requests and 200 MB per input file (``default_limits``);
- at most 500 input files per resource, 10,000 when the files carry an expiry: uploads here
  always set ``expires_after``, at least 14 days (``FILE_EXPIRY_SECONDS``; the page's example
  value), so a busy resource does not hit the 500 cap (Azure/azure-sdk-for-java#47401);
- "we do not expire the jobs that take longer" than 24 hours: a batch never ends ``expired``; the
  Submit operator's ``timeout`` (the sensor cancels at it and harvests what finished) is the
  only deadline;
- request lines name the endpoint without ``/v1`` (``/chat/completions``, ``/embeddings``);
  the Responses API is not offered for Azure batches here (not in that page's batch examples);
- queued-token quotas are per deployment (as low as 30K reported: learn.microsoft.com Q&A
  2285577), with no call to read what is left: lower ``limits`` in the connection to fit.
"""

from __future__ import annotations

import asyncio
import functools
from typing import TYPE_CHECKING, Any

from airflow_llm_batch.batch.backends.base import ProviderLimits, RequestSpec
from airflow_llm_batch.batch.backends.openai import OpenAIBackend, file_expiry
from airflow_llm_batch.batch.backends.openai_endpoints import CHAT, EMBEDDINGS, RESPONSES
from airflow_llm_batch.exceptions import ConfigurationError

if TYPE_CHECKING:
    from openai import AsyncOpenAI, OpenAI

AZURE_FACTS_AS_OF = "2026-12"
AZURE_PATHS = {CHAT: "/chat/completions", EMBEDDINGS: "/embeddings"}
FILE_EXPIRY_SECONDS = 14 * 86_400
ENTRA_SCOPE = "https://cognitiveservices.azure.com/.default"  # the scope Azure OpenAI tokens are for


class AzureOpenAIBackend(OpenAIBackend):
    provider = "azure_openai"
    default_limits = ProviderLimits(
        max_requests=100_000,
        max_bytes=200 * 1024 * 1024,
        max_request_bytes=10 * 1024 * 1024,
        custom_id_pattern=None,
        custom_id_max_length=512,
        single_model_per_batch=True,
    )
    console_url_template = None  # Azure AI Foundry's batch pages are per resource and project

    # Requests ---------------------------------------------------------------------------------------
    def request_endpoint(self, spec: RequestSpec) -> str:
        endpoint = super().request_endpoint(spec)
        if endpoint == RESPONSES:
            raise ConfigurationError(
                f"Azure OpenAI batches here take chat completions and embeddings, not the Responses API "
                f"(model {spec.model!r}): set endpoint='chat', or use a deployment of a chat model"
            )
        return endpoint

    def line_url(self, spec: RequestSpec) -> str:
        return AZURE_PATHS[self.request_endpoint(spec)]

    def _file_expiry(self, spec: RequestSpec) -> int | None:
        """At least ``FILE_EXPIRY_SECONDS``, and never none: files without an expiry count against
        the resource's cap of 500 (``provider_options={"file_expiry_seconds": N}`` up to 30 days)."""
        return max(file_expiry(spec) or FILE_EXPIRY_SECONDS, FILE_EXPIRY_SECONDS)

    # Clients ----------------------------------------------------------------------------------------
    @functools.cached_property
    def client(self) -> OpenAI:
        return self._azure_client(asynchronous=False)  # type: ignore[no-any-return]

    @functools.cached_property
    def async_client(self) -> AsyncOpenAI:
        return self._azure_client(asynchronous=True)  # type: ignore[no-any-return]

    def _azure_client(self, asynchronous: bool) -> Any:
        import openai

        endpoint = (self.config.base_url or "").rstrip("/")
        if not endpoint:
            raise ConfigurationError(
                "an llm_batch_azure_openai connection needs the resource endpoint "
                "(https://<resource>.openai.azure.com) in its host field"
            )
        common = {k: v for k, v in self.config.client_kwargs().items() if k not in ("api_key", "base_url")}
        version = str(self.config.extra.get("api_version") or "v1").strip()
        credential = self._credential(asynchronous, on_v1=version == "v1")
        if version == "v1":
            cls = openai.AsyncOpenAI if asynchronous else openai.OpenAI
            return cls(base_url=f"{endpoint}/openai/v1/", **credential, **common)
        azure = openai.AsyncAzureOpenAI if asynchronous else openai.AzureOpenAI
        return azure(azure_endpoint=endpoint, api_version=version, **credential, **common)

    def _credential(self, asynchronous: bool, on_v1: bool) -> dict[str, Any]:
        """The client's credential argument: a key, an Entra ID token, or a token provider."""
        auth = str(self.config.extra.get("auth") or "api_key").strip().lower()
        secret = self.config.api_key
        if auth not in ("api_key", "entra_id"):
            raise ConfigurationError(f"the connection's 'auth' extra must be 'api_key' or 'entra_id', not {auth!r}")
        if auth == "api_key":
            if not secret:
                raise ConfigurationError(
                    "the Azure OpenAI connection has no API key in its password; set one, or set "
                    '"auth": "entra_id" to use a Microsoft Entra ID token'
                )
            return {"api_key": secret}
        if secret:  # a token the deployment refreshes itself (it expires after about an hour)
            return {"api_key": secret} if on_v1 else {"azure_ad_token": secret}
        provider = _default_token_provider()
        if on_v1 and asynchronous:

            async def token() -> str:
                return await asyncio.to_thread(provider)

            return {"api_key": token}
        return {"api_key": provider} if on_v1 else {"azure_ad_token_provider": provider}

    def test_connection(self) -> tuple[bool, str]:
        self.client.batches.list(limit=1)
        return True, f"Connected to the Azure OpenAI batch API at {self.config.base_url}"


def _default_token_provider() -> Any:
    """Entra ID tokens from ``azure-identity``'s DefaultAzureCredential (managed identity,
    workload identity, environment, Azure CLI...), refreshed as they expire."""
    try:
        from azure.identity import DefaultAzureCredential, get_bearer_token_provider
    except ImportError as err:
        raise ConfigurationError(
            '"auth": "entra_id" without a token in the password uses DefaultAzureCredential: '
            "pip install azure-identity, or put an access token in the connection's password"
        ) from err
    return get_bearer_token_provider(DefaultAzureCredential(), ENTRA_SCOPE)
