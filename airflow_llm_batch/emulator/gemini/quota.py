"""Queue quotas on Google's side (Gemini Developer API and Vertex AI): the load of a batch, the 429.

Both answer a create over quota with HTTP 429 and Google's error JSON, status
``RESOURCE_EXHAUSTED`` (google.rpc.Code 8): the Gemini API for its Batch API limits, "concurrent
batch requests" and "enqueued tokens per model" (ai.google.dev/gemini-api/docs/rate-limits,
"Batch API"; reported even below the published limits, googleapis/python-genai#1901); Vertex AI
for its concurrent batch job quota (cloud.google.com, Vertex AI quotas; 4 jobs for Claude).
The ``details`` follow Google's error model (google.rpc.QuotaFailure and RetryInfo, as Gemini
sends them on 429); the quota metric names in them are the emulator's own.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from airflow_llm_batch.emulator import fake_llm
from airflow_llm_batch.emulator.gemini.files import GeminiError
from airflow_llm_batch.emulator.gemini.lines import chat_texts, content_text, field
from airflow_llm_batch.emulator.quotas import Load, Refusal
from airflow_llm_batch.emulator.web import RETRY_AFTER_SECONDS

# The message the Gemini API sends with its 429s.
GEMINI_QUOTA_MESSAGE = (
    "You exceeded your current quota, please check your plan and billing details. For more information "
    "on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits."
)
METRICS = {
    "enqueued_tokens": "batch_enqueued_tokens",
    "enqueued_requests": "batch_enqueued_requests",
    "concurrent_batches": "concurrent_batch_jobs",
}


def batch_load(kind: str, requests: Iterable[dict[str, Any]]) -> Load:
    """Requests, input tokens (the emulator's tokenizer) and ``maxOutputTokens`` allowances."""
    count = input_tokens = allowance = 0
    for request in requests:
        count += 1
        if kind == "embed":
            input_tokens += fake_llm.count_tokens(content_text(field(request, "content")))
            continue
        system, user = chat_texts(request)
        input_tokens += fake_llm.count_tokens((system or "") + user)
        limit = field(field(request, "generationConfig") or {}, "maxOutputTokens")
        allowance += limit if isinstance(limit, int) and not isinstance(limit, bool) else 0
    return Load(count, input_tokens, allowance)


def quota_exceeded(refusal: Refusal, service: str, message: str) -> GeminiError:
    """The 429 RESOURCE_EXHAUSTED error for a create over a queue quota."""
    violation = {
        "quotaMetric": f"{service}/{METRICS[refusal.measure]}",
        "quotaId": f"{METRICS[refusal.measure]}_per_project_per_model",
        "quotaDimensions": {"model": refusal.model or ""},
        "quotaValue": str(refusal.limit),
    }
    details = [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [violation]},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{RETRY_AFTER_SECONDS}s"},
    ]
    return GeminiError(429, message, "RESOURCE_EXHAUSTED", details, headers={"retry-after": RETRY_AFTER_SECONDS})
