"""Vertex AI batchPredictionJobs reading and writing the emulated BigQuery (no HTTP here).

A job reads its input table (``bq://p.d.t``, a ``request`` column holding each
``GenerateContentRequest``) when it is created, and writes its output table when it ends: the
input's columns passed through, plus ``response`` (JSON, the ``GenerateContentResponse``) and
``status`` (STRING: empty on success, the error otherwise), as ``reference/provider-apis.md``
section 4.3 describes. The state machine, the item fates and the answers are the Gemini
module's (``gemini/models.py`` ``Batch``, ``gemini/lines.py``): one model behind both APIs.

What the reference leaves open, and what the emulator does: a failed item's ``status`` is
``"<Reason>: {"error": {"code", "message", "status"}}"``; an existing output table is refused;
a cancelled or expired job exports the rows done before it stopped ("if the job is terminated,
the completed rows are exported").
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from airflow_llm_batch.emulator.bigquery.engine import RESULTS_SCHEMA, BigQueryError, table_name
from airflow_llm_batch.emulator.bigquery.models import BigQueryService
from airflow_llm_batch.emulator.gemini import lines
from airflow_llm_batch.emulator.gemini.files import GeminiError, page, rfc3339
from airflow_llm_batch.emulator.gemini.inputs import Item
from airflow_llm_batch.emulator.gemini.models import Batch, Progress, check_limits
from airflow_llm_batch.emulator.gemini.quota import batch_load, quota_exceeded
from airflow_llm_batch.emulator.ledger import BatchEntry, RefusedCreate, job_key_from_tags
from airflow_llm_batch.emulator.quotas import Refusal, RunningBatch, account_label, digest, first_refusal
from airflow_llm_batch.emulator.state import EmulatorState

PROVIDER = "vertex"
RESERVED_COLUMNS = ("response", "status")
REASONS = {400: "Bad Request", 429: "Too Many Requests", 500: "Internal Server Error"}
_BQ_URI = re.compile(r"^bq://([^.]+)\.([^.]+)(?:\.([^.]+))?$")
_FILTER_TERM = re.compile(r'^\s*labels\.([A-Za-z0-9_-]+)\s*[=:]\s*"?([^"\s]*)"?\s*$')


@dataclass
class VertexJob:
    """A batch prediction job: the Gemini batch that runs it, and where it reads and writes."""

    batch: Batch
    project: str
    location: str
    labels: dict[str, str]
    input_config: dict[str, Any]
    output_config: dict[str, Any]
    output: tuple[str, str, str]  # project, dataset, table
    snapshot: str  # the input rows, numbered, kept in the engine's results schema

    @property
    def name(self) -> str:
        return f"projects/{self.project}/locations/{self.location}/batchPredictionJobs/{self.batch.id}"

    def to_api(self, progress: Progress, now: float) -> dict[str, Any]:
        batch = self.batch
        failed = batch.failed_before[progress.done]
        ended = progress.ended_at is not None
        job: dict[str, Any] = {
            "name": self.name,
            "displayName": batch.display_name or "",
            "model": f"publishers/google/models/{batch.model}",
            "state": f"JOB_STATE_{progress.state}",
            "inputConfig": self.input_config,
            "outputConfig": self.output_config,
            "labels": self.labels,
            "createTime": rfc3339(batch.created_at),
            "updateTime": rfc3339(progress.ended_at if progress.ended_at is not None else now),
            "completionStats": {  # int64 values travel as JSON strings
                "successfulCount": str(progress.done - failed),
                "failedCount": str(failed),
                "incompleteCount": str(len(batch.items) - progress.done),
            },
        }
        if progress.state != "PENDING":
            job["startTime"] = rfc3339(batch.created_at + 0.1 * batch.completion_seconds)
        if ended:
            job["endTime"] = rfc3339(progress.ended_at or now)
            project, dataset, table = self.output
            job["outputInfo"] = {"bigqueryOutputDataset": f"bq://{project}.{dataset}", "bigqueryOutputTable": table}
        if progress.state == "FAILED":
            job["error"] = {"code": 3, "message": batch.failure}
        return job


class VertexService:
    """Batch prediction jobs of the emulated Vertex project. Callers hold ``state.lock``."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state
        self.bigquery: BigQueryService = state.attach_service("bigquery", BigQueryService)
        self.jobs: dict[str, VertexJob] = {}

    def reset(self) -> None:
        self.jobs.clear()  # the tables go with the BigQuery service's own reset

    def settle(self) -> None:
        for job in self.jobs.values():
            self._refresh(job)

    # Long on purpose: one create call's checks in the order the real service applies them (which
    # refusal wins when several apply), then the accepted batch; split up, that order would be hidden.
    def create_job(self, project: str, location: str, body: Mapping[str, Any]) -> dict[str, Any]:
        model = str(body.get("model") or "").rsplit("/", 1)[-1]
        if not model:
            raise GeminiError(400, "model is required.")
        input_config, output_config = dict(body.get("inputConfig") or {}), dict(body.get("outputConfig") or {})
        source = _bq_uri((input_config.get("bigquerySource") or {}).get("inputUri"), "inputConfig.bigquerySource")
        destination = _bq_uri(
            (output_config.get("bigqueryDestination") or {}).get("outputUri"), "outputConfig.bigqueryDestination"
        )
        if destination[2] is None:
            destination = (destination[0], destination[1], f"predictions_{uuid.uuid4().hex[:12]}")
        output = (destination[0], destination[1], str(destination[2]))
        if self.bigquery.engine.columns(output[1], output[2]):
            raise GeminiError(400, f"The output table bq://{'.'.join(output)} already exists; name a new table.")
        job_id = str(uuid.uuid4().int % 10**18)
        snapshot = f"vertex_{job_id}_input"
        items = self._read_input(source[1], str(source[2]), snapshot)
        scenario = self.state.scenario
        check_limits(len(items), 0, scenario.max_requests_per_batch, None)
        load = batch_load("generate", [item.request for item in items if item.problem is None])
        refusal = first_refusal(scenario.quotas_for(PROVIDER), PROVIDER, project, model, load, self._running())
        if refusal is not None:
            self.state.ledger.record_refused_create(
                RefusedCreate(PROVIDER, int(self.state.now()), model, refusal.measure, account_label(project))
            )
            raise quota_exceeded(refusal, "aiplatform.googleapis.com", quota_message(refusal, project, location))
        labels = {str(k): str(v) for k, v in (body.get("labels") or {}).items()}
        fate_keys = [item.key or f"#{index}" for index, item in enumerate(items)]
        name = f"projects/{project}/locations/{location}/batchPredictionJobs/{job_id}"
        requests_column = json.dumps([item.request for item in items], sort_keys=True, separators=(",", ":"))
        entry = BatchEntry(
            PROVIDER,
            name,
            int(self.state.now()),
            model,
            len(items),
            job_key_from_tags(labels),
            labels,
            input_digest=digest(requests_column.encode()),
            account=account_label(project),
            enqueued_tokens=load.tokens(True),
        )
        occurrences = self.state.ledger.record_batch(entry, fate_keys)
        batch = Batch(
            id=job_id,
            kind="generate",
            model=model,
            display_name=body.get("displayName"),
            created_at=self.state.now(),
            completion_seconds=scenario.completion_seconds,
            outcome=scenario.batch_outcome,
            items=[
                _with_fate(item, scenario, key, seen)
                for item, key, seen in zip(items, fate_keys, occurrences, strict=True)
            ],
            input_file=None,
            failure="The batch failed validation (emulated: batch_outcome=failed)."
            if scenario.batch_outcome == "failed"
            else None,
            account=project,
            load=load,
        )
        job = VertexJob(batch, project, location, labels, input_config, output_config, output, snapshot)
        self.jobs[job_id] = job
        return job.to_api(self._refresh(job), self.state.now())

    def _read_input(self, dataset: str, table: str, snapshot: str) -> list[Item]:
        """Copy the input table (numbered rows) and read each row's key and request."""
        engine = self.bigquery.engine
        try:
            columns = {name: data_type for name, data_type, _ in engine.require_table(dataset, table)}
        except BigQueryError as error:
            raise GeminiError(
                404 if error.code == 404 else 400, f"Input table bq://{dataset}.{table}: {error}"
            ) from None
        if "request" not in columns or columns["request"] not in ("JSON", "VARCHAR"):
            raise GeminiError(
                400, f"The input table {dataset}.{table} needs a 'request' column of type JSON or STRING."
            )
        reserved = [name for name in RESERVED_COLUMNS if name in columns]
        if reserved:
            raise GeminiError(400, f"The input table {dataset}.{table} uses the reserved column name '{reserved[0]}'.")
        engine.db.execute(
            f"CREATE OR REPLACE TABLE {table_name(RESULTS_SCHEMA, snapshot)} AS "
            f"SELECT row_number() OVER () - 1 AS __row, * FROM {table_name(dataset, table)}"
        )
        key = 'CAST("key" AS VARCHAR)' if "key" in columns else "NULL"
        rows = engine.db.execute(
            f'SELECT {key}, CAST("request" AS VARCHAR) FROM {table_name(RESULTS_SCHEMA, snapshot)} ORDER BY __row'
        ).fetchall()
        if not rows:
            raise GeminiError(400, f"The input table {dataset}.{table} holds no rows.")
        items = []
        for number, (row_key, raw) in enumerate(rows):
            try:
                request = json.loads(raw) if raw is not None else None
            except ValueError:
                request = None
            if not isinstance(request, dict):
                problem = f"Row {number} of the input table holds no GenerateContentRequest in 'request'."
                items.append(Item(row_key, {}, None, problem=problem))
            else:
                items.append(Item(row_key, request, None))
        return items

    def get_job(self, job_id: str) -> dict[str, Any]:
        job = self._job(job_id)
        return job.to_api(self._refresh(job), self.state.now())

    def list_jobs(self, page_size: int, page_token: str | None, filter_text: str | None) -> dict[str, Any]:
        wanted = parse_filter(filter_text)
        now = self.state.now()
        newest_first = [
            job.to_api(self._refresh(job), now)
            for job in reversed(self.jobs.values())
            if all(job.labels.get(name) == value for name, value in wanted.items())
        ]
        return page(newest_first, "batchPredictionJobs", page_size, page_token)

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        job = self._job(job_id)
        if self._refresh(job).ended_at is not None:
            raise GeminiError(400, f"Job {job.name} has already ended.", "FAILED_PRECONDITION")
        now = self.state.now()
        job.batch.cancel_at, job.batch.cancel_done = now, job.batch.done_by(now)
        self._refresh(job)
        return {}

    def delete_job(self, job_id: str) -> dict[str, Any]:
        job = self.jobs.pop(self._job(job_id).batch.id)
        return {"name": f"{job.name}/operations/{uuid.uuid4().int % 10**18}", "done": True}

    def _running(self) -> list[RunningBatch]:
        now = self.state.now()
        return [
            RunningBatch(job.batch.account, job.batch.model, job.batch.load)
            for job in self.jobs.values()
            if job.batch.failure is None and job.batch.progress(now).ended_at is None
        ]

    def _job(self, job_id: str) -> VertexJob:
        job = self.jobs.get(job_id.rsplit("/", 1)[-1])
        if job is None:
            raise GeminiError(404, f"BatchPredictionJob {job_id} not found.")
        return job

    def _refresh(self, job: VertexJob) -> Progress:
        progress = job.batch.progress(self.state.now())
        if progress.ended_at is not None and not job.batch.finished:
            job.batch.finished = True
            if progress.state != "FAILED":
                self._write_output(job, progress)
        return progress

    def _write_output(self, job: VertexJob, progress: Progress) -> None:
        """Answer the items done, then write input columns + ``response`` + ``status`` to the output table."""
        engine, batch = self.bigquery.engine, job.batch
        answers, billed = [], []
        for index, item in enumerate(batch.items[: progress.done]):
            answer = _answer(batch, item)
            if answer.billed:
                billed.append(item.key or f"#{index}")
            answers.append({"__row": index, **output_cells(answer.entry)})
        answers_table = f"vertex_{batch.id}_answers"
        engine.db.execute(
            f"CREATE OR REPLACE TABLE {table_name(RESULTS_SCHEMA, answers_table)} "
            "(__row BIGINT, response JSON, status VARCHAR)"
        )
        spool = self.bigquery.spool_path()
        spool.write_text("".join(json.dumps(row) + "\n" for row in answers))
        try:
            engine.load(RESULTS_SCHEMA, answers_table, spool, "NEWLINE_DELIMITED_JSON", "WRITE_APPEND")
        finally:
            spool.unlink(missing_ok=True)
        _, dataset, table = job.output
        engine.db.execute(
            f"CREATE TABLE {table_name(dataset, table)} AS SELECT i.* EXCLUDE (__row), a.response, a.status "
            f"FROM {table_name(RESULTS_SCHEMA, job.snapshot)} i JOIN {table_name(RESULTS_SCHEMA, answers_table)} a "
            "ON i.__row = a.__row ORDER BY i.__row"
        )
        tags = job.labels
        self.state.ledger.record_billed(PROVIDER, job.name, job_key_from_tags(tags), billed)


def quota_message(refusal: Refusal, project: str, location: str) -> str:
    """The 429 message of a job create over a quota (Vertex AI quotas page; the wording is the emulator's)."""
    what = {"concurrent_batches": "concurrent batch prediction jobs"}.get(refusal.measure, refusal.measure)
    return (
        f"Quota exceeded for aiplatform.googleapis.com: {what} for base model {refusal.model} in project "
        f"{project}, location {location}. Limit: {refusal.limit}. Wait for running batch prediction jobs to "
        "finish, or request a quota increase."
    )


def output_cells(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A Gemini answer entry as the output table's ``response`` and ``status`` cells."""
    error = entry.get("error")
    if error:
        reason = REASONS.get(int(error.get("code") or 500), "Error")
        return {"response": None, "status": f"{reason}: {json.dumps({'error': error})}"}
    return {"response": entry.get("response"), "status": ""}


def parse_filter(filter_text: str | None) -> dict[str, str]:
    """``labels.a="x" AND labels.b=y``: the label terms of a Vertex list filter (the only kind emulated)."""
    wanted: dict[str, str] = {}
    for term in re.split(r"\s+AND\s+", filter_text or "", flags=re.IGNORECASE):
        if not term.strip():
            continue
        match = _FILTER_TERM.match(term)
        if match is None:
            raise GeminiError(400, f"Unsupported filter term {term!r} (the emulator filters on labels only).")
        wanted[match.group(1)] = match.group(2)
    return wanted


def _bq_uri(uri: Any, where: str) -> tuple[str, str, str | None]:
    match = _BQ_URI.match(str(uri or ""))
    if match is None:
        raise GeminiError(
            400,
            f"{where} must be a BigQuery URI bq://project.dataset[.table] (got {uri!r}); "
            "Cloud Storage sources are not emulated.",
        )
    return match.group(1), match.group(2), match.group(3)


def _answer(batch: Batch, item: Item) -> lines.Answer:
    if item.problem is not None:
        error = {"code": 400, "message": item.problem, "status": "INVALID_ARGUMENT"}
        return lines.Answer({"error": error}, billed=False, failed=True)
    return lines.generate_answer(item.request, item.key or "", batch.model, item.error_kind, item.invalid_output)


def _with_fate(item: Item, scenario: Any, key: str, seen: int) -> Item:
    if item.problem is not None:
        return item
    return Item(item.key, item.request, None, scenario.item_error(key, seen), scenario.has_invalid_output(key, seen))
