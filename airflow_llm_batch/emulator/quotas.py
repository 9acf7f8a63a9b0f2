"""Queue quotas: how much one account may have waiting at a provider, and the refusal when it is over.

Every provider meters what is *enqueued*: batches created and not yet ended. The measures and how
the real services answer (sources in ``docs/emulator.md``, "Queue quotas"):

- OpenAI: enqueued prompt tokens per model, and (reported) an enqueued-request limit. The batch is
  accepted, then ``failed`` with ``errors.data[].code = "token_limit_exceeded"`` and the message
  "Enqueued token limit reached for <model> in organization <org>. Limit: N enqueued tokens. Please
  try again once some in_progress batches have been completed." (openai/openai-python#2084;
  community.openai.com/t/1002388 for the request twin). Nothing is billed.
- Anthropic: "batch requests in the processing queue" per tier; create answers 429
  ``rate_limit_error`` (docs.anthropic.com, API rate limits, Message Batches API).
- Gemini Developer API: "enqueued tokens per model" and "concurrent batch requests" per tier; create
  answers 429 ``RESOURCE_EXHAUSTED`` (ai.google.dev/gemini-api/docs/rate-limits, Batch API;
  googleapis/python-genai#1901).
- Amazon Bedrock: submitted and in-progress batch inference jobs per model (10 by default, the quotas
  page docs.aws.amazon.com/general/latest/gr/bedrock.html); create answers
  ``ServiceQuotaExceededException``.
- Vertex AI: concurrent batch jobs per project; 4 for Claude models (cloud.google.com, Claude batch
  predictions on Vertex AI); answered as Google's 429 ``RESOURCE_EXHAUSTED``.

The quota is data in the scenario (`QueueQuota`), so a test can set it at start and shrink it at
runtime; each provider's models compute the `Load` of a new batch and of the account's running
batches, and `first_refusal` says which limit, if any, the new batch breaks.
"""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

QUOTA_PROVIDERS = ("openai", "anthropic", "gemini", "vertex", "bedrock")
MEASURES = ("enqueued_tokens", "enqueued_requests", "concurrent_batches")
# Vertex AI's documented default for Claude batch jobs per project (cloud.google.com, "Batch
# predictions" for Anthropic's Claude models on Vertex AI: "4 concurrent batch jobs").
VERTEX_CLAUDE_CONCURRENT_JOBS = 4


class QuotaError(ValueError):
    """A queue quota entry the emulator cannot act on."""


@dataclass
class QueueQuota:
    """A limit on what one account may have enqueued at one provider.

    :param provider: ``openai``, ``anthropic``, ``gemini`` or ``vertex``.
    :param model: a model name or an ``fnmatch`` pattern (``gpt-4o*``); the limit counts the
        account's running batches of models matching it. None: every model, counted together.
    :param account: the API key (OpenAI, Anthropic, Gemini) or the project (Vertex) the limit
        applies to; None: every account, each counted apart.
    :param enqueued_tokens: input tokens of the running batches' requests, plus each request's
        output allowance (``max_tokens``, ``max_completion_tokens``, ``maxOutputTokens``) when
        ``count_output_allowance`` is set.
    :param enqueued_requests: requests of the running batches.
    :param concurrent_batches: running batches.
    :param count_output_allowance: OpenAI's docs speak of enqueued *prompt* tokens; users report
        that output allowances count too. True (default) counts them.
    """

    provider: str
    model: str | None = None
    account: str | None = None
    enqueued_tokens: int | None = None
    enqueued_requests: int | None = None
    concurrent_batches: int | None = None
    count_output_allowance: bool = True

    def __post_init__(self) -> None:
        if self.provider not in QUOTA_PROVIDERS:
            raise QuotaError(f"queue_quotas: provider {self.provider!r} is not one of {QUOTA_PROVIDERS}")
        limits = [getattr(self, name) for name in MEASURES]
        if all(limit is None for limit in limits):
            raise QuotaError(f"queue_quotas: set at least one of {MEASURES} for provider {self.provider!r}")
        for name, limit in zip(MEASURES, limits, strict=True):
            if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
                raise QuotaError(f"queue_quotas.{name} must be an integer >= 0 or null, got {limit!r}")

    def applies(self, provider: str, account: str, model: str | None) -> bool:
        if provider != self.provider or (self.account is not None and self.account != account):
            return False
        return self.model is None or (model is not None and fnmatch.fnmatchcase(model, self.model))


@dataclass(frozen=True)
class Load:
    """What one batch puts in the queue: its requests and their tokens (see `QueueQuota`)."""

    requests: int
    input_tokens: int
    output_allowance: int

    def tokens(self, count_output_allowance: bool) -> int:
        return self.input_tokens + (self.output_allowance if count_output_allowance else 0)


NO_LOAD = Load(0, 0, 0)


@dataclass(frozen=True)
class RunningBatch:
    """A batch of the account that has not ended, as the quota sees it."""

    account: str
    model: str | None
    load: Load


@dataclass(frozen=True)
class Refusal:
    """The limit a new batch would break: which measure, its limit, and what was already enqueued."""

    measure: str
    limit: int
    enqueued: int
    model: str | None


def first_refusal(
    quotas: Iterable[QueueQuota],
    provider: str,
    account: str,
    model: str | None,
    new: Load,
    running: Iterable[RunningBatch],
) -> Refusal | None:
    """The first limit that the new batch, added to the account's running batches, goes over."""
    running = list(running)
    for quota in quotas:
        if not quota.applies(provider, account, model):
            continue
        # Each account has its own queue: only this account's batches count, also when the
        # quota names no account (then every account gets a queue of this size).
        mine = [b for b in running if b.account == account and quota.applies(provider, b.account, b.model)]
        totals = {
            "enqueued_tokens": (
                sum(b.load.tokens(quota.count_output_allowance) for b in mine),
                new.tokens(quota.count_output_allowance),
            ),
            "enqueued_requests": (sum(b.load.requests for b in mine), new.requests),
            "concurrent_batches": (len(mine), 1),
        }
        for measure in MEASURES:
            limit = getattr(quota, measure)
            enqueued, added = totals[measure]
            if limit is not None and enqueued + added > limit:
                return Refusal(measure, limit, enqueued, model)
    return None


def quota_from_dict(data: Any) -> QueueQuota:
    """A `QueueQuota` from its JSON object; unknown fields are an error."""
    if isinstance(data, QueueQuota):
        return data
    if not isinstance(data, dict):
        raise QuotaError(f"queue_quotas entries are objects, got {data!r}")
    try:
        return QueueQuota(**data)
    except TypeError as error:
        raise QuotaError(f"queue_quotas entry {data!r}: {error}") from error


def account_label(account: str) -> str:
    """How the ledger names an account: a digest, so API keys never appear in it."""
    return "acct-" + hashlib.sha256(account.encode()).hexdigest()[:10]


def digest(content: bytes) -> str:
    """The ledger's fingerprint of a batch's input (file bytes, or the canonical JSON of inline requests)."""
    return "sha256:" + hashlib.sha256(content).hexdigest()
