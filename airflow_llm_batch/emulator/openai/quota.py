"""OpenAI's queue quota: what a batch counts against it, and how a batch over it fails.

OpenAI accepts the batch, then fails it while ``validating`` with one ``errors.data`` entry; nothing
is billed (openai/openai-python#2084; community.openai.com/t/1002388; see ``emulator/quotas.py``).
"""

from __future__ import annotations

from typing import Any

from airflow_llm_batch.emulator import fake_llm
from airflow_llm_batch.emulator.openai import lines, responses_api
from airflow_llm_batch.emulator.quotas import Load, Refusal

DEFAULT_ORGANIZATION = "org-emulator"
# The refusal of a batch over a queue quota, as users report it (openai/openai-python#2084 for
# tokens, community.openai.com/t/1002388 for requests). The request twin's code is not shown in
# those reports; "request_limit_exceeded" follows the token code's pattern.
QUOTA_ERRORS = {
    "enqueued_tokens": ("token_limit_exceeded", "Enqueued token limit", "enqueued tokens"),
    "enqueued_requests": ("request_limit_exceeded", "Enqueued request limit", "enqueued requests"),
    # OpenAI publishes no concurrent-batch limit; a scenario that sets one gets the request twin.
    "concurrent_batches": ("request_limit_exceeded", "Concurrent batch limit", "concurrent batches"),
}


def batch_load(endpoint: str, requests: list[tuple[str, dict[str, Any]]]) -> Load:
    """What a batch counts against queue quotas: its requests, their input tokens (the emulator's
    tokenizer), and their output allowances (``max_completion_tokens`` or ``max_tokens``; Responses:
    ``max_output_tokens``)."""
    input_tokens = allowance = 0
    for _, body in requests:
        if endpoint == "/v1/embeddings":
            input_tokens += sum(fake_llm.count_tokens(text) for text in lines.embedding_inputs(body))
            continue
        on_responses = endpoint == responses_api.ENDPOINT
        system, user = responses_api.texts(body) if on_responses else lines.chat_texts(body)
        input_tokens += fake_llm.count_tokens((system or "") + user)
        limit = body.get("max_completion_tokens", body.get("max_tokens"))
        if on_responses:
            limit = body.get("max_output_tokens")
        allowance += limit if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0 else 0
    return Load(len(requests), input_tokens, allowance)


def quota_error(refusal: Refusal, organization: str) -> dict[str, Any]:
    """The ``errors.data`` entry of a batch failed for a queue quota (message as users report it)."""
    code, what, unit = QUOTA_ERRORS[refusal.measure]
    message = (
        f"{what} reached for {refusal.model} in organization {organization}. Limit: {refusal.limit:,} {unit}. "
        "Please try again once some in_progress batches have been completed."
    )
    return {"code": code, "message": message, "param": None, "line": None}
