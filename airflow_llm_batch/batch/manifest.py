"""The manifest: the few kilobytes that travel through XCom from Submit to the Sensor and Results.

It names the batches and where the files are; it never carries items, prompts, outputs or secrets.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from airflow_llm_batch.batch.records import JobKey
from airflow_llm_batch.exceptions import ConfigurationError

SCHEMA_VERSION = 1


@dataclass
class BatchEntry:
    """One provider batch of the job.

    :param chunk: index of the chunk file the batch was created from.
    :param count: requests in the batch.
    :param status: the last status seen (see ``BatchStatus.summary``), ``None`` before any poll.
    :param tokens: the chunk's estimated enqueued tokens (what a queue quota meters; 0: not estimated).
    :param source: what creating the batch again takes (``bytes``, ``model``, chunk file ``uri``,
        Vertex ``table``), should the provider refuse it for capacity (``batch/wave_record.py``).
    """

    batch_id: str
    chunk: int
    count: int
    status: dict[str, Any] | None = None
    tokens: int = 0
    source: dict[str, Any] | None = None


@dataclass
class Manifest:
    """What the Submit task returns (the first wave), and the sensor once every batch ended (``waited``).

    :param work_uri: the folder of this attempt in the work dir (requests, ids, state, results).
    :param deadline: Unix seconds, fixed when the job was first submitted; retries keep it.
    :param pending: chunks not submitted yet (``{"chunk": n, "count": k, "bytes", "model", "tokens",
        "uri": chunk file}``): a queue quota keeps them for a later wave, which the sensor creates
        (``batch/wave_record.py``); at the deadline they become retryable rows.
    :param wave: the number of the last wave of batches created.
    :param queue_quota: the quota the waves are planned under (configured, lowered by refusals).
    :param waited: ``True`` in the sensor's manifest: the batches of every wave, with their last
        statuses. The Results task needs that one when the job had pending chunks.
    """

    job_key: JobKey
    provider: str
    conn_id: str
    model: str
    kind: str
    work_uri: str
    attempt: int
    item_count: int
    batches: list[BatchEntry]
    submitted_at: float
    deadline: float
    has_schema: bool = False
    fingerprint: str = ""
    pending: list[dict[str, Any]] = field(default_factory=list)
    wave: int = 0
    queue_quota: dict[str, Any] = field(default_factory=dict)
    waited: bool = False
    schema_version: int = SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> Manifest:
        if isinstance(data, Manifest):
            return data
        if not isinstance(data, dict) or "job_key" not in data or "batches" not in data:
            raise ConfigurationError(
                "manifest must be the return value of an LLMBatchSubmitOperator "
                f"(got {type(data).__name__}); pass submit_task.output"
            )
        version = data.get("schema_version", SCHEMA_VERSION)
        if version > SCHEMA_VERSION:
            raise ConfigurationError(
                f"manifest schema version {version} is newer than this package understands ({SCHEMA_VERSION})"
            )
        fields = dict(data)
        fields["job_key"] = JobKey.from_dict(fields["job_key"])
        fields["batches"] = [BatchEntry(**entry) for entry in fields["batches"]]
        return cls(**fields)

    @property
    def batch_ids(self) -> list[str]:
        return [entry.batch_id for entry in self.batches]
