"""The dry run's plan: what a Submit would send, and what it would cost, with no provider call.

``dry_run=True`` on the Submit operator (and on ``llm_batch_step``) renders, checks and writes the
request files as a real run does, then writes ``plan.json`` beside them and stops: no upload,
no batch, no state file, so a later real run of the same task starts from scratch. The plan
holds the chunks (one batch each), the estimated tokens and cost, the requests near the model's
context window, and, when the job runs under a queue quota, the waves the chunks would go in.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow_llm_batch.batch import jsonl
from airflow_llm_batch.batch.backends.base import RequestSpec
from airflow_llm_batch.batch.preflight import Preflight
from airflow_llm_batch.batch.pricing import BYTES_PER_TOKEN, CostEstimate, output_limit
from airflow_llm_batch.batch.records import Kind
from airflow_llm_batch.batch.storage import StoragePath

log = logging.getLogger(__name__)

PLAN_FILE = "plan.json"
PLAN_VERSION = 1


@dataclass
class DryRunPlan:
    """A job as it would be submitted. ``to_dict`` is what ``plan.json`` and the XCom hold.

    :param chunks: one entry per batch: index, items, bytes, model, the request file's URI.
    :param waves: chunk indexes per wave under a queue quota; one wave holding every chunk when
        no quota applies.
    """

    provider: str
    model: str
    kind: str
    items: int
    chunks: list[dict[str, Any]]
    input_tokens: int
    output_tokens: int
    cost: dict[str, Any] | None
    requests_dir: str
    near_context_window: dict[str, Any] = field(default_factory=dict)
    waves: list[list[int]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "plan_version": PLAN_VERSION,
            "dry_run": True,
            "provider": self.provider,
            "model": self.model,
            "kind": self.kind,
            "items": self.items,
            "batches": len(self.chunks),
            "chunks": self.chunks,
            "waves": self.waves,
            "estimated_input_tokens": self.input_tokens,
            "estimated_output_tokens": self.output_tokens,
            "cost_estimate": self.cost,
            "near_context_window": self.near_context_window,
            "requests_dir": self.requests_dir,
            "notes": self.notes,
        }

    def describe(self) -> str:
        """The plan as the task log shows it."""
        cost = f"${self.cost['batch']:.4f} at batch prices" if self.cost else "no price known for the model"
        lines = [
            f"DRY RUN: nothing was sent to {self.provider}. {self.items:,} item(s) in {len(self.chunks)} batch(es) "
            f"of model {self.model}; ~{self.input_tokens:,} input tokens (request bytes / {BYTES_PER_TOKEN}), up to "
            f"{self.output_tokens:,} output tokens; estimated cost {cost}.",
        ]
        for chunk in self.chunks[:20]:
            lines.append(f"  batch {chunk['index']}: {chunk['count']:,} requests, {chunk['bytes']:,} bytes")
        if len(self.chunks) > 20:
            lines.append(f"  ... and {len(self.chunks) - 20} more batch(es)")
        if len(self.waves) > 1:
            lines.append(f"  under the queue quota: {len(self.waves)} waves, {[len(w) for w in self.waves]} batches")
        if self.near_context_window:
            near = self.near_context_window
            lines.append(f"  {near['count']} request(s) near the context window, e.g. {near['examples']}")
        lines.append(f"  request files: {self.requests_dir}")
        return "\n".join(lines)


def build_plan(
    prepared: Any,
    spec: RequestSpec,
    provider: str,
    requests_dir: StoragePath,
    estimate: CostEstimate | None,
    check: Preflight | None = None,
    waves: Sequence[Sequence[int]] | None = None,
) -> DryRunPlan:
    """The plan of a prepared job (``PreparedJob``: its chunk files are already written)."""
    request_bytes = sum(chunk.bytes for chunk in prepared.chunks)
    per_item, _ = output_limit(spec.parameters, spec.kind is Kind.EMBEDDING)
    chunks = [
        {"index": c.index, "count": c.count, "bytes": c.bytes, "model": c.model, "uri": str(c.path)}
        for c in prepared.chunks
    ]
    near: dict[str, Any] = {}
    if check is not None and check.sizes.near_count:
        near = {
            "count": check.sizes.near_count,
            "largest_tokens": check.sizes.largest_tokens,
            "examples": [{"id": user_id, "tokens": tokens} for user_id, tokens in check.sizes.near],
        }
    return DryRunPlan(
        provider=provider,
        model=spec.model,
        kind=spec.kind.value,
        items=prepared.item_count,
        chunks=chunks,
        input_tokens=estimate.input_tokens if estimate else -(-request_bytes // BYTES_PER_TOKEN),
        output_tokens=estimate.output_tokens if estimate else per_item * prepared.item_count,
        cost=estimate.to_dict() if estimate else None,
        requests_dir=str(requests_dir),
        near_context_window=near,
        waves=[list(wave) for wave in waves] if waves else [[c.index for c in prepared.chunks]],
    )


def write_plan(plan: DryRunPlan, folder: StoragePath) -> StoragePath:
    """``plan.json`` in ``folder`` (the job's attempt folder); logs the plan; returns the file."""
    path = folder / PLAN_FILE
    with path.open("wb") as stream:
        stream.write(jsonl.dumps(plan.to_dict()))
    log.info("%s\n  plan: %s", plan.describe(), path)
    return path
