"""Queue quotas as data, and the planner that submits a job in waves under them.

Every provider meters what an account has *enqueued*: batches created and not yet ended. A job
whose chunks together pass that quota is refused, each provider in its own way
(``../shared/reference/real-service-edges.md``): OpenAI accepts the batch and then fails it with
``token_limit_exceeded`` (openai/openai-python#2084) or its request-limit twin; Anthropic and
Gemini answer 429 on create (Anthropic rate-limit docs; googleapis/python-genai#1901); Vertex
limits concurrent jobs per project (4 for Claude, Vertex "Claude batch predictions" docs).

So a job with a quota goes out in waves: the planner admits chunks, in order, while the estimated
enqueued total stays under the quota, and the rest wait as *pending* in the job state until
capacity frees. A refusal the quota did not foresee (another job of the same account, a quota
lower than configured) lowers the limits this job plans with: the *learned* quota.

No quota (the default) admits every chunk at once, which is what the package always did.
Pure functions and plain records; nothing here talks to a provider.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from airflow_llm_batch.batch.pricing import BYTES_PER_TOKEN, output_limit
from airflow_llm_batch.exceptions import ConfigurationError

MEASURES = ("enqueued_tokens", "enqueued_requests", "concurrent_batches")
# The connection extra that holds a quota: {"queue_quota": {"concurrent_batches": 5}}.
QUOTA_EXTRA = "queue_quota"


@dataclass(frozen=True)
class QueueQuota:
    """What one job may have enqueued at its provider at a time; ``None`` means no limit.

    :param enqueued_tokens: input tokens plus output allowances (``max_tokens``) of the job's
        running batches, for its model (the providers meter tokens per model).
    :param enqueued_requests: requests of the job's running batches.
    :param concurrent_batches: the job's running batches.
    """

    enqueued_tokens: int | None = None
    enqueued_requests: int | None = None
    concurrent_batches: int | None = None

    @classmethod
    def from_settings(cls, connection_extra: Mapping[str, Any] | None, task_quota: Any = None) -> QueueQuota:
        """The connection's ``queue_quota`` extra, each measure overridden by the task's argument."""
        merged: dict[str, Any] = {}
        for source, where in (
            ((connection_extra or {}).get(QUOTA_EXTRA), "connection extra"),
            (task_quota, "queue_quota"),
        ):
            if source is None:
                continue
            if isinstance(source, QueueQuota):
                source = source.to_dict()
            if not isinstance(source, Mapping):
                raise ConfigurationError(
                    f"{where} {QUOTA_EXTRA!r} must be an object such as {{'concurrent_batches': 5}}, got {source!r}"
                )
            merged.update(source)
        return cls.from_dict(merged)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> QueueQuota:
        data = dict(data or {})
        unknown = sorted(set(data) - set(MEASURES))
        if unknown:
            raise ConfigurationError(f"queue_quota: unknown measure(s) {unknown}; the measures are {list(MEASURES)}")
        for name, value in data.items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigurationError(f"queue_quota: {name} must be a whole number >= 1 or None, got {value!r}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def unlimited(self) -> bool:
        return all(value is None for value in asdict(self).values())

    def tightened(self, other: QueueQuota) -> QueueQuota:
        """Each measure at the lower of the two limits (``None`` is no limit)."""
        lowest = {name: _lowest(getattr(self, name), getattr(other, name)) for name in MEASURES}
        return QueueQuota(**lowest)

    def describe(self) -> str:
        parts = [f"{name.replace('_', ' ')} {value:,}" for name, value in asdict(self).items() if value is not None]
        return ", ".join(parts) or "no limit"


@dataclass(frozen=True)
class ChunkLoad:
    """What one chunk puts in the provider's queue: its requests and estimated tokens."""

    chunk: int
    requests: int
    tokens: int

    @classmethod
    def estimate(
        cls, chunk: int, requests: int, request_bytes: int, parameters: Mapping[str, Any], embedding: bool
    ) -> ChunkLoad:
        """Tokens as the cost estimate counts them: request bytes / 4, plus each request's output
        allowance (the providers count ``max_tokens`` against the enqueued-token quota: reported,
        openai-python#2084 threads)."""
        per_item = 0 if embedding else output_limit(parameters, embedding)[0]
        return cls(chunk, requests, math.ceil(request_bytes / BYTES_PER_TOKEN) + per_item * requests)


def plan_wave(pending: Sequence[ChunkLoad], running: Sequence[ChunkLoad], quota: QueueQuota) -> list[ChunkLoad]:
    """The pending chunks to submit now, in chunk order, while the enqueued total stays under the quota.

    Chunks go strictly in order (a large chunk is not overtaken by smaller ones, so none waits
    forever). A chunk larger than the whole quota goes alone once nothing of the job runs: only the
    provider can say whether it fits.
    """
    if quota.unlimited:
        return list(pending)
    batches = len(running)
    requests = sum(load.requests for load in running)
    tokens = sum(load.tokens for load in running)
    admitted: list[ChunkLoad] = []
    for load in pending:
        alone = batches == 0
        if not alone and _over(quota.concurrent_batches, batches + 1):
            break
        if not alone and (
            _over(quota.enqueued_requests, requests + load.requests)
            or _over(quota.enqueued_tokens, tokens + load.tokens)
        ):
            break
        admitted.append(load)
        batches, requests, tokens = batches + 1, requests + load.requests, tokens + load.tokens
    return admitted


def plan_waves(loads: Sequence[ChunkLoad], quota: QueueQuota) -> list[list[int]]:
    """The chunk indexes of each wave, if each waited for the one before to end: the dry run's plan.

    A real job starts a chunk as soon as capacity frees, so this is the most waves it takes
    under ``quota`` unless the provider refuses below it.
    """
    waves: list[list[int]] = []
    pending = list(loads)
    while pending:
        wave = plan_wave(pending, [], quota)  # with nothing running, at least one chunk goes
        waves.append([load.chunk for load in wave])
        pending = pending[len(wave) :]
    return waves


def learn_from_refusal(quota: QueueQuota, running: Sequence[ChunkLoad], reason: str | None) -> QueueQuota:
    """The quota to plan with after a batch was refused while ``running`` (this job's batches) ran.

    What the job had running when it was refused is at least what it may have running: the wave
    size drops to that (never below one batch). Where the refusal states its limit, as OpenAI's
    does ("Limit: 2,000,000 enqueued tokens"), that limit is taken as well.
    """
    learned = QueueQuota(concurrent_batches=max(1, len(running)))
    stated = _stated_limit(reason or "")
    if stated is not None:
        learned = replace(learned, **{stated[0]: stated[1]})
    return quota.tightened(learned)


def _stated_limit(reason: str) -> tuple[str, int] | None:
    match = re.search(r"Limit:\s*([\d,]+)\s+enqueued\s+(tokens|requests)", reason, re.IGNORECASE)
    if match is None:
        return None
    return f"enqueued_{match.group(2).lower()}", max(1, int(match.group(1).replace(",", "")))


def _over(limit: int | None, value: int) -> bool:
    return limit is not None and value > limit


def _lowest(first: int | None, second: int | None) -> int | None:
    if first is None:
        return second
    if second is None:
        return first
    return min(first, second)
