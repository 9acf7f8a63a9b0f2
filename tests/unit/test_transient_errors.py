"""Which SDK errors count as transient (a retry or a restarted download), whichever HTTP client the
installed SDK release is built on: openai and google-genai 2.x use httpx, their 3.x releases httpx2."""

from __future__ import annotations

import httpx
import httpx2
import pytest

from airflow_llm_batch.batch.backends.base import is_transient_error


@pytest.mark.parametrize("client", [httpx, httpx2], ids=["httpx", "httpx2"])
def test_a_connection_dropped_mid_download_is_transient_on_either_http_client(client):
    dropped = client.RemoteProtocolError("peer closed connection without sending complete message body")
    assert is_transient_error(dropped)
    assert is_transient_error(client.ReadTimeout("timed out"))


def test_answers_are_judged_by_their_status_and_other_errors_are_not_transient():
    class Answer(Exception):
        def __init__(self, status_code: int) -> None:
            self.status_code = status_code

    assert is_transient_error(Answer(429))
    assert is_transient_error(Answer(503))
    assert not is_transient_error(Answer(400))
    assert not is_transient_error(ValueError("not JSON"))
