"""AWS clients for the Bedrock backend: boto3 (imported here, lazily) and one async signed call.

boto3 has no async client. The triggerer polls job status with a SigV4-signed GET (botocore's own
signer) sent through the async HTTP client the LLM SDKs bring (httpx2, or httpx on older SDKs),
so the event loop never waits on a socket. Credentials are resolved once, in
:meth:`ClientFactory.prepare_signing`, which the triggers call in a worker thread.

Secrets stay here: the secret key and session token never appear in ``repr``, errors or logs.
"""

from __future__ import annotations

import functools
import importlib
import json
from typing import Any

from airflow_llm_batch.batch.backends.base import ClientConfig
from airflow_llm_batch.exceptions import ConfigurationError

DEFAULT_REGION = "us-east-1"


class AwsCallError(Exception):
    """An error answer of the async status call, with the HTTP status and AWS's error code."""

    def __init__(self, status_code: int, code: str, message: str) -> None:
        super().__init__(f"{code or 'HTTP ' + str(status_code)}: {message}")
        self.status_code = status_code
        self.aws_code = code


def aws_error_code(error: BaseException) -> str | None:
    """The AWS error code of a botocore ``ClientError`` or an :class:`AwsCallError`."""
    if isinstance(error, AwsCallError):
        return error.aws_code
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        code = (response.get("Error") or {}).get("Code")
        return str(code) if code else None
    return None


def aws_http_status(error: BaseException) -> int | None:
    if isinstance(error, AwsCallError):
        return error.status_code
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        return int(status) if isinstance(status, int) else None
    return None


class ClientFactory:
    """The session, the ``bedrock`` and ``s3`` clients, and the async signed call, for one connection."""

    def __init__(self, config: ClientConfig) -> None:
        self.config = config
        self.extra = config.extra
        self._credentials: Any = None
        self._http: Any = None

    @property
    def region(self) -> str:
        return str(self.extra.get("region_name") or self.extra.get("region") or DEFAULT_REGION)

    def endpoint(self, service: str) -> str | None:
        """``service_config.<service>.endpoint_url``, else ``endpoint_url``, else the host field."""
        per_service = ((self.extra.get("service_config") or {}).get(service) or {}).get("endpoint_url")
        return per_service or self.extra.get("endpoint_url") or self.config.base_url or None

    @functools.cached_property
    def session(self) -> Any:
        try:
            boto3 = importlib.import_module("boto3")
        except ImportError as err:
            raise ConfigurationError(
                "the bedrock provider needs boto3: pip install 'airflow-llm-batch[bedrock]'"
            ) from err
        return boto3.session.Session(
            aws_access_key_id=self.config.login or None,
            aws_secret_access_key=self.config.api_key or None,
            aws_session_token=self.extra.get("aws_session_token") or None,
            region_name=self.region,
        )

    def _client(self, service: str) -> Any:
        from botocore.config import Config

        # botocore's ``max_attempts`` counts the retries after the first call, like ``max_retries``.
        options: dict[str, Any] = {"retries": {"max_attempts": self.config.max_retries, "mode": "standard"}}
        if self.config.timeout is not None:
            options["read_timeout"] = self.config.timeout
        if service == "s3" and self.endpoint("s3"):
            options["s3"] = {"addressing_style": "path"}  # a local endpoint has no bucket subdomains
        return self.session.client(service, endpoint_url=self.endpoint(service), config=Config(**options))

    @functools.cached_property
    def bedrock(self) -> Any:
        return self._client("bedrock")

    @functools.cached_property
    def s3(self) -> Any:
        return self._client("s3")

    # The async call ------------------------------------------------------------------------------------
    def prepare_signing(self) -> None:
        """Resolve credentials and the endpoint, and import the signer (blocking: a worker thread)."""
        credentials = self.session.get_credentials()
        if credentials is None:
            raise ConfigurationError(
                "bedrock: no AWS credentials: set the connection's login and password (access key), or give the "
                "workers and the triggerer a role (boto3's default credential chain)"
            )
        self._credentials = credentials
        _ = self.bedrock.meta.endpoint_url
        importlib.import_module("botocore.auth")

    async def signed_get(self, service: str, path: str, method: str = "GET") -> dict[str, Any]:
        """One SigV4-signed JSON call to the service's endpoint (``method`` POST sends ``{}``)."""
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        if self._credentials is None:  # the triggers prepare in a thread; a direct caller pays it here once
            self.prepare_signing()
        base = str(self.bedrock.meta.endpoint_url).rstrip("/")
        body = b"{}" if method == "POST" else None
        request = AWSRequest(
            method=method, url=base + path, data=body, headers={"Content-Type": "application/json"} if body else {}
        )
        # Frozen credentials: refreshable ones (STS, SSO) renew inside get_frozen_credentials only
        # when close to expiry, a rare blocking call the triggers accept.
        SigV4Auth(self._credentials.get_frozen_credentials(), service, self.region).add_auth(request)
        client = self._async_http()
        response = await client.request(method, request.url, headers=dict(request.headers.items()), content=body)
        payload = json.loads(response.content or b"{}")
        if response.status_code >= 300:
            code = response.headers.get("x-amzn-errortype", "").split(":", 1)[0] or str(payload.get("__type") or "")
            raise AwsCallError(response.status_code, code.rsplit("#", 1)[-1], str(payload.get("message") or ""))
        return payload  # type: ignore[no-any-return]

    def _async_http(self) -> Any:
        if self._http is None:
            for name in ("httpx2", "httpx"):  # whichever the installed LLM SDKs brought
                try:
                    module = importlib.import_module(name)
                except ImportError:
                    continue
                self._http = module.AsyncClient(timeout=self.config.timeout or 60.0)
                break
            else:
                raise ConfigurationError("bedrock: the triggerer's status calls need httpx (installed with openai)")
        return self._http

    def close(self) -> None:
        for name in ("bedrock", "s3"):
            if name in self.__dict__:
                self.__dict__[name].close()

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None
