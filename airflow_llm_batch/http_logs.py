"""What the task log and the triggerer's log may say about HTTP: no per-request lines, no credentials.

Plain Python (no Airflow, no SDK): the hook calls it when it builds a backend, in a task's worker
and in the triggerer alike.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit, urlunsplit


def quiet_http_client_logs() -> None:
    """Raise the SDKs' HTTP clients' loggers to WARNING unless the deployment set them itself.

    Each status call logs "HTTP Request: GET ... 200 OK" at INFO: one line per batch per poll that
    says nothing the progress line does not (and carries the full URL). Formatting it through
    Airflow's logging was about a sixth of a status call's Python time on the triggerer's event loop
    (docs/performance.md). Setting the level (rather than filtering) means the record is never built.
    """
    for name in ("httpx2", "httpx"):
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)


def has_userinfo(url: str) -> bool:
    """Whether a URL carries ``user:password@`` (or a bare ``key@``) before its host."""
    return "@" in urlsplit(url).netloc


def redact_url(url: str) -> str:
    """The URL with its userinfo replaced by ``***``, for logs and error messages."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))
