"""What a Google client needs (project, location, endpoint, credentials), read from a connection.

Below both ``io/`` (the BigQuery source and sink) and ``batch/backends/`` (Vertex AI), which
share it. ``google.*`` is imported inside the methods only: DAG files import this module.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_llm_batch.exceptions import ConfigurationError

SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
_GCP_PREFIX = "extra__google_cloud_platform__"


@dataclass(frozen=True)
class GoogleSettings:
    """What a Google client needs, read from a connection; never serialized, secrets out of ``repr``.

    :param token: an OAuth access token (the connection's password); used as it is, never refreshed.
    :param keyfile: a service-account key (``keyfile_dict``), as a mapping.
    :param key_path: a path to a service-account key file.
    :param bigquery_endpoint: the BigQuery API root; the emulator's ``{url}/bigquery`` in tests.
    """

    project: str | None = None
    location: str | None = None
    bigquery_endpoint: str | None = None
    token: str | None = field(default=None, repr=False)
    keyfile: Mapping[str, Any] | None = field(default=None, repr=False)
    key_path: str | None = None

    @classmethod
    def from_parts(cls, password: str | None, extra: Mapping[str, Any]) -> GoogleSettings:
        def read(name: str) -> Any:
            return extra.get(name) or extra.get(_GCP_PREFIX + name) or None

        keyfile = read("keyfile_dict")
        if isinstance(keyfile, str):
            try:
                keyfile = json.loads(keyfile)
            except ValueError:
                raise ConfigurationError("the connection's keyfile_dict extra is not valid JSON") from None
        return cls(
            project=read("project") or read("project_id"),
            location=read("location"),
            bigquery_endpoint=read("bigquery_endpoint"),
            token=password or None,
            keyfile=keyfile,
            key_path=read("key_path"),
        )

    def credentials(self) -> Any:
        """Token, key or Application Default Credentials, scoped to cloud-platform."""
        if self.token:
            import google.oauth2.credentials

            # No expiry: the token is used as given (google-genai refreshes a token-less credential).
            return google.oauth2.credentials.Credentials(token=self.token)
        if self.keyfile or self.key_path:
            from google.oauth2 import service_account

            if self.keyfile:
                return service_account.Credentials.from_service_account_info(dict(self.keyfile), scopes=SCOPES)
            return service_account.Credentials.from_service_account_file(str(self.key_path), scopes=SCOPES)
        import google.auth

        credentials, _ = google.auth.default(scopes=SCOPES)
        return credentials

    def bigquery_client(self) -> Any:
        from google.cloud import bigquery

        options = {"api_endpoint": self.bigquery_endpoint} if self.bigquery_endpoint else None
        return bigquery.Client(
            project=self.project, credentials=self.credentials(), location=self.location, client_options=options
        )
