"""Amazon Bedrock batch inference through the real boto3 clients, on the emulated AWS endpoint.

The emulator serves the ``bedrock`` control plane and S3 under one endpoint (``/aws``); the
backend uploads each chunk's records, creates a model invocation job, polls it with its signed
async call, and reads the ``.jsonl.out`` records back into the same rows as every provider. The
fault-matrix rows on Bedrock (lost create response, expiry, item errors, the jobs quota) are here.
"""

from __future__ import annotations

import asyncio
import json

import boto3
import pytest
from botocore.exceptions import ClientError

from airflow_llm_batch.batch.backends.base import ChunkFile, ClientConfig, RequestSpec
from airflow_llm_batch.batch.backends.bedrock import AwsCallError, BedrockBackend, job_name
from airflow_llm_batch.batch.job import JobLayout
from airflow_llm_batch.batch.records import JobKey, Kind
from airflow_llm_batch.batch.retry import prepare_retry
from airflow_llm_batch.batch.schema import ResponseSchema
from airflow_llm_batch.batch.submit import submit_retry
from airflow_llm_batch.exceptions import ConfigurationError
from tests.integration.harness import KEY, collect_rows, items, submit_items, wait_for
from tests.integration.test_waves import run_waves

CLAUDE = "anthropic.claude-3-5-haiku-20241022-v1:0"
TITAN = "amazon.titan-embed-text-v2:0"
SCHEMA = {"type": "object", "properties": {"label": {"type": "string", "enum": ["spam", "ham"]}}, "required": ["label"]}
BUCKET = "llm-batch-records"
KEY_ID, SECRET = "AKIAEMULATED0000", "emulated-secret-key"


@pytest.fixture(autouse=True)
def _no_aws(monkeypatch):
    # Never let botocore look for credentials or a region on the machine (IMDS, profiles).
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)


def _backend(emulator, **extra) -> BedrockBackend:
    settings = {
        "endpoint_url": emulator.aws_endpoint_url,
        "region_name": "us-east-1",
        "bedrock_role_arn": "arn:aws:iam::123456789012:role/bedrock-batch",
        "bedrock_s3_uri": f"s3://{BUCKET}/batches",
        "min_records": 5,
        "max_retries": 0,
        **extra,
    }
    return BedrockBackend(ClientConfig(api_key=SECRET, login=KEY_ID, extra=settings))


def _bucket(emulator) -> None:
    s3 = boto3.client(
        "s3",
        endpoint_url=emulator.aws_endpoint_url,
        region_name="us-east-1",
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
    )
    s3.create_bucket(Bucket=BUCKET)


@pytest.fixture
def emulator(llm_batch_emulator):
    llm_batch_emulator.set_scenario(completion_seconds=0.3, bedrock_min_records=5)
    _bucket(llm_batch_emulator)
    return llm_batch_emulator


def test_a_structured_claude_job_on_bedrock_gives_the_same_rows(emulator, tmp_path):
    backend = _backend(emulator)
    spec = RequestSpec(model=CLAUDE, kind=Kind.CHAT, response_schema=ResponseSchema.coerce(SCHEMA))
    layout, manifest = submit_items(backend, tmp_path, items(12), spec, KEY)
    [status] = wait_for(backend, manifest)
    assert status.state == "Completed" and status.total == 12
    summary, rows = collect_rows(backend, layout, manifest, ResponseSchema.coerce(SCHEMA).validator())
    assert summary["succeeded"] == 12 and sorted(r["id"] for r in rows) == sorted(f"msg/{i}" for i in range(12))
    assert {r["provider"] for r in rows} == {"bedrock"} and all(r["json"]["label"] in ("spam", "ham") for r in rows)
    assert all(r["input_tokens"] and r["output_tokens"] and r["finish_reason"] == "tool_use" for r in rows)
    line = (layout.requests_dir / "chunk-00000.jsonl").read_text().splitlines()[0]
    assert '"recordId":' in line and '"anthropic_version":"bedrock-2023-05-31"' in line and '"model"' not in line
    # The job is named and tagged with the job key, and found again by it.
    job = backend.clients.bedrock.get_model_invocation_job(jobIdentifier=manifest.batch_ids[0])
    assert job["jobName"] == job_name(KEY, 0)
    tags = backend.clients.bedrock.list_tags_for_resource(resourceARN=job["jobArn"])["tags"]
    assert {"key": "airflow_job_key", "value": KEY.digest()} in tags
    assert backend.find_batches(KEY) == {0: manifest.batch_ids[0]}
    # Once the rows are written, the Results task deletes the S3 copies the job left.
    s3 = backend.clients.s3
    assert s3.list_objects_v2(Bucket=BUCKET)["KeyCount"] == 3  # input records, output records, manifest
    cleanup = backend.delete_stored([status], KEY, batches=False)
    assert len(cleanup.deleted) == 3 and cleanup.kept == [] and s3.list_objects_v2(Bucket=BUCKET)["KeyCount"] == 0
    backend.close()


def test_titan_embeddings_on_bedrock(emulator, tmp_path):
    backend = _backend(emulator)
    spec = RequestSpec(model=TITAN, kind=Kind.EMBEDDING, parameters={"dimensions": 256})
    layout, manifest = submit_items(backend, tmp_path, items(8), spec, KEY, template="{text}")
    wait_for(backend, manifest)
    summary, rows = collect_rows(backend, layout, manifest)
    assert summary["succeeded"] == 8 and all(len(r["embedding"]) == 256 and r["input_tokens"] for r in rows)


def test_cohere_embeddings_on_bedrock(emulator, tmp_path):
    backend = _backend(emulator)
    spec = RequestSpec(model="cohere.embed-english-v3", kind=Kind.EMBEDDING, parameters={"input_type": "clustering"})
    layout, manifest = submit_items(backend, tmp_path, items(6), spec, KEY, template="{text}")
    wait_for(backend, manifest)
    summary, rows = collect_rows(backend, layout, manifest)
    assert summary["succeeded"] == 6 and all(len(r["embedding"]) == 1024 for r in rows)
    line = (layout.requests_dir / "chunk-00000.jsonl").read_text().splitlines()[0]
    assert '"texts":["message' in line and '"input_type":"clustering"' in line
    # A Titan parameter is not Cohere's: Bedrock refuses the record, the row says why.
    spec = RequestSpec(model="cohere.embed-english-v3", kind=Kind.EMBEDDING, parameters={"dimensions": 256})
    other = JobKey("dag", "submit", "another-run")
    layout, manifest = submit_items(backend, tmp_path / "2", items(6), spec, other, template="{text}")
    wait_for(backend, manifest)
    _, rows = collect_rows(backend, layout, manifest)
    assert all(r["error_type"] == "invalid_request" and "dimensions" in r["error_message"] for r in rows)


def test_item_errors_land_in_the_taxonomy_and_the_job_is_partially_completed(emulator, tmp_path):
    emulator.update_scenario(item_errors={"rate_limited": 0.3, "context_length": 0.2})
    backend = _backend(emulator)
    layout, manifest = submit_items(backend, tmp_path, items(30), RequestSpec(model=CLAUDE, kind=Kind.CHAT), KEY)
    [status] = wait_for(backend, manifest)
    assert status.state == "PartiallyCompleted"
    _, rows = collect_rows(backend, layout, manifest)
    kinds = {r["error_type"] for r in rows if r["status"] == "failed"}
    assert kinds == {"rate_limited", "context_length"} and len(rows) == 30
    assert all(r["retryable"] == (r["error_type"] == "rate_limited") for r in rows if r["status"] == "failed")


def test_an_expired_job_keeps_what_ran_and_marks_the_rest_expired(emulator, tmp_path):
    emulator.update_scenario(batch_outcome="expired")
    backend = _backend(emulator)
    layout, manifest = submit_items(backend, tmp_path, items(10), RequestSpec(model=CLAUDE, kind=Kind.CHAT), KEY)
    [status] = wait_for(backend, manifest)
    assert status.state == "Expired"
    summary, rows = collect_rows(backend, layout, manifest)
    assert len(rows) == 10 and summary["succeeded"] == 5
    assert {r["error_type"] for r in rows if r["status"] == "failed"} == {"expired"}


def test_a_lost_create_response_is_found_by_the_job_key_and_not_created_twice(emulator, tmp_path):
    backend = _backend(emulator)
    spec = RequestSpec(model=CLAUDE, kind=Kind.CHAT)
    layout, manifest = submit_items(backend, tmp_path, items(6), spec, KEY)
    # A new try whose record is gone: the lookup by the job's name finds the job.
    fresh = _backend(emulator)
    assert fresh.find_batches(KEY) == {0: manifest.batch_ids[0]}
    # The same create sent again (the answer was lost) returns the same job: the idempotency token.
    chunk_path = layout.requests_dir / "chunk-00000.jsonl"
    chunk = ChunkFile(0, chunk_path, 6, chunk_path.stat().st_size, CLAUDE)
    assert fresh.submit_chunk(chunk, spec, KEY) == manifest.batch_ids[0]
    assert len(emulator.ledger()["batches"]) == 1


def test_over_the_jobs_quota_a_create_is_a_capacity_refusal(emulator, tmp_path):
    emulator.update_scenario(queue_quotas=[{"provider": "bedrock", "concurrent_batches": 1}], completion_seconds=60)
    backend = _backend(emulator)
    spec = RequestSpec(model=CLAUDE, kind=Kind.CHAT)
    submit_items(backend, tmp_path / "one", items(6), spec, KEY)
    other = JobKey("dag", "submit", "another-run")
    with pytest.raises(ClientError) as refused:
        backend.submit_chunk(_chunk_of(tmp_path / "one", KEY), spec, other)
    assert refused.value.response["Error"]["Code"] == "ServiceQuotaExceededException"
    assert backend.is_capacity_error(refused.value) and not backend.is_transient(refused.value)


def _chunk_of(root, key):
    path = JobLayout.for_job(root, key, 1).requests_dir / "chunk-00000.jsonl"
    return ChunkFile(0, path, 6, path.stat().st_size, CLAUDE)


def test_stop_cancels_the_job(emulator, tmp_path):
    emulator.update_scenario(completion_seconds=30)
    backend = _backend(emulator)
    _, manifest = submit_items(backend, tmp_path, items(6), RequestSpec(model=CLAUDE, kind=Kind.CHAT), KEY)
    asyncio.run(backend.acancel(manifest.batch_ids[0]))
    emulator.advance(1)
    assert backend.get_status(manifest.batch_ids[0]).outcome.value == "cancelled"


def test_what_bedrock_cannot_run_is_refused_before_any_call(emulator, tmp_path):
    backend = _backend(emulator, min_records=100)
    with pytest.raises(ConfigurationError, match="at least 100"):
        submit_items(backend, tmp_path, items(6), RequestSpec(model=CLAUDE, kind=Kind.CHAT), KEY)
    with pytest.raises(ConfigurationError, match="Claude"):
        backend.check_spec(RequestSpec(model="meta.llama3-70b-instruct-v1:0", kind=Kind.CHAT))
    with pytest.raises(ConfigurationError, match="bedrock_role_arn"):
        _backend(emulator, bedrock_role_arn=None).check_spec(RequestSpec(model=CLAUDE, kind=Kind.CHAT))
    assert emulator.requests("bedrock") == [] or all(
        r["method"] != "POST" or "model-invocation-job" not in r["path"] for r in emulator.requests("bedrock")
    )


def test_waves_under_the_jobs_quota_end_with_one_row_per_item_paid_once(emulator, tmp_path):
    """The waves design on Bedrock: the quota unknown to the task is learned from the refusals."""
    emulator.update_scenario(
        completion_seconds=0.4, bedrock_min_records=1, queue_quotas=[{"provider": "bedrock", "concurrent_batches": 5}]
    )
    backend = _backend(emulator, min_records=1)
    backend.limits = backend.limits.with_overrides({"max_requests": 2})
    rows_in = items(40)  # 20 chunks
    layout, manifest = submit_items(backend, tmp_path, rows_in, RequestSpec(model=CLAUDE, kind=Kind.CHAT), KEY)
    assert len(manifest.batches) == 5 and len(manifest.pending) == 15  # refused on the sixth create
    lines = run_waves(backend, layout, manifest)
    assert any(line.startswith("wave 2:") for line in lines)
    summary, rows = collect_rows(backend, layout, manifest)
    assert sorted(r["id"] for r in rows) == sorted(i["id"] for i in rows_in) and summary["succeeded"] == 40
    ledger = emulator.ledger()
    assert ledger["refused_creates"] and ledger["billed_twice"] == [] and len(ledger["batches"]) == 20


def test_a_job_failing_validation_gives_permanent_rows_with_bedrocks_reason(emulator, tmp_path):
    emulator.update_scenario(batch_outcome="failed")
    backend = _backend(emulator)
    layout, manifest = submit_items(backend, tmp_path, items(6), RequestSpec(model=CLAUDE, kind=Kind.CHAT), KEY)
    [status] = wait_for(backend, manifest)
    assert status.state == "Failed"
    summary, rows = collect_rows(backend, layout, manifest)
    assert summary["failed_batches"] and len(rows) == 6
    assert all(not r["retryable"] and "failed validation" in r["error_message"] for r in rows)


def test_a_poll_refused_for_the_key_or_an_unknown_job_is_told_apart_from_a_transient_error(emulator, tmp_path):
    """The triggerer's signed call: 403 is ``auth`` and 404 ``not_found`` (the wait fails at once)."""
    backend = _backend(emulator)
    _, manifest = submit_items(backend, tmp_path, items(6), RequestSpec(model=CLAUDE, kind=Kind.CHAT), KEY)
    unknown = "arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/aaaaaaaaaaaa"

    async def poll(batch_id: str) -> BaseException:
        try:
            await backend.aget_status(batch_id)
        except AwsCallError as error:
            return error
        finally:
            await backend.aclose()
        raise AssertionError("the poll was not refused")

    emulator.update_scenario(api_key="AKIASOMEONEELSE")
    refused = asyncio.run(poll(manifest.batch_ids[0]))
    assert backend.status_refusal(refused).kind == "auth" and SECRET not in str(refused)
    emulator.update_scenario(api_key=None)
    gone = asyncio.run(poll(unknown))
    assert backend.status_refusal(gone).kind == "not_found" and not backend.is_transient(gone)


def test_a_retry_round_resends_exactly_the_retryable_records(emulator, tmp_path):
    emulator.update_scenario(item_errors={"rate_limited": 0.3, "invalid_request": 0.2})
    backend = _backend(emulator)
    layout, manifest = submit_items(backend, tmp_path, items(30), RequestSpec(model=CLAUDE, kind=Kind.CHAT), KEY)
    wait_for(backend, manifest)
    _, rows = collect_rows(backend, layout, manifest)
    retryable = {r["id"] for r in rows if r["retryable"]}
    assert retryable and retryable != {r["id"] for r in rows if r["status"] == "failed"}  # some are permanent
    out = JobLayout.for_job(tmp_path, KEY, 2).requests_dir
    prepared = prepare_retry(layout, layout.results_dir / "failed_items.jsonl", CLAUDE, backend, out)
    assert prepared.item_count == len(retryable)  # the records are found by their recordId


RETRY_KEY = JobKey("dag", "retry_1_submit", "run")


def _creates_and_uploads(emulator) -> list[dict]:
    return [r for r in emulator.requests("bedrock") if r["method"] in ("POST", "PUT")]


def test_a_last_chunk_under_the_minimum_is_refused_before_the_first_chunk_is_created(emulator, tmp_path, caplog):
    # 12 items in chunks of 10: the second would hold 2 records, under Bedrock's minimum (here 5).
    backend = BedrockBackend(
        _backend(emulator).config, limits=BedrockBackend.default_limits.with_overrides({"max_requests": 10})
    )
    before = len(_creates_and_uploads(emulator))  # the bucket the fixture made
    with pytest.raises(
        ConfigurationError, match=r"chunk 1: 2 record\(s\).*'max_requests': 6\}.* 2 chunk\(s\) of at least 6"
    ):
        submit_items(backend, tmp_path, items(12), RequestSpec(model=CLAUDE, kind=Kind.CHAT), KEY)
    assert len(_creates_and_uploads(emulator)) == before  # neither chunk's records uploaded, no job created

    # As the message says: the same items in chunks of 6 run.
    even = BedrockBackend(
        _backend(emulator).config, limits=BedrockBackend.default_limits.with_overrides({"max_requests": 6})
    )
    layout, manifest = submit_items(even, tmp_path / "even", items(12), RequestSpec(model=CLAUDE, kind=Kind.CHAT), KEY)
    wait_for(even, manifest)
    _, rows = collect_rows(even, layout, manifest)
    assert len(manifest.batch_ids) == 2 and sorted(r["id"] for r in rows) == sorted(i["id"] for i in items(12))


def test_a_retry_round_under_the_minimum_sends_nothing_and_its_items_stay_failed(emulator, tmp_path, caplog):
    emulator.update_scenario(item_errors={"rate_limited": 0.3})
    backend = _backend(emulator)
    layout, manifest = submit_items(backend, tmp_path, items(30), RequestSpec(model=CLAUDE, kind=Kind.CHAT), KEY)
    wait_for(backend, manifest)
    first, _ = collect_rows(backend, layout, manifest)
    assert 0 < first["retryable"] < 30
    before = len(_creates_and_uploads(emulator))

    strict = _backend(emulator, min_records=31)  # more than any retry round of this job can hold
    retry = submit_retry(
        first, strict, layout.root, layout.results_dir / "failed_items.jsonl", RETRY_KEY, timeout_seconds=3600
    )

    assert retry.batch_ids == [] and len(_creates_and_uploads(emulator)) == before
    assert f"not resubmitting the {first['retryable']} retryable item(s)" in caplog.text
    assert "at least 31 records" in caplog.text
    # The round's Results task has nothing to collect and asks the provider nothing.
    second, rows = collect_rows(strict, JobLayout(layout.root.parent / "attempt-2"), retry)
    assert second["items"] == 0 and rows == [] and len(_creates_and_uploads(emulator)) == before


def test_retryable_items_without_a_request_line_are_named_and_the_others_retried(emulator, tmp_path, caplog):
    emulator.update_scenario(item_errors={"rate_limited": 0.4})
    backend = _backend(emulator)
    layout, manifest = submit_items(backend, tmp_path, items(30), RequestSpec(model=CLAUDE, kind=Kind.CHAT), KEY)
    wait_for(backend, manifest)
    collect_rows(backend, layout, manifest)
    failed = [json.loads(line) for line in (layout.results_dir / "failed_items.jsonl").read_text().splitlines()]
    retryable = sorted(row["custom_id"] for row in failed if row["retryable"])
    assert len(retryable) >= 2
    lost = retryable[0]  # its request line disappears from the first attempt's chunk file
    chunk = layout.chunk_file(0)
    kept = [line for line in chunk.read_bytes().splitlines() if f'"recordId":"{lost}"'.encode() not in line]
    chunk.write_bytes(b"\n".join(kept) + b"\n")

    out = JobLayout.for_job(tmp_path, KEY, 2).requests_dir
    prepared = prepare_retry(layout, layout.results_dir / "failed_items.jsonl", CLAUDE, backend, out)

    assert prepared.item_count == len(retryable) - 1
    assert "1 retryable item(s) have no request line" in caplog.text and lost in caplog.text
