"""Amazon Bedrock model invocation jobs over the emulated S3 (no HTTP here).

The rules, from the Bedrock user guide (docs.aws.amazon.com/bedrock/latest/userguide/
batch-inference-data.html, batch-inference-results.html, batch-inference-monitor.html) and the
quotas page (docs.aws.amazon.com/general/latest/gr/bedrock.html), as read 2026-12:

- the job reads the ``.jsonl`` records at its input URI (a file or a prefix), each
  ``{"recordId", "modelInput"}``; at least ``bedrock_min_records`` (default 100, "Minimum number
  of records per batch inference job") and at most 50,000 records, else the job fails validation;
- a job moves Submitted -> Validating -> Scheduled -> InProgress -> Completed (PartiallyCompleted
  when some records failed); Failed when validation fails; Stopping -> Stopped after
  StopModelInvocationJob; Expired when its time ran out (scenario ``expired``: half the records
  ran). The times are the scenario's ``completion_seconds``, compressed like every provider's;
- on ending it writes ``<output uri>/<job id>/<input file name>.out`` (one record per processed
  input: ``recordId``, ``modelInput`` and ``modelOutput``, or ``error`` ``{errorCode,
  errorMessage}`` in its place) and ``manifest.json.out`` with the counts. A stopped or expired job
  writes the records it processed (the emulator's choice; the guide is silent);
- over the concurrent-jobs quota (scenario ``queue_quotas`` for ``bedrock``; the default of 10 per
  model is lifted here) a create answers ``ServiceQuotaExceededException``;
- a repeated ``clientRequestToken`` returns the first job (the API's idempotency token).
"""

from __future__ import annotations

import json
import posixpath
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from airflow_llm_batch.emulator.bedrock import records
from airflow_llm_batch.emulator.bedrock.s3 import ObjectStore, S3Error
from airflow_llm_batch.emulator.ledger import BatchEntry, RefusedCreate, job_key_from_tags
from airflow_llm_batch.emulator.quotas import Load, RunningBatch, account_label, digest, first_refusal
from airflow_llm_batch.emulator.state import EmulatorState

PROVIDER = "bedrock"
ACCOUNT_ID = "123456789012"
MAX_RECORDS = 50_000
# Shares of completion_seconds spent in the phases before InProgress.
PHASES = (("Submitted", 0.03), ("Validating", 0.07), ("Scheduled", 0.1))
# The API's own constraints (botocore's bedrock service-2.json: ModelInvocationJobName, S3Uri).
JOB_NAME = re.compile(r"[a-zA-Z0-9]{1,63}(-*[a-zA-Z0-9\+\-\.]){0,63}")
S3_URI = re.compile(r"s3://[a-z0-9][-.a-z0-9]{1,61}[a-z0-9](?:/[-!_*'().a-z0-9A-Z]+(?:/[-!_*'().a-z0-9A-Z]+)*)?/?")


class BedrockError(Exception):
    """An error answer: HTTP status, the AWS error code (``x-amzn-ErrorType``) and the message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class Job:
    id: str
    name: str
    model: str
    role: str
    token: str | None
    input_uri: str
    output_uri: str
    tags: list[dict[str, str]]
    created_at: float
    completion_seconds: float
    outcome: str
    inputs: dict[str, list[records.Record]]  # input file name -> its records
    account: str
    failure: str | None = None
    stop_at: float | None = None
    finished: bool = False
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def arn(self) -> str:
        return f"arn:aws:bedrock:us-east-1:{ACCOUNT_ID}:model-invocation-job/{self.id}"

    @property
    def total(self) -> int:
        return sum(len(found) for found in self.inputs.values())

    def done_by(self, moment: float) -> int:
        total = self.total // 2 if self.outcome in ("expired", "cancelled") else self.total
        if self.completion_seconds <= 0:
            return total
        fraction = (moment - self.created_at - 0.1 * self.completion_seconds) / (0.9 * self.completion_seconds)
        return min(total, max(0, int(self.total * fraction)))

    def status(self, now: float) -> tuple[str, int]:
        """The status word and how many records are processed at ``now``."""
        elapsed = now - self.created_at
        if self.stop_at is not None:
            return ("Stopped" if now >= self.stop_at + 0.2 else "Stopping"), self.done_by(self.stop_at)
        for state, share in PHASES:
            if elapsed < share * self.completion_seconds and not (self.failure and state == "Scheduled"):
                return state, 0
        if self.failure is not None:
            return "Failed", 0
        if self.outcome == "cancelled" and elapsed >= self.completion_seconds / 2:
            return "Stopped", self.done_by(self.created_at + self.completion_seconds / 2)
        if elapsed < self.completion_seconds:
            return "InProgress", self.done_by(now)
        if self.outcome == "expired":
            return "Expired", self.done_by(now)
        family = records.family_of(self.model)
        failed = any(record.fails(family) for record in self.all_records())
        return ("PartiallyCompleted" if failed else "Completed"), self.total

    def all_records(self) -> list[records.Record]:
        return [record for found in self.inputs.values() for record in found]

    def to_api(self, now: float) -> dict[str, Any]:
        state, done = self.status(now)
        answer: dict[str, Any] = {
            "jobArn": self.arn,
            "jobName": self.name,
            "modelId": self.model,
            "roleArn": self.role,
            "status": state,
            "submitTime": _iso(self.created_at),
            "lastModifiedTime": _iso(now),
            "inputDataConfig": {"s3InputDataConfig": {"s3Uri": self.input_uri, "s3InputFormat": "JSONL"}},
            "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": self.output_uri}},
            "timeoutDurationInHours": 24,
            "jobExpirationTime": _iso(self.created_at + self.completion_seconds),
            "modelInvocationType": "InvokeModel",
            "totalRecordCount": self.total,
            "processedRecordCount": done,
            "successRecordCount": self.counts.get("success", 0),
            "errorRecordCount": self.counts.get("error", 0),
        }
        if self.token:
            answer["clientRequestToken"] = self.token
        if state == "Failed":
            answer["message"] = self.failure
        if state in ("Completed", "PartiallyCompleted", "Failed", "Stopped", "Expired"):
            answer["endTime"] = _iso(now)
        return answer


class BedrockService:
    """Jobs and the S3 store of the emulated AWS account. Callers hold ``state.lock``."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state
        self.s3 = ObjectStore()
        self.jobs: dict[str, Job] = {}

    def reset(self) -> None:
        self.s3.reset()
        self.jobs.clear()

    def settle(self) -> None:
        for job in self.jobs.values():
            self._refresh(job)

    # Long on purpose: one create call's checks in the order the real service applies them.
    def create_job(self, body: dict[str, Any], access_key: str) -> dict[str, Any]:
        for name in ("jobName", "roleArn", "modelId", "inputDataConfig", "outputDataConfig"):
            if not body.get(name):
                raise BedrockError(400, "ValidationException", f"1 validation error detected: '{name}' is required.")
        name = str(body["jobName"])
        if len(name) > 63 or not JOB_NAME.fullmatch(name):
            raise BedrockError(400, "ValidationException", f"Value '{name}' at 'jobName' failed to satisfy constraint.")
        token = body.get("clientRequestToken")
        for job in self.jobs.values():
            if token and job.token == token:
                return {"jobArn": job.arn}
        model = str(body["modelId"])
        family = records.family_of(model)
        if family is None:
            raise BedrockError(400, "ValidationException", f"The provided model identifier is invalid: {model}.")
        input_uri = str((body["inputDataConfig"].get("s3InputDataConfig") or {}).get("s3Uri") or "")
        output_uri = str((body["outputDataConfig"].get("s3OutputDataConfig") or {}).get("s3Uri") or "")
        for where, uri in (("inputDataConfig", input_uri), ("outputDataConfig", output_uri)):
            if not S3_URI.fullmatch(uri):
                raise BedrockError(400, "ValidationException", f"Value '{uri}' at '{where}.s3Uri' is not an S3 URI.")
        inputs, failure = self._read_inputs(input_uri, family)
        count = sum(len(found) for found in inputs.values())
        scenario = self.state.scenario
        maximum = scenario.max_requests_per_batch or MAX_RECORDS
        if failure is None and count < scenario.bedrock_min_records:
            failure = (
                f"The number of records in the input is {count}, below the minimum of "
                f"{scenario.bedrock_min_records} records per batch inference job. (emulated)"
            )
        elif failure is None and count > maximum:
            failure = f"The number of records in the input is {count}, above the maximum of {maximum}. (emulated)"
        elif failure is None and scenario.batch_outcome == "failed":
            failure = "The job failed validation. (emulated: batch_outcome=failed)"
        account = account_label(access_key)
        refusal = first_refusal(
            scenario.quotas_for(PROVIDER), PROVIDER, account, model, Load(count, 0, 0), self._running()
        )
        if refusal is not None:
            self.state.ledger.record_refused_create(
                RefusedCreate(PROVIDER, int(self.state.now()), model, refusal.measure, account)
            )
            raise BedrockError(
                400,
                "ServiceQuotaExceededException",
                f"The number of submitted and in-progress batch inference jobs for model {model} has reached the "
                f"quota ({refusal.limit}). Wait for jobs to end, or request a quota increase. (emulated)",
            )
        job_tags = [dict(tag) for tag in body.get("tags") or []]
        tag_map = {str(tag.get("key")): str(tag.get("value")) for tag in job_tags}
        job = Job(
            id=secrets.token_hex(6),
            name=str(body["jobName"]),
            model=model,
            role=str(body["roleArn"]),
            token=str(token) if token else None,
            input_uri=input_uri,
            output_uri=output_uri,
            tags=job_tags,
            created_at=self.state.now(),
            completion_seconds=scenario.completion_seconds,
            outcome=scenario.batch_outcome,
            inputs=inputs,
            account=account,
            failure=failure,
        )
        ids = [record.record_id for record in job.all_records()]
        entry_input = json.dumps({name: [r.raw for r in found] for name, found in inputs.items()}, sort_keys=True)
        entry = BatchEntry(
            PROVIDER, job.arn, int(job.created_at), model, count, job_key_from_tags(tag_map), tag_map,
            input_digest=digest(entry_input.encode()), account=account,
        )  # fmt: skip
        seen = self.state.ledger.record_batch(entry, ids)
        for record, occurrence in zip(job.all_records(), seen, strict=True):
            record.draw_fate(scenario, family, occurrence)
        self.jobs[job.id] = job
        return {"jobArn": job.arn}

    def _read_inputs(self, uri: str, family: str) -> tuple[dict[str, list[records.Record]], str | None]:
        """The records of every ``.jsonl`` object at the input URI, or why validation fails."""
        if not uri.startswith("s3://"):
            return {}, f"The input S3 URI {uri!r} is not valid."
        bucket, _, key = uri[len("s3://") :].partition("/")
        try:
            keys = [key] if key.endswith(".jsonl") else [k for k in self.s3.keys(bucket, key) if k.endswith(".jsonl")]
            found = {posixpath.basename(k): records.parse_input(self.s3.get(bucket, k), family) for k in keys}
        except S3Error as error:
            return {}, f"Unable to read the input from {uri}: {error.code}. (emulated)"
        if not found:
            return {}, f"No .jsonl input file was found at {uri}. (emulated)"
        return found, None

    def get_job(self, job_id: str) -> dict[str, Any]:
        job = self._job(job_id)
        self._refresh(job)
        return job.to_api(self.state.now())

    def list_jobs(self, name_contains: str | None, status: str | None, descending: bool) -> list[dict[str, Any]]:
        now = self.state.now()
        for job in self.jobs.values():
            self._refresh(job)
        jobs = sorted(self.jobs.values(), key=lambda job: job.created_at, reverse=descending)
        found = [job.to_api(now) for job in jobs if not name_contains or name_contains in job.name]
        return [summary for summary in found if status is None or summary["status"] == status]

    def stop_job(self, job_id: str) -> None:
        job = self._job(job_id)
        state, _ = job.status(self.state.now())
        if state not in ("Submitted", "Validating", "Scheduled", "InProgress"):
            raise BedrockError(400, "ValidationException", f"The job {job.arn} is {state} and cannot be stopped.")
        job.stop_at = self.state.now()

    def tags_of(self, arn: str) -> list[dict[str, str]]:
        return self._job(arn).tags

    def _job(self, identifier: str) -> Job:
        job = self.jobs.get(identifier.rsplit("/", 1)[-1])
        if job is None:
            raise BedrockError(404, "ResourceNotFoundException", f"Could not find the job {identifier}.")
        return job

    def _running(self) -> list[RunningBatch]:
        now = self.state.now()
        return [
            RunningBatch(job.account, job.model, Load(job.total, 0, 0))
            for job in self.jobs.values()
            if job.status(now)[0] in ("Submitted", "Validating", "Scheduled", "InProgress", "Stopping")
        ]

    def _refresh(self, job: Job) -> None:
        """On the first read after the job ended: write its outputs and manifest, bill its answers."""
        state, done = job.status(self.state.now())
        if job.finished or state not in ("Completed", "PartiallyCompleted", "Stopped", "Expired"):
            return
        job.finished = True
        bucket, _, prefix = job.output_uri[len("s3://") :].partition("/")
        folder = posixpath.join(prefix, job.id) if prefix else job.id
        left, billed, errors = done, [], 0
        for name, found in job.inputs.items():
            lines = []
            for record in found[: max(left, 0)]:
                line, ok = records.output_line(job.model, job.id, record, self.state.scenario)
                lines.append(line)
                billed += [record.record_id] if ok else []
                errors += not ok
            left -= len(found)
            self._put(bucket, f"{folder}/{name}.out", "".join(line + "\n" for line in lines).encode())
        job.counts = {"success": len(billed), "error": errors}
        manifest = {
            "totalRecordCount": job.total,
            "processedRecordCount": done,
            "successRecordCount": len(billed),
            "errorRecordCount": errors,
        }
        self._put(bucket, f"{folder}/manifest.json.out", json.dumps(manifest).encode())
        tag_map = {str(tag.get("key")): str(tag.get("value")) for tag in job.tags}
        self.state.ledger.record_billed(PROVIDER, job.arn, job_key_from_tags(tag_map), billed)

    def _put(self, bucket: str, key: str, content: bytes) -> None:
        if bucket not in self.s3.buckets:  # the service role could not write: the guide's job would fail
            self.s3.buckets[bucket] = {}
        self.s3.put(bucket, key, content)


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat().replace("+00:00", "Z")
