"""The submit use case: items in, batches created, a manifest out (``LLMBatchSubmitOperator`` runs it).

The operator resolves the hook, the job key and the work dir, and hands over plain values; this
module does the rest in order: the pre-flight check of the requests' shape (``preflight/``), the
requests (built in place when the backend can, else chunk files written in the worker, each item
checked), the schema file, the cost check, and the create calls (``job.py``). A dry run
(:func:`plan_first`) stops before the create calls and writes the plan instead (``plan.py``).
Nothing here imports Airflow or ``io/``: items arrive as an iterable the operator opened.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from airflow_llm_batch.batch import jsonl
from airflow_llm_batch.batch.backends.base import BatchBackend, InPlaceRequests, PreparedJob, RequestSpec
from airflow_llm_batch.batch.job import check_chunks, submit_prepared
from airflow_llm_batch.batch.manifest import Manifest
from airflow_llm_batch.batch.plan import DryRunPlan, build_plan, write_plan
from airflow_llm_batch.batch.preflight import Preflight, PreflightSettings
from airflow_llm_batch.batch.prepare import prepare_chunks
from airflow_llm_batch.batch.pricing import CostEstimate, PriceTable, estimate_cost
from airflow_llm_batch.batch.quota import ChunkLoad, QueueQuota, plan_waves
from airflow_llm_batch.batch.record_store import RecordStore
from airflow_llm_batch.batch.records import JobKey, Kind
from airflow_llm_batch.batch.retry import prepare_retry, retryable_ids
from airflow_llm_batch.batch.reuse import ReuseLookup, ReuseSettings, request_key
from airflow_llm_batch.batch.reuse_answers import open_lookup, record_reused, reuse_of_summary
from airflow_llm_batch.batch.reuse_table import ReuseTable
from airflow_llm_batch.batch.state import JobLayout
from airflow_llm_batch.batch.storage import StoragePath
from airflow_llm_batch.batch.templates import PromptTemplate
from airflow_llm_batch.exceptions import BudgetExceededError, ConfigurationError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FirstRound:
    """What the user asked for, resolved: the first attempt of a job.

    :param task: the task id, which every error message starts with.
    :param source: the items as given (a list, a URI, a source object): offered to the backend
        for building requests in place (:meth:`BatchBackend.prepare_in_place`).
    :param read_items: opens the items for the worker path (called at most once).
    :param requests_in_sql: ``True`` in place or fail, ``None`` when it fits, ``False`` never.
    :param preflight: the request check's settings (on, every rule, by default).
    :param quota: the queue quota the batches go out under, in waves (``quota.py``); none: at once.
    :param reuse: answer the items asked exactly so before from ``reuse_store`` (``docs/reuse.md``);
        ``None``: ask every item.
    """

    task: str
    spec: RequestSpec
    id_field: str
    template: str | None
    body_field: str | None
    source: Any
    read_items: Callable[[], Iterable[Mapping[str, Any]]]
    conn_id: str
    timeout_seconds: float
    on_input_change: str = "fail"
    requests_in_sql: bool | None = None
    max_cost: float | None = None
    prices: PriceTable | None = None
    preflight: PreflightSettings = field(default_factory=PreflightSettings)
    quota: QueueQuota | None = None
    reuse: ReuseSettings | None = None
    reuse_store: StoragePath | ReuseTable | None = None


def submit_first(round_: FirstRound, backend: BatchBackend, layout: JobLayout, job_key: JobKey) -> Manifest:
    """Prepare, check and create the first attempt's batches (re-attaching on a task retry)."""
    spec = round_.spec
    prepared, estimate, _, lookup = _prepare_first(round_, backend, layout, job_key)
    reuse = record_reused(lookup, layout, round_.reuse) if lookup is not None and round_.reuse else None
    manifest = submit_prepared(
        prepared,
        backend=backend,
        spec=spec,
        job_key=job_key,
        layout=layout,
        conn_id=round_.conn_id,
        attempt=1,
        timeout_seconds=round_.timeout_seconds,
        on_input_change=round_.on_input_change,
        quota=round_.quota,
    )
    if manifest.pending:
        log.info("%d chunk(s) wait for capacity under the queue quota (the sensor submits them)", len(manifest.pending))
    if estimate is not None:
        manifest.extra["cost_estimate"] = estimate.to_dict()
    if reuse is not None:
        manifest.extra["reuse"] = reuse
    return manifest


def plan_first(
    round_: FirstRound,
    backend: BatchBackend,
    layout: JobLayout,
    job_key: JobKey,
    waves: Callable[[PreparedJob], list[list[int]]] | None = None,
) -> DryRunPlan:
    """The dry run: everything :func:`submit_first` does before its first API call, then the plan
    (``plan.json`` in the attempt folder) instead of the create calls. No state file is written,
    so a real run of the same task later starts from scratch.

    :param waves: the chunk indexes per wave; default: planned under ``round_.quota`` as the waves
        would go if each waited for the one before (one wave without a quota).
    """
    prepared, estimate, check, _ = _prepare_first(round_, backend, layout, job_key, pin=False)
    check_chunks(backend, prepared)
    if waves is None and round_.quota is not None and not round_.quota.unlimited:
        waves = partial(_planned_waves, round_.spec, round_.quota)
    plan = build_plan(
        prepared,
        round_.spec,
        backend.provider,
        layout.requests_dir,
        estimate,
        check,
        waves(prepared) if waves is not None else None,
    )
    write_plan(plan, layout.root)
    return plan


def _planned_waves(spec: RequestSpec, quota: QueueQuota, prepared: PreparedJob) -> list[list[int]]:
    embedding = spec.kind is Kind.EMBEDDING
    loads = [ChunkLoad.estimate(c.index, c.count, c.bytes, spec.parameters, embedding) for c in prepared.chunks]
    return plan_waves(loads, quota)


def _prepare_first(
    round_: FirstRound, backend: BatchBackend, layout: JobLayout, job_key: JobKey, pin: bool = True
) -> tuple[PreparedJob, CostEstimate | None, Preflight, ReuseLookup | None]:
    """The checked request files of the first attempt, their cost estimate (no API call), and the
    reuse lookup that left out the items it answers (``None`` without ``reuse=``).

    :param pin: record the store's segments the lookup used, for a retry of the task (not in a dry run).
    """
    spec = round_.spec
    template = PromptTemplate(round_.template) if round_.template is not None else None
    log.info(
        "Preparing requests for %s (%s, model %s) in %s", job_key.as_string(), backend.provider, spec.model, layout.root
    )
    check = Preflight(backend, spec, round_.preflight)
    if template is not None and round_.body_field is None:
        check.check_template()  # the shape every item's body has, before any item is read
    lookup = _reuse_lookup(round_, backend, layout, pin)
    prepared = _in_place(round_, backend, layout, job_key) if lookup is None else None
    if prepared is None:
        prepared = prepare_chunks(
            round_.read_items(),
            id_field=round_.id_field,
            spec=spec,
            backend=backend,
            out_dir=layout.requests_dir,
            template=template,
            body_field=round_.body_field,
            preflight=check,
            reuse=lookup,
        )
    if spec.response_schema is not None:
        with layout.schema_file.open("wb") as stream:
            stream.write(jsonl.dumps(spec.response_schema.schema))
    if lookup is not None:
        log.info("%d item(s) answered from the reuse store (reuse=): not submitted", lookup.hits)
    log.info("%d items in %d chunk(s)", prepared.item_count, len(prepared.chunks))
    return prepared, check_cost(round_, prepared), check, lookup


def _reuse_lookup(round_: FirstRound, backend: BatchBackend, layout: JobLayout, pin: bool) -> ReuseLookup | None:
    """The lookup in the reuse store, when ``reuse=`` asks for one (requests then built in the worker)."""
    if round_.reuse is None or round_.reuse_store is None:
        return None
    if round_.requests_in_sql:
        raise ConfigurationError(
            f"{round_.task}: reuse= looks up every request line in the worker, so it cannot go with "
            "requests_in_sql=True; set requests_in_sql=None (or False)"
        )
    schema = round_.spec.response_schema
    key = request_key(backend.provider, round_.spec.kind.value, schema.schema if schema is not None else None)
    return open_lookup(layout, round_.reuse_store, round_.reuse, key, pin)


def _in_place(round_: FirstRound, backend: BatchBackend, layout: JobLayout, job_key: JobKey) -> PreparedJob | None:
    """The requests built where the items are, when the backend can and ``requests_in_sql`` allows."""
    if round_.requests_in_sql is False:
        return None
    job = InPlaceRequests(
        source=round_.source,
        id_field=round_.id_field,
        template=round_.template,
        body_field=round_.body_field,
        spec=round_.spec,
        force=round_.requests_in_sql,
        layout_root=layout.root,
        records=layout.records,
        job_key=job_key,
        on_input_change=round_.on_input_change,
    )
    reasons = backend.in_place_obstacles(job)
    if reasons and round_.requests_in_sql:
        raise ConfigurationError(f"{round_.task}: requests_in_sql=True, but {'; '.join(reasons)}")
    return None if reasons else backend.prepare_in_place(job)


def check_cost(round_: FirstRound, prepared: PreparedJob) -> CostEstimate | None:
    """Estimate the job's batch cost from its request files (no API call); refuse it above ``max_cost``."""
    spec, max_cost = round_.spec, round_.max_cost
    estimate = estimate_cost(
        spec.model,
        prepared.item_count,
        sum(chunk.bytes for chunk in prepared.chunks),
        spec.parameters,
        spec.kind is Kind.EMBEDDING,
        round_.prices,
    )
    if estimate is None:
        if max_cost is not None:
            raise ConfigurationError(
                f"{round_.task}: cannot check max_cost=${max_cost:g}: no price is known for model "
                f"{spec.model!r}; give it with prices= or [llm_batch] price_table. Nothing was submitted."
            )
        log.info("No price is known for model %s: no cost estimate", spec.model)
        return None
    log.info("Estimated cost: %s", estimate.describe())
    if max_cost is not None and estimate.batch_cost > max_cost:
        raise BudgetExceededError(
            f"{round_.task}: the estimated cost is above max_cost=${max_cost:g}, so nothing was "
            f"submitted. Estimate: {estimate.describe()}. Raise max_cost, set a lower max_tokens, or "
            "submit fewer items.",
            estimate=estimate.batch_cost,
            max_cost=max_cost,
        )
    return estimate


def submit_retry(
    summary: Mapping[str, Any],
    backend: BatchBackend,
    previous_root: StoragePath,
    failed_items: StoragePath,
    job_key: JobKey,
    *,
    timeout_seconds: float,
    on_input_change: str = "fail",
    records: RecordStore | None = None,
    quota: QueueQuota | None = None,
) -> Manifest:
    """Resubmit the items a Results summary reported as retryable, as the next attempt, with their
    original requests (selected in place when the previous attempt was built there).

    :param records: where this round's record lives (``None``: its state file in the work dir).
    """
    previous = JobLayout(previous_root)
    attempt = int(summary["attempt"]) + 1
    layout = JobLayout(previous.root.parent / f"attempt-{attempt}", records)
    spec = RequestSpec(model=summary["model"], kind=Kind(summary["kind"]))
    job = InPlaceRequests(
        source=None,
        id_field="key",
        template=None,
        body_field=None,
        spec=spec,
        force=None,
        layout_root=layout.root,
        records=layout.records,
        job_key=job_key,
        on_input_change=on_input_change,
    )
    prepared = backend.retry_in_place(previous.root, job, retryable_ids(failed_items))
    if prepared is None:
        prepared = prepare_retry(previous, failed_items, summary["model"], backend, layout.requests_dir)
    problems = backend.chunk_problems(prepared.chunks)
    if problems:
        # A round the provider would refuse as a whole sends nothing: its items keep the failed
        # rows of the attempt before (a Bedrock round of fewer than 100 records, for one).
        log.warning(
            "Attempt %d: not resubmitting the %d retryable item(s); they stay failed with their last error. %s",
            attempt,
            prepared.item_count,
            " ".join(problems),
        )
        prepared = PreparedJob((), 0, prepared.fingerprint)
    log.info("Attempt %d: resubmitting %d item(s) that failed with a retryable error", attempt, prepared.item_count)
    if summary.get("has_schema"):
        with previous.schema_file.open("rb") as source, layout.schema_file.open("wb") as target:
            target.write(source.read())
    manifest = submit_prepared(
        prepared,
        backend=backend,
        spec=spec,
        job_key=job_key,
        layout=layout,
        conn_id=summary["conn_id"],
        attempt=attempt,
        timeout_seconds=timeout_seconds,
        on_input_change=on_input_change,
        quota=quota,
    )
    manifest.has_schema = bool(summary.get("has_schema"))
    reuse = reuse_of_summary(summary)
    if reuse is not None:  # the retried items' answers are stored too
        manifest.extra["reuse"] = reuse
    return manifest
