"""A provider refusing the credentials, told in terms of the Airflow connection that holds them.

The SDKs' own errors (``openai.AuthenticationError``, ``anthropic.PermissionDeniedError``,
``google.genai.errors.ClientError``...) name neither the connection nor what to change. They are
recognised by their HTTP status (``status_code`` on the OpenAI-style SDKs, ``code`` on google-genai),
so no SDK is imported here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from airflow_llm_batch.exceptions import ConfigurationError

REFUSED = (401, 403)


def refused_status(error: BaseException) -> int | None:
    """The HTTP status when ``error`` is a provider's answer refusing the credentials, else None."""
    for attribute in ("status_code", "code"):
        status = getattr(error, attribute, None)
        if isinstance(status, int) and status in REFUSED:
            return status
    # Gemini answers a bad key with 400 INVALID_ARGUMENT, reason API_KEY_INVALID (google.rpc.ErrorInfo).
    code = getattr(error, "code", None)
    if code == 400 and "API_KEY_INVALID" in str(getattr(error, "details", "")):
        return 400
    return None


@contextmanager
def credentials_of(conn_id: str, provider: str) -> Iterator[None]:
    """Re-raise a refused-credentials error as a ConfigurationError naming the connection (never the key)."""
    try:
        yield
    except Exception as error:
        status = refused_status(error)
        if status is None:
            raise
        raise ConfigurationError(
            f"{provider} refused the credentials of connection {conn_id!r} (HTTP {status}): check the API key "
            "in the connection's password (and, for OpenAI, its organization and project)"
        ) from error
