"""Amazon Bedrock batch inference (model invocation jobs): records in S3, a job per chunk, records out.

Connection: an AWS connection (type ``aws``, as Airflow's Amazon provider defines it, or this
package's ``llm_batch_bedrock``; the Amazon provider is not needed): login = access key id,
password = secret access key (both empty: boto3's default credential chain, e.g. an instance or
pod role), extras ``region_name``, ``aws_session_token``, ``endpoint_url`` (one endpoint for Bedrock
and S3: the emulator's; ``service_config: {"s3": {"endpoint_url": ...}}`` sets one per service, as
the Amazon provider reads it), and this package's own: ``bedrock_role_arn`` (the service role
Bedrock assumes to read and write S3; not ``role_arn``, which the Amazon provider assumes for its
own calls), ``bedrock_s3_uri`` (``s3://bucket/prefix`` for the input records; outputs go under
``<it>/output`` unless ``bedrock_s3_output_uri`` says otherwise), ``min_records``. They live in
the connection only, not in ``provider_options``: the sensor creates later waves from the
manifest, which carries no options.

Bedrock's facts (docs.aws.amazon.com/bedrock/latest/userguide/batch-inference*.html and the
quotas page docs.aws.amazon.com/general/latest/gr/bedrock.html, as known in
``BEDROCK_FACTS_AS_OF``; defaults, several adjustable per account):

- records per job 50,000 and per input file 50,000; at least 100 records per job ("Minimum number
  of records per batch inference job"): a chunk below it is refused here before any call, since
  Bedrock would only fail the job in validation; input file at most 1 GB, job at most 5 GB;
- at most 10 submitted or running jobs per model and Region (aws.amazon.com blog "Automate Amazon
  Bedrock batch inference", 2024): beyond that ``CreateModelInvocationJob`` answers
  ``ServiceQuotaExceededException``, a capacity refusal: the chunk goes back to pending and a
  later wave sends it (``batch/waves.py``);
- statuses Submitted, Validating, Scheduled, InProgress, Stopping (running); Completed and
  PartiallyCompleted (ended, some records may carry an ``error``), Failed, Stopped, Expired (the
  job's ``timeoutDurationInHours``, 24 to 168, ran out);
- the job name (at most 63 characters) carries the job key's digest and the chunk, and so do the
  job's tags (``airflow_job_key``, ``airflow_chunk``). ``ListModelInvocationJobs`` has no tag
  filter but ``nameContains``: :meth:`BedrockBackend.find_batches` finds a job whose create
  response was lost by its name. The create also sends a ``clientRequestToken`` derived from the
  key, the chunk and its content: a create retried after a lost answer returns the same job;
- outputs land in ``<output uri>/<job id>/<input file>.out`` plus ``manifest.json.out``.

The triggerer's status call is an HTTP GET signed with botocore's SigV4 signer and sent with the
async HTTP client the LLM SDKs already bring (httpx2 or httpx): boto3 has no async client, and a
sync call would block the triggerer's event loop.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from airflow_llm_batch.batch.backends import bedrock_records as records
from airflow_llm_batch.batch.backends.aws_calls import AwsCallError, ClientFactory, aws_error_code, aws_http_status
from airflow_llm_batch.batch.backends.base import (
    BatchBackend,
    ChunkFile,
    ProviderLimits,
    RequestSpec,
    StatusRefusal,
    is_transient_error,
)
from airflow_llm_batch.batch.backends.storage_cleanup import StorageCleanup
from airflow_llm_batch.batch.records import BatchOutcome, BatchStatus, JobKey, Kind, RawOutcome
from airflow_llm_batch.exceptions import ConfigurationError

BEDROCK_FACTS_AS_OF = "2026-12"
MIN_RECORDS = 100
NAME_PREFIX = "llmb"
_OUTCOMES = {
    "Completed": BatchOutcome.COMPLETED,
    "PartiallyCompleted": BatchOutcome.COMPLETED,
    "Failed": BatchOutcome.FAILED,
    "Stopped": BatchOutcome.CANCELLED,
    "Expired": BatchOutcome.EXPIRED,
}
# Create refusals that mean "over the account's job quota", not "bad input" (see the module docstring).
CAPACITY_CODES = frozenset({"ServiceQuotaExceededException"})
AUTH_CODES = frozenset(
    {"AccessDeniedException", "UnrecognizedClientException", "ExpiredTokenException", "InvalidSignatureException"}
)


class BedrockBackend(BatchBackend):
    """Bedrock model invocation jobs through boto3 (``airflow-llm-batch[bedrock]``), imported lazily."""

    provider = "bedrock"
    default_limits = ProviderLimits(
        max_requests=50_000,
        max_bytes=1_000_000_000,  # "1 GB" per input file, read as decimal (the stricter reading)
        max_request_bytes=10 * 1024 * 1024,
        # The guide shows alphanumeric record ids ("CALL0000001"); ids with other characters are
        # mapped to h-<hash> (prepare.IdMapper), which this pattern accepts.
        custom_id_pattern=r"[a-zA-Z0-9_-]{1,64}",
        custom_id_max_length=64,
        single_model_per_batch=True,
    )

    # Requests ---------------------------------------------------------------------------------------
    def check_spec(self, spec: RequestSpec) -> None:
        if spec.options.get("check_model", True) and records.model_family(spec.model, spec.kind) is None:
            expected = (
                "an Anthropic Claude model id such as anthropic.claude-3-5-haiku-20241022-v1:0 (or an inference "
                "profile us.anthropic.claude-...)"
                if spec.kind is Kind.CHAT
                else "Titan Text Embeddings (amazon.titan-embed-text-v2:0) or Cohere Embed (cohere.embed-english-v3)"
            )
            raise ConfigurationError(
                f"bedrock: model {spec.model!r} cannot serve {spec.kind.value} requests here; expected {expected}. "
                "This package builds Claude (Messages), Titan and Cohere embedding bodies for Bedrock."
            )
        self.setting("bedrock_role_arn")
        split_s3_uri(str(self.setting("bedrock_s3_uri")))

    def check_model(self, spec: RequestSpec) -> None:
        """Checked in :meth:`check_spec` (the body format follows from the model family)."""

    def build_body(self, spec: RequestSpec, text: str) -> dict[str, Any]:
        if spec.kind is Kind.EMBEDDING and records.model_family(spec.model, spec.kind) == "cohere_embed":
            return records.cohere_embed_body(text, spec.parameters)
        if spec.kind is Kind.EMBEDDING:
            return records.titan_embed_body(text, spec.parameters)
        return records.claude_body(text, spec.system_prompt, spec.parameters, spec.response_schema)

    def build_line(self, custom_id: str, spec: RequestSpec, body: dict[str, Any]) -> dict[str, Any]:
        return {"recordId": custom_id, "modelInput": body}

    # Settings ---------------------------------------------------------------------------------------
    def setting(self, name: str, required: bool = True) -> str | None:
        """A Bedrock setting from the connection's extras."""
        value = self.config.extra.get(name)
        if not value and required:
            raise ConfigurationError(
                f"bedrock: set {name!r} in the AWS connection's extras (docs/platforms.md, Amazon Bedrock)"
            )
        return str(value) if value else None

    def locations(self, job_key: JobKey, chunk: int) -> tuple[str, str, str]:
        """The chunk's input object (bucket, key) and the job's output URI, stable across tries."""
        base = str(self.setting("bedrock_s3_uri")).rstrip("/")
        output = str(self.setting("bedrock_s3_output_uri", required=False) or f"{base}/output").rstrip("/")
        bucket, prefix = split_s3_uri(base)
        key = "/".join(part for part in (prefix, "input", job_key.digest(), f"c{chunk:05d}.jsonl") if part)
        return bucket, key, f"{output}/{job_key.digest()}/c{chunk:05d}/"

    @functools.cached_property
    def clients(self) -> ClientFactory:
        return ClientFactory(self.config)

    def prepare_async(self) -> None:
        self.clients.prepare_signing()

    @property
    def min_records(self) -> int:
        """The fewest records Bedrock runs a job with (the account's quota, 100 by default)."""
        return int(self.config.extra.get("min_records") or MIN_RECORDS)

    def chunk_problems(self, chunks: Sequence[ChunkFile]) -> list[str]:
        """Every chunk under the minimum, with the ``max_requests`` that would split the model's
        items evenly (checked before the first create: Bedrock would only fail that job in
        validation, after the jobs of the earlier chunks were created and paid for)."""
        minimum = self.min_records
        short = [chunk for chunk in chunks if chunk.count < minimum]
        if not short:
            return []
        problems = []
        for model in sorted({chunk.model for chunk in short}):
            of_model = [chunk for chunk in chunks if chunk.model == model]
            items, most = sum(chunk.count for chunk in of_model), max(chunk.count for chunk in of_model)
            counts = ", ".join(f"chunk {c.index}: {c.count}" for c in of_model if c.count < minimum)
            problem = (
                f"bedrock: {counts} record(s) of model {model}; Bedrock runs a batch job only with at least "
                f"{minimum} records ('Minimum number of records per batch inference job')."
            )
            even = -(-items // most)  # as few chunks as the limits allow, the items shared evenly
            if items < minimum:
                problem += f" The job has {items} item(s) for this model: send at least {minimum}."
            elif items // even >= minimum:
                problem += (
                    f" Split the {items} items evenly: provider_limits={{'max_requests': {-(-items // even)}}} "
                    f"makes {even} chunk(s) of at least {items // even}."
                )
            else:
                problem += f" Raise provider_limits max_requests: {items} items cannot make chunks of {minimum}."
            problems.append(problem)
        return problems

    # Talking to the provider ----------------------------------------------------------------------
    def submit_chunk(self, chunk: ChunkFile, spec: RequestSpec, job_key: JobKey) -> str:
        """Upload the chunk's records, then create its job, named and tagged with the job key."""
        problems = self.chunk_problems([chunk])  # the job's chunks were checked together before
        if problems:
            raise ConfigurationError(problems[0])
        bucket, key, output_uri = self.locations(job_key, chunk.index)
        token = hashlib.sha256(f"{job_key.as_string()}|{chunk.index}|".encode())
        with chunk.path.open("rb") as stream:  # streamed twice: hashed here, uploaded below
            for block in iter(lambda: stream.read(1 << 20), b""):
                token.update(block)
        with chunk.path.open("rb") as stream:
            # A seekable stream (a local file, an object store's file) is uploaded as it is read.
            body = stream if _seekable(stream) else stream.read()
            self.clients.s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/jsonl")
        answer = self.clients.bedrock.create_model_invocation_job(
            jobName=job_name(job_key, chunk.index),
            roleArn=self.setting("bedrock_role_arn"),
            clientRequestToken=token.hexdigest(),
            modelId=chunk.model,
            inputDataConfig={"s3InputDataConfig": {"s3Uri": f"s3://{bucket}/{key}", "s3InputFormat": "JSONL"}},
            outputDataConfig={"s3OutputDataConfig": {"s3Uri": output_uri}},
            tags=tags(job_key, chunk.index),
        )
        return str(answer["jobArn"])

    def find_batches(self, job_key: JobKey) -> dict[int, str]:
        """Jobs whose name carries the key's digest (``nameContains``), newest first per chunk."""
        found: dict[int, str] = {}
        pages = self.clients.bedrock.get_paginator("list_model_invocation_jobs").paginate(
            nameContains=f"{NAME_PREFIX}-{job_key.digest()}", sortBy="CreationTime", sortOrder="Descending"
        )
        for page in pages:
            for job in page.get("invocationJobSummaries") or []:
                chunk = chunk_of_name(str(job.get("jobName") or ""), job_key)
                if chunk is not None:
                    found.setdefault(chunk, str(job["jobArn"]))
        return found

    def get_status(self, batch_id: str) -> BatchStatus:
        return status_of(self.clients.bedrock.get_model_invocation_job(jobIdentifier=batch_id))

    async def aget_status(self, batch_id: str) -> BatchStatus:
        # The job id alone (the ARN's last part) is a jobIdentifier too: nothing in the path to encode.
        return status_of(await self.clients.signed_get("bedrock", f"/model-invocation-job/{_job_id(batch_id)}"))

    def cancel(self, batch_id: str) -> None:
        self.clients.bedrock.stop_model_invocation_job(jobIdentifier=batch_id)

    async def acancel(self, batch_id: str) -> None:
        path = f"/model-invocation-job/{_job_id(batch_id)}/stop"
        await self.clients.signed_get("bedrock", path, method="POST")

    def iter_outcomes(self, status: BatchStatus, kind: Kind) -> Iterator[RawOutcome]:
        """Every ``*.jsonl.out`` under the job's output folder, line by line (streamed from S3)."""
        uri = status.details.get("output_uri")
        if not uri:
            return
        bucket, prefix = split_s3_uri(str(uri))
        job_id = status.batch_id.rsplit("/", 1)[-1]
        folder = f"{prefix.rstrip('/')}/{job_id}/" if prefix else f"{job_id}/"
        for page in self.clients.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=folder):
            for item in page.get("Contents") or []:
                if not str(item["Key"]).endswith(".jsonl.out"):
                    continue
                body = self.clients.s3.get_object(Bucket=bucket, Key=item["Key"])["Body"]
                for line in body.iter_lines():
                    if line.strip():
                        yield records.parse_record(line, kind)

    def delete_stored(self, statuses: Sequence[BatchStatus], job_key: JobKey, *, batches: bool) -> StorageCleanup:
        """The S3 copies the job left: each job's input records and its output folder (records and
        manifest). Once the rows are in the work dir nothing reads them again, as on the other
        providers. Bedrock has no job delete, so ``batches`` changes nothing."""
        cleanup = StorageCleanup()
        for status in statuses:
            objects = []
            if status.details.get("input_uri"):
                objects.append(split_s3_uri(str(status.details["input_uri"])))
            if status.details.get("output_uri"):
                bucket, prefix = split_s3_uri(str(status.details["output_uri"]))
                folder = f"{prefix}/{status.batch_id.rsplit('/', 1)[-1]}/".lstrip("/")
                pages = self.clients.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=folder)
                objects += [(bucket, item["Key"]) for page in pages for item in page.get("Contents") or []]
            for bucket, key in objects:
                cleanup.delete(f"s3://{bucket}/{key}", self._delete_object)
        return cleanup

    def _delete_object(self, uri: str) -> None:
        bucket, key = split_s3_uri(uri)
        self.clients.s3.delete_object(Bucket=bucket, Key=key)

    # Errors -----------------------------------------------------------------------------------------
    def is_capacity_error(self, error: BaseException) -> bool:
        return aws_error_code(error) in CAPACITY_CODES or super().is_capacity_error(error)

    def is_transient(self, error: BaseException) -> bool:
        status = aws_http_status(error)
        if status is not None:
            return status in (408, 429) or status >= 500
        return type(error).__name__ in ("EndpointConnectionError", "ConnectionClosedError", "ReadTimeoutError") or (
            is_transient_error(error)
        )

    def status_refusal(self, error: BaseException) -> StatusRefusal | None:
        status, code = aws_http_status(error), aws_error_code(error)
        detail = ", ".join(part for part in (type(error).__name__, code) if part)
        if code in AUTH_CODES or status in (401, 403):
            return StatusRefusal("auth", status or 403, detail)
        if code == "ResourceNotFoundException" or status == 404:
            return StatusRefusal("not_found", 404, detail)
        return None

    def test_connection(self) -> tuple[bool, str]:
        self.clients.bedrock.list_model_invocation_jobs(maxResults=1)
        return True, f"Connected to Amazon Bedrock batch inference in {self.clients.region}"

    def console_url(self, batch_id: str) -> str | None:
        """The Region's batch inference page (``links.py`` builds the same from the job's ARN)."""
        region = self.clients.region
        return f"https://{region}.console.aws.amazon.com/bedrock/home?region={region}#/batch-inference"

    def close(self) -> None:
        if "clients" in self.__dict__:
            self.clients.close()

    async def aclose(self) -> None:
        if "clients" in self.__dict__:
            await self.clients.aclose()


def job_name(job_key: JobKey, chunk_index: int) -> str:
    """``llmb-<digest>-c<chunk>``: 26 characters, inside the 63 and the name pattern Bedrock allows."""
    return f"{NAME_PREFIX}-{job_key.digest()}-c{chunk_index:05d}"


def chunk_of_name(name: str, job_key: JobKey) -> int | None:
    prefix, found, chunk = name.rpartition("-c")
    if not found or not chunk.isdigit() or prefix != f"{NAME_PREFIX}-{job_key.digest()}":
        return None
    return int(chunk)


def tags(job_key: JobKey, chunk_index: int) -> list[dict[str, str]]:
    """Tag values allow letters, digits, spaces and ``._:/=+@-`` (botocore's TagValue pattern)."""

    def safe(value: str) -> str:
        return "".join(c if c.isalnum() or c in " ._:/=+@-" else "_" for c in value)[:256]

    return [
        {"key": "airflow_job_key", "value": job_key.digest()},
        {"key": "airflow_chunk", "value": str(chunk_index)},
        {"key": "airflow_dag", "value": safe(job_key.dag_id)},
        {"key": "airflow_task", "value": safe(job_key.task_id)},
    ]


def _job_id(batch_id: str) -> str:
    """The 12-character id at the end of a job's ARN; the API takes either (``jobIdentifier``)."""
    return quote(batch_id.rsplit("/", 1)[-1], safe="")


def _seekable(stream: Any) -> bool:
    try:
        return bool(stream.seekable())
    except (AttributeError, OSError):
        return False


def split_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://") or len(uri) <= len("s3://"):
        raise ConfigurationError(f"bedrock: {uri!r} is not an S3 URI (s3://bucket/prefix)")
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    return bucket, prefix.strip("/")


def status_of(job: Mapping[str, Any]) -> BatchStatus:
    """``GetModelInvocationJob``'s answer as a :class:`BatchStatus` (record counts where Bedrock gives them)."""
    state = str(job.get("status") or "Submitted")
    outcome = _OUTCOMES.get(state)
    total = int(job.get("totalRecordCount") or 0)
    errors: tuple[str, ...] = ()
    if outcome is BatchOutcome.FAILED:
        errors = (f"Failed: {job.get('message') or 'Bedrock reported the job as failed without a message'}",)
    output = ((job.get("outputDataConfig") or {}).get("s3OutputDataConfig") or {}).get("s3Uri")
    records_in = ((job.get("inputDataConfig") or {}).get("s3InputDataConfig") or {}).get("s3Uri")
    return BatchStatus(
        batch_id=str(job["jobArn"]),
        state=state,
        outcome=outcome,
        total=total,
        done=int(job.get("processedRecordCount") or 0),
        failed=int(job.get("errorRecordCount") or 0),
        errors=errors,
        details={"output_uri": output, "input_uri": records_in, "message": job.get("message")},
    )


__all__ = ["AwsCallError", "BedrockBackend", "job_name", "status_of", "tags"]
