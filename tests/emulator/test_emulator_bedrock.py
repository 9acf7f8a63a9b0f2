"""The emulated Amazon Bedrock batch inference and its S3, through the real boto3 clients.

Its rules come from the Bedrock user guide (``emulator/bedrock/models.py``), not from the package's
backend: these tests speak boto3 directly, as a user's own code would.
"""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.exceptions import ClientError

from airflow_llm_batch.emulator import Emulator

CLAUDE = "anthropic.claude-3-5-haiku-20241022-v1:0"
ROLE = "arn:aws:iam::123456789012:role/bedrock-batch"


@pytest.fixture(autouse=True)
def _no_aws(monkeypatch):
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def _client(emu: Emulator, service: str, key_id: str = "AKIATEST") -> object:
    return boto3.client(
        service,
        endpoint_url=emu.aws_endpoint_url,
        region_name="us-east-1",
        aws_access_key_id=key_id,
        aws_secret_access_key="secret",
        config=boto3.session.Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"}),
    )


@pytest.fixture
def s3(emu: Emulator):
    client = _client(emu, "s3")
    client.create_bucket(Bucket="bkt")
    return client


@pytest.fixture
def bedrock(emu: Emulator):
    return _client(emu, "bedrock")


def _records(count: int, body=None) -> bytes:
    body = body or {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 50,
        "messages": [{"role": "user", "content": "hi"}],
    }
    return b"".join(json.dumps({"recordId": f"r{i:04d}", "modelInput": body}).encode() + b"\n" for i in range(count))


def _create(bedrock, name: str = "job1", uri: str = "s3://bkt/in/records.jsonl", **more):
    return bedrock.create_model_invocation_job(
        jobName=name,
        roleArn=ROLE,
        modelId=more.pop("model", CLAUDE),
        inputDataConfig={"s3InputDataConfig": {"s3Uri": uri}},
        outputDataConfig={"s3OutputDataConfig": {"s3Uri": "s3://bkt/out/"}},
        **more,
    )["jobArn"]


def test_a_job_moves_through_the_statuses_and_writes_records_and_a_manifest(emu, s3, bedrock):
    emu.set_scenario(completion_seconds=10)
    s3.put_object(Bucket="bkt", Key="in/records.jsonl", Body=_records(120))
    arn = _create(bedrock, tags=[{"key": "airflow_job_key", "value": "abc"}])
    assert bedrock.get_model_invocation_job(jobIdentifier=arn)["status"] == "Submitted"
    emu.advance(0.5)
    assert bedrock.get_model_invocation_job(jobIdentifier=arn)["status"] == "Validating"
    emu.advance(5)
    running = bedrock.get_model_invocation_job(jobIdentifier=arn)
    assert running["status"] == "InProgress" and 0 < running["processedRecordCount"] < 120
    emu.advance(5)
    job = bedrock.get_model_invocation_job(jobIdentifier=arn)
    assert job["status"] == "Completed" and job["processedRecordCount"] == job["successRecordCount"] == 120
    job_id = arn.rsplit("/", 1)[-1]
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="bkt", Prefix=f"out/{job_id}/")["Contents"]]
    assert sorted(keys) == [f"out/{job_id}/manifest.json.out", f"out/{job_id}/records.jsonl.out"]
    lines = s3.get_object(Bucket="bkt", Key=f"out/{job_id}/records.jsonl.out")["Body"].read().splitlines()
    first = json.loads(lines[0])
    assert set(first) == {"recordId", "modelInput", "modelOutput"} and first["modelOutput"]["type"] == "message"
    manifest = json.loads(s3.get_object(Bucket="bkt", Key=f"out/{job_id}/manifest.json.out")["Body"].read())
    assert manifest["totalRecordCount"] == 120 and manifest["errorRecordCount"] == 0
    assert emu.ledger()["batches"][0]["job_key"] == "abc"


def test_fewer_records_than_the_minimum_fail_the_job_in_validation(emu, s3, bedrock):
    emu.set_scenario(completion_seconds=1)
    s3.put_object(Bucket="bkt", Key="in/records.jsonl", Body=_records(99))
    arn = _create(bedrock)
    emu.advance(2)
    job = bedrock.get_model_invocation_job(jobIdentifier=arn)
    assert job["status"] == "Failed" and "minimum of 100" in job["message"]


def test_bad_bodies_become_error_records_and_the_job_partially_completes(emu, s3, bedrock):
    emu.set_scenario(completion_seconds=0, bedrock_min_records=1)
    with_model = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 5, "messages": [], "model": "x"}
    s3.put_object(
        Bucket="bkt", Key="in/records.jsonl", Body=_records(2) + _records(1, with_model).replace(b"r0000", b"bad")
    )
    arn = _create(bedrock)
    assert bedrock.get_model_invocation_job(jobIdentifier=arn)["status"] == "PartiallyCompleted"
    body = s3.get_object(Bucket="bkt", Key=f"out/{arn.rsplit('/', 1)[-1]}/records.jsonl.out")["Body"].read()
    bad = next(json.loads(line) for line in body.splitlines() if b'"bad"' in line)
    assert bad["error"]["errorCode"] == 400 and "model" in bad["error"]["errorMessage"] and "modelOutput" not in bad


def test_create_refusals_are_the_ones_botocore_names(emu, s3, bedrock):
    emu.set_scenario(completion_seconds=30, queue_quotas=[{"provider": "bedrock", "concurrent_batches": 1}])
    s3.put_object(Bucket="bkt", Key="in/records.jsonl", Body=_records(100))
    with pytest.raises(ClientError) as unknown:
        _create(bedrock, model="meta.llama3-70b-instruct-v1:0")
    assert unknown.value.response["Error"]["Code"] == "ValidationException"
    first = _create(bedrock, clientRequestToken="t1")
    assert _create(bedrock, name="again", clientRequestToken="t1") == first  # the idempotency token
    with pytest.raises(ClientError) as quota:
        _create(bedrock, name="job2")
    assert quota.value.response["Error"]["Code"] == "ServiceQuotaExceededException"
    with pytest.raises(bedrock.exceptions.ResourceNotFoundException):
        bedrock.get_model_invocation_job(jobIdentifier="abcdefabcdef")
    bedrock.stop_model_invocation_job(jobIdentifier=first)
    emu.advance(1)
    assert bedrock.get_model_invocation_job(jobIdentifier=first)["status"] == "Stopped"
    names = [j["jobName"] for j in bedrock.list_model_invocation_jobs(nameContains="job")["invocationJobSummaries"]]
    assert names == ["job1"]


def test_s3_answers_in_its_own_error_shapes(emu, s3):
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.get_object(Bucket="bkt", Key="nothing")
    with pytest.raises(s3.exceptions.NoSuchBucket):
        s3.list_objects_v2(Bucket="missing")
    for i in range(3):
        s3.put_object(Bucket="bkt", Key=f"p/{i}", Body=b"x")
    pages = list(
        s3.get_paginator("list_objects_v2").paginate(Bucket="bkt", Prefix="p/", PaginationConfig={"PageSize": 2})
    )
    assert [len(page["Contents"]) for page in pages] == [2, 1]
    s3.delete_object(Bucket="bkt", Key="p/0")
    assert s3.list_objects_v2(Bucket="bkt", Prefix="p/")["KeyCount"] == 2


def test_a_request_without_a_signature_is_refused(emu):
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{emu.aws_endpoint_url}/model-invocation-jobs")
    assert refused.value.code == 403
