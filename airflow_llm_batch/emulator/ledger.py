"""What the emulated providers would have billed: the evidence for "nothing paid twice".

Every created batch and every item billed as succeeded is written here by the provider modules.
Tests read it (``emulator.ledger()`` or ``GET /_emulator/ledger``) to assert that a task retry or a
triggerer restart re-attached instead of creating a second batch for the same chunk, and that no
``custom_id`` was paid for twice under one job key.

The job key travels in the provider's tags (OpenAI ``metadata``, Gemini ``display_name``, Vertex
``labels``). The ledger does not know the service's key names: any tag whose name ends in
``job_key`` is taken as the job key, and two batches count as duplicates when they carry a job key
and identical tags (so chunks of one job, which differ in a chunk tag, are not duplicates).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class BatchEntry:
    """One batch as created at a provider.

    :param created_at: Unix seconds, as the provider reports it.
    :param job_key: the value of the tag whose name ends in ``job_key``, or None.
    :param tags: the provider's tags as sent (OpenAI ``metadata``).
    :param input_digest: ``sha256:...`` of the batch's input (the input file's bytes, or the
        canonical JSON of inline requests / the input table's request column): two batches with
        the same digest carried the same chunk.
    :param account: a digest of the API key (or the Vertex project) that created the batch.
    :param enqueued_tokens: what the batch counted against queue quotas (see ``quotas.py``).
    :param refused: the quota code when the batch was accepted only to fail for quota (OpenAI
        ``token_limit_exceeded`` / ``request_limit_exceeded``): nothing of it is ever billed.
    """

    provider: str
    batch_id: str
    created_at: int
    model: str | None
    item_count: int
    job_key: str | None
    tags: dict[str, str] = field(default_factory=dict)
    input_digest: str | None = None
    account: str | None = None
    enqueued_tokens: int = 0
    refused: str | None = None


@dataclass(frozen=True)
class RefusedCreate:
    """A batch create answered 429 (a queue quota or ``create_429``): no batch exists, nothing billed."""

    provider: str
    time: int
    model: str | None
    reason: str
    account: str | None = None


@dataclass(frozen=True)
class BilledItem:
    """One item the provider charged for as succeeded."""

    provider: str
    batch_id: str
    custom_id: str
    job_key: str | None


def job_key_from_tags(tags: Mapping[str, Any] | None) -> str | None:
    """The job key among a batch's tags: the first tag (by name) whose name ends in ``job_key``."""
    for name in sorted(tags or {}):
        if name.lower().endswith("job_key"):
            return str(tags[name])  # type: ignore[index]
    return None


class Ledger:
    """Append-only record of batches and billed items. Callers hold the state's lock."""

    def __init__(self) -> None:
        self.batches: list[BatchEntry] = []
        self.billed: list[BilledItem] = []
        self.refused_creates: list[RefusedCreate] = []
        self._sent: dict[tuple[str, str], int] = {}

    def clear(self) -> None:
        self.batches.clear()
        self.billed.clear()
        self.refused_creates.clear()
        self._sent.clear()

    def record_refused_create(self, refusal: RefusedCreate) -> None:
        self.refused_creates.append(refusal)

    def record_batch(self, entry: BatchEntry, custom_ids: Iterable[str]) -> list[int]:
        """Record a created batch; returns, per item, how many earlier batches carried its id.

        The occurrence numbers let the scenario give a resubmitted item a fresh draw (retry rounds
        heal) while the first submission stays a pure function of seed and ``custom_id``.
        """
        self.batches.append(entry)
        occurrences = []
        for custom_id in custom_ids:
            key = (entry.provider, custom_id)
            seen = self._sent.get(key, 0)
            occurrences.append(seen)
            self._sent[key] = seen + 1
        return occurrences

    def record_billed(self, provider: str, batch_id: str, job_key: str | None, custom_ids: Iterable[str]) -> None:
        """Record the items a finished batch was charged for as succeeded."""
        self.billed.extend(BilledItem(provider, batch_id, custom_id, job_key) for custom_id in custom_ids)

    def duplicate_batches(self) -> list[list[str]]:
        """Groups of batch ids created with the same provider, job key and tags.

        A batch refused for a queue quota is left out: creating its chunk again later is the
        expected recovery, not a duplicate.
        """
        groups: dict[tuple[str, str, tuple[tuple[str, str], ...]], list[str]] = {}
        for entry in self.batches:
            if entry.job_key is None or entry.refused is not None:
                continue
            key = (entry.provider, entry.job_key, tuple(sorted(entry.tags.items())))
            groups.setdefault(key, []).append(entry.batch_id)
        return [ids for ids in groups.values() if len(ids) > 1]

    def double_billed(self) -> list[dict[str, Any]]:
        """Items billed as succeeded more than once under one job key (per provider).

        Items of batches without a job key are left out: without a key, two batches with the same
        ``custom_id`` may be unrelated jobs. Read ``billed`` directly to check those.
        """
        seen: dict[tuple[str, str, str], list[str]] = {}
        for item in self.billed:
            if item.job_key is None:
                continue
            seen.setdefault((item.provider, item.job_key, item.custom_id), []).append(item.batch_id)
        return [
            {"provider": provider, "job_key": job_key, "custom_id": custom_id, "batch_ids": batch_ids}
            for (provider, job_key, custom_id), batch_ids in seen.items()
            if len(batch_ids) > 1
        ]

    def billed_counts(self) -> dict[str, dict[str, int]]:
        """Per provider, how many times each ``custom_id`` was billed as succeeded (any job key)."""
        counts: dict[str, dict[str, int]] = {}
        for item in self.billed:
            per_provider = counts.setdefault(item.provider, {})
            per_provider[item.custom_id] = per_provider.get(item.custom_id, 0) + 1
        return counts

    def billed_twice(self) -> list[dict[str, Any]]:
        """Items billed more than once per provider, job key or not (Anthropic batches carry none).

        Gemini and Vertex requests without a key are billed as ``#<index>``; those are left out,
        since the index of one batch says nothing about another's.
        """
        seen: dict[tuple[str, str], list[str]] = {}
        for item in self.billed:
            if not item.custom_id.startswith("#"):
                seen.setdefault((item.provider, item.custom_id), []).append(item.batch_id)
        return [
            {"provider": provider, "custom_id": custom_id, "batch_ids": batch_ids}
            for (provider, custom_id), batch_ids in seen.items()
            if len(batch_ids) > 1
        ]

    def same_input_batches(self) -> list[dict[str, Any]]:
        """Batches created more than once for the same input (same provider and input digest).

        Each group lists every such batch in creation order with whether it was refused for quota
        and how many of its items were billed: a chunk resubmitted after a quota refusal is
        expected; one resubmitted after a batch of it had answers is a chunk paid for twice.
        """
        billed_per_batch: dict[str, int] = {}
        for item in self.billed:
            billed_per_batch[item.batch_id] = billed_per_batch.get(item.batch_id, 0) + 1
        groups: dict[tuple[str, str], list[BatchEntry]] = {}
        for entry in self.batches:
            if entry.input_digest is not None:
                groups.setdefault((entry.provider, entry.input_digest), []).append(entry)
        return [
            {
                "provider": provider,
                "input_digest": input_digest,
                "batches": [
                    {"batch_id": e.batch_id, "refused": e.refused, "billed": billed_per_batch.get(e.batch_id, 0)}
                    for e in entries
                ],
                # True when a later batch was created although an earlier one already had answers.
                "resubmitted_after_answers": any(billed_per_batch.get(e.batch_id, 0) for e in entries[:-1]),
            }
            for (provider, input_digest), entries in groups.items()
            if len(entries) > 1
        ]

    def to_dict(self) -> dict[str, Any]:
        """The JSON served at ``/_emulator/ledger``."""
        return {
            "batches": [asdict(entry) for entry in self.batches],
            "billed": [asdict(item) for item in self.billed],
            "refused_creates": [asdict(refusal) for refusal in self.refused_creates],
            "duplicate_batches": self.duplicate_batches(),
            "double_billed": self.double_billed(),
            "billed_twice": self.billed_twice(),
            "billed_counts": self.billed_counts(),
            "same_input_batches": self.same_input_batches(),
        }
