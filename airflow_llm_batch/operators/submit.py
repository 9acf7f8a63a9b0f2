"""LLMBatchSubmitOperator: items in, batches created, a small manifest out through XCom."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseOperator

from airflow_llm_batch.batch.records import Kind
from airflow_llm_batch.exceptions import ConfigurationError
from airflow_llm_batch.links import LLMBatchConsoleLink, LLMBatchListLink, push_console_url
from airflow_llm_batch.operators._common import LiteralItems


class LLMBatchSubmitOperator(BaseOperator):
    """Render one request per item, validate them all, and submit them as provider batches.

    Bad input (a missing or duplicate id, a field the template uses that an item lacks, a request
    above the provider's size limit) fails the task before any API call, naming the item and field,
    and so does a request body the provider would refuse (``docs/preflight.md``): checked against
    the installed SDK's request types, a dated table of model rules and the context window.
    A retry of the task re-attaches to the batches its earlier try created (see the state file in
    the work dir) instead of paying for them again.

    Retry mode (``retry_of=results.output``): resubmit only the items the Results task reported as
    failed with a retryable error, as the next attempt, with their original requests. With nothing
    to retry the task is skipped (and so are its sensor and results), and the DAG run succeeds.
    ``llm_batch_step`` builds the whole chain, with a final consolidated output.

    :param items: a list of mappings (literal, or ``other_task.output``), or the URI of a JSONL,
        Parquet or CSV file (``/data/tickets.jsonl``, ``s3://bucket/{{ ds }}/tickets.parquet``).
        Literal item text is never rendered by Jinja.
    :param id_field: the field holding each item's unique id; results carry it.
    :param prompt_template: the user message (or embedding input) with ``{field}`` placeholders
        filled from the item; ``{{`` and ``}}`` for literal braces. Jinja (``{{ ds }}``) runs first.
    :param model: the provider's model name.
    :param conn_id: the connection; its type picks the provider.
    :param kind: ``"chat"`` or ``"embedding"``.
    :param endpoint: OpenAI only: ``"chat"`` (chat completions) or ``"responses"`` (the Responses
        API); unset: chat completions, or Responses for the models served only there
        (``batch/backends/openai_endpoints.py``). The result rows are the same on both.
    :param system_prompt: the system message of every request.
    :param parameters: extra body parameters (``max_tokens``, ``temperature``, ``dimensions``...).
    :param response_schema: a JSON schema dict or pydantic model class; outputs are validated.
    :param body_field: instead of a template, take each item's provider-native body from this field.
    :param items_format: ``jsonl``, ``parquet`` or ``csv`` when the URI's suffix does not tell.
    :param provider: overrides the provider the connection type implies.
    :param work_dir: where request and result files go (any ObjectStoragePath URI).
    :param timeout: the deadline, counted from the first submit, after which the sensor stops waiting.
    :param provider_limits: lower the provider's per-batch limits (``{"max_requests": 1000}``).
    :param on_input_change: ``"fail"`` (default) or ``"resubmit"`` when a retry sees different input.
    :param retry_of: a Results task's summary (``results.output``): switches to retry mode; items,
        model and prompt come from the earlier attempt.
    :param provider_options: provider-specific switches, e.g. ``{"cache_system_prompt": True}``
        (Anthropic prompt caching of the system prompt).
    :param max_cost: the most the job may cost, in US dollars at batch prices. The cost is estimated
        from the request files before any API call (input: their bytes / 4; output: ``max_tokens``
        per item, or 1024 when unset) and a higher estimate fails the task with
        ``BudgetExceededError``, submitting nothing. ``None`` (default): only log the estimate.
    :param prices: batch prices per model overriding the shipped table and ``[llm_batch]
        price_table``: ``{"my-model": {"input": 0.2, "output": 0.8, "cached_input": 0.05}}`` (USD
        per 1M tokens).
    :param requests_in_sql: with a ``BigQuerySource`` and the ``vertex`` provider, BigQuery builds
        the request table itself (``CREATE TABLE ... AS SELECT``) and no source row passes through
        the worker. ``None`` (default): so whenever the template's columns are STRING or INT64 (their
        text is then the same as the worker path's), else the worker path; ``True``: always, other
        scalar columns as BigQuery's ``CAST(... AS STRING)`` writes them; ``False``: the worker path.
    :param preflight: the pre-flight check of the request bodies: ``True`` (default) every rule,
        ``False`` none, or ``{"skip": ["reasoning_temperature"], "models": {"my-model":
        {"context_window": 32000}}}`` (rules and model fields: ``docs/preflight.md``).
    :param dry_run: render, check and write every request and a ``plan.json`` (batches, waves,
        estimated tokens and cost), print the plan, and call no provider; the task then ends
        skipped, and so do its sensor and results. Templated: ``"{{ params.dry_run }}"`` works.
    :param queue_quota: what the job may have enqueued at the provider at a time, each measure
        overriding the connection's ``queue_quota`` extra: ``{"enqueued_tokens": 2_000_000,
        "enqueued_requests": 50_000, "concurrent_batches": 5}`` (tokens: the chunks' input tokens,
        estimated as request bytes / 4, plus ``max_tokens`` per request). Above it the job goes out
        in waves: this task creates the first, the sensor the next ones as batches end (see
        ``docs/reliability.md``, "Queue quotas"). ``None`` (default, and no extra): no limit, every
        batch at once.
    :param reuse: answer the items that ask exactly what they asked in an earlier run from that
        run's answers instead of submitting them (``docs/reuse.md``): ``True`` (any age), a
        ``timedelta`` or ``{"max_age": timedelta(days=30)}`` (older answers are asked again).
        Answers are kept in ``{work_dir}/_reuse/{dag_id}/{task_id}/``, or with ``{"table":
        "project.dataset.llm_batch_reuse"}`` in that BigQuery table, through the connection of
        the job's ``BigQuerySink`` (required then); reused rows carry ``reused_from``. ``None``
        (default): every item is submitted.
    """

    template_fields: Sequence[str] = (
        "items",
        "prompt_template",
        "system_prompt",
        "model",
        "conn_id",
        "parameters",
        "work_dir",
        "id_field",
        "retry_of",
        "dry_run_mode",
    )
    template_fields_renderers = {"parameters": "json", "prompt_template": "md", "system_prompt": "md"}
    operator_extra_links = (LLMBatchConsoleLink(), LLMBatchListLink())
    ui_color = "#e8f0fe"

    def __init__(
        self,
        *,
        items: Any = None,
        model: str | None = None,
        id_field: str = "id",
        prompt_template: str | None = None,
        conn_id: str = "llm_batch_default",
        kind: str = "chat",
        endpoint: str | None = None,
        system_prompt: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        response_schema: Any = None,
        body_field: str | None = None,
        items_format: str | None = None,
        provider: str | None = None,
        work_dir: str | None = None,
        timeout: timedelta | float = timedelta(hours=24),
        provider_limits: Mapping[str, Any] | None = None,
        on_input_change: str = "fail",
        provider_options: Mapping[str, Any] | None = None,
        retry_of: Any = None,
        max_cost: float | None = None,
        prices: Mapping[str, Any] | None = None,
        requests_in_sql: bool | None = None,
        preflight: bool | Mapping[str, Any] = True,
        dry_run: bool | str = False,
        queue_quota: Mapping[str, Any] | None = None,
        reuse: bool | timedelta | Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.items = LiteralItems(items) if isinstance(items, list) else items
        self.model = model
        self.id_field = id_field
        self.prompt_template = prompt_template
        self.conn_id = conn_id
        self.kind = _kind(kind)
        self.endpoint = endpoint
        self.system_prompt = system_prompt
        self.parameters = dict(parameters or {})
        self.response_schema = response_schema
        self.body_field = body_field
        self.items_format = items_format
        self.provider = provider
        self.work_dir = work_dir
        self.timeout_seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else float(timeout)
        self.provider_limits = dict(provider_limits or {})
        self.on_input_change = on_input_change
        self.provider_options = dict(provider_options or {})
        self.retry_of = retry_of
        self.max_cost = max_cost
        self.prices = dict(prices or {})
        self.requests_in_sql = requests_in_sql
        self.preflight = preflight
        # ``dry_run`` is a method of BaseOperator (it logs the rendered fields), hence the name.
        self.dry_run_mode = dry_run
        self.queue_quota = dict(queue_quota) if queue_quota is not None else None
        self.reuse = reuse
        self._check_arguments()

    def _check_arguments(self) -> None:
        if self.retry_of is None and (self.items is None or not self.model):
            raise ConfigurationError(f"{self.task_id}: give items and model (or retry_of for a retry round)")
        if self.retry_of is None and self.prompt_template is None and self.body_field is None:
            raise ConfigurationError(f"{self.task_id}: give prompt_template (or body_field for ready bodies)")
        cost = self.max_cost
        if cost is not None and (isinstance(cost, bool) or not isinstance(cost, int | float) or cost < 0):
            raise ConfigurationError(f"{self.task_id}: max_cost must be a number of US dollars >= 0")
        if self.on_input_change not in ("fail", "resubmit"):
            raise ConfigurationError(f"{self.task_id}: on_input_change must be 'fail' or 'resubmit'")
        if self.reuse is not None and not isinstance(self.reuse, bool | timedelta | Mapping):
            raise ConfigurationError(
                f"{self.task_id}: reuse must be True, a timedelta or {{'max_age': timedelta}} (docs/reuse.md)"
            )
        if not isinstance(self.preflight, bool | Mapping):  # its content is checked at execute
            raise ConfigurationError(f"{self.task_id}: preflight must be True, False or a mapping (docs/preflight.md)")
        if self.endpoint is not None:
            from airflow_llm_batch.batch.backends.openai_endpoints import choose_endpoint

            choose_endpoint(self.kind, str(self.model), self.endpoint)  # a name it does not know: refused at parse
        if self.kind is Kind.EMBEDDING:
            self._check_embeddings()
        if self.kind is Kind.EMBEDDING and self.response_schema is not None:
            raise ConfigurationError(f"{self.task_id}: response_schema applies to chat requests, not embeddings")
        schema = self.response_schema
        if schema is not None and not isinstance(schema, dict) and not hasattr(schema, "model_json_schema"):
            # Full JSON-schema validation waits for execute (still before any API call): importing
            # jsonschema here would slow down every parse of the DAG file.
            raise ConfigurationError(f"{self.task_id}: response_schema must be a JSON schema dict or pydantic model")

    def _check_embeddings(self) -> None:
        """Refuse, when the DAG is parsed, an embedding job on a provider without embedding batches."""
        from airflow_llm_batch.batch.backends import embeddings_refusal

        refusal = embeddings_refusal(self.provider, str(self.model))
        if refusal is not None:
            raise ConfigurationError(f"{self.task_id}: {refusal}")

    def execute(self, context: Any) -> dict[str, Any]:
        if self.retry_of is not None:
            return self._execute_retry(context)
        from airflow_llm_batch.batch.backends.base import RequestSpec
        from airflow_llm_batch.batch.credentials import credentials_of
        from airflow_llm_batch.batch.preflight import PreflightSettings
        from airflow_llm_batch.batch.reuse import ReuseSettings
        from airflow_llm_batch.batch.reuse_answers import store_of
        from airflow_llm_batch.batch.schema import ResponseSchema
        from airflow_llm_batch.batch.state import JobLayout
        from airflow_llm_batch.batch.submit import FirstRound, plan_first, submit_first
        from airflow_llm_batch.config import price_table
        from airflow_llm_batch.hooks.llm_batch import LLMBatchHook
        from airflow_llm_batch.operators._common import job_key_of, resolve_work_dir, skip
        from airflow_llm_batch.state_store import task_state_records

        hook = LLMBatchHook(self.conn_id, self.provider, self.provider_limits)
        backend = self._backend(hook)
        job_key = job_key_of(context)
        spec = RequestSpec(
            model=str(self.model),
            kind=self.kind,
            system_prompt=self.system_prompt or None,
            parameters=self.parameters,
            response_schema=ResponseSchema.coerce(self.response_schema),
            options={**self.provider_options, "endpoint": self.endpoint} if self.endpoint else self.provider_options,
        )
        first = FirstRound(
            task=self.task_id,
            spec=spec,
            id_field=self.id_field,
            template=self.prompt_template,
            body_field=self.body_field,
            source=self._items(),
            read_items=self._iter_items,
            conn_id=self.conn_id,
            timeout_seconds=self.timeout_seconds,
            on_input_change=self.on_input_change,
            requests_in_sql=self.requests_in_sql,
            max_cost=self.max_cost,
            prices=price_table(self.prices),
            preflight=PreflightSettings.coerce(self.preflight),
            quota=self._quota(backend),
        )
        work_dir = resolve_work_dir(self.work_dir, hook, getattr(self, "executor", None))
        layout = JobLayout.for_job(work_dir, job_key, attempt=1, records=task_state_records(context))
        reuse = ReuseSettings.coerce(self.reuse, self.task_id)
        if reuse is not None:
            store = store_of(work_dir, job_key) if reuse.table is None else self._reuse_table(reuse.table, job_key)
            first = replace(first, reuse=reuse, reuse_store=store)
        if _flag(self.dry_run_mode, "dry_run"):
            plan = plan_first(first, backend, layout, job_key)
            backend.close()
            skip(
                f"dry run: {plan.items:,} item(s) checked and planned, nothing submitted; plan: {layout.root}/plan.json"
            )
        with credentials_of(self.conn_id, backend.provider):
            manifest = submit_first(first, backend, layout, job_key)
        push_console_url(context, backend.provider, manifest.batch_ids)
        backend.close()
        reused = (manifest.extra.get("reuse") or {}).get("items", 0)
        if manifest.batches or manifest.pending or not reused:
            self.log.info("Submitted %d item(s) as batch(es) %s", manifest.item_count, ", ".join(manifest.batch_ids))
        if reused:
            self.log.info("%d item(s) answered from earlier runs (reuse=), not submitted", reused)
        return manifest.to_dict()

    def _execute_retry(self, context: Any) -> dict[str, Any]:
        from airflow_llm_batch.batch.submit import submit_retry
        from airflow_llm_batch.hooks.llm_batch import LLMBatchHook
        from airflow_llm_batch.operators._common import job_key_of, skip, storage_path
        from airflow_llm_batch.state_store import task_state_records

        summary = self.retry_of
        if not summary or not summary.get("retryable"):
            skip("no item failed with a retryable error: nothing to retry")
        backend = self._backend(LLMBatchHook(summary["conn_id"], summary["provider"], self.provider_limits))
        manifest = submit_retry(
            summary,
            backend,
            storage_path(summary["work_uri"]),
            storage_path(summary["failed_items_uri"]),
            job_key_of(context),
            timeout_seconds=self.timeout_seconds,
            on_input_change=self.on_input_change,
            records=task_state_records(context),
            quota=self._quota(backend),
        )
        push_console_url(context, backend.provider, manifest.batch_ids)
        backend.close()
        return manifest.to_dict()

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage: the items file or BigQuery table this task read (called by the OpenLineage provider)."""
        from airflow_llm_batch.lineage import items_dataset_id, operator_lineage

        dataset = items_dataset_id(self._items())
        return operator_lineage(inputs=[dataset] if dataset else [])

    def _reuse_table(self, table: str, job_key: Any) -> Any:
        """``reuse={"table": ...}``: the table, through the BigQuery sink of a task downstream."""
        from airflow_llm_batch.io.bigquery_reuse import reuse_table_for

        return reuse_table_for(self.task_id, table, self.get_flat_relatives(upstream=False), job_key)

    def _quota(self, backend: Any) -> Any:
        """The queue quota: the connection's ``queue_quota`` extra, overridden by the argument."""
        from airflow_llm_batch.batch.quota import QueueQuota

        return QueueQuota.from_settings(backend.config.extra, self.queue_quota)

    def _backend(self, hook: Any) -> Any:
        """The backend this task submits through (a seam for fault-injection tests)."""
        return hook.get_conn()

    def _items(self) -> Any:
        return self.items.items if isinstance(self.items, LiteralItems) else self.items

    def _iter_items(self) -> Iterable[Any]:
        from airflow_llm_batch.io.sources import iter_file_items, iter_list_items
        from airflow_llm_batch.operators._common import storage_path

        items = self._items()
        if hasattr(items, "iter_items"):  # a source object (e.g. a BigQuery query), streamed
            return iter(items.iter_items())
        if isinstance(items, str):
            return iter_file_items(storage_path(items), self.items_format)
        if items is None:
            raise ConfigurationError(f"{self.task_id}: items resolved to None; pass a list or a file URI")
        return iter_list_items(items)


def _flag(value: Any, name: str) -> bool:
    """A boolean argument that Jinja may have rendered to text (``"{{ params.dry_run }}"``)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no", "", "none"):
        return False
    raise ConfigurationError(f"{name} must be true or false, not {value!r}")


def _kind(kind: str | Kind) -> Kind:
    try:
        return Kind(kind)
    except ValueError:
        raise ConfigurationError(f"kind must be 'chat' or 'embedding', not {kind!r}") from None
