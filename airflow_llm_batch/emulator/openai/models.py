"""OpenAI Files and Batches: the state machine behind the emulated API (no HTTP here).

A batch's timeline (status, counts, timestamps at any moment) is ``openai/batch.py``; the queue
quota is ``openai/quota.py``. When a read finds the batch terminal for the first time, its output
and error files are generated and its succeeded items are billed in the ledger, exactly once.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from airflow_llm_batch.emulator.ledger import BatchEntry, job_key_from_tags
from airflow_llm_batch.emulator.openai import lines, responses_api
from airflow_llm_batch.emulator.openai.batch import DAY, Batch, BatchItem, Progress
from airflow_llm_batch.emulator.openai.quota import DEFAULT_ORGANIZATION, batch_load, quota_error
from airflow_llm_batch.emulator.openai.strict import DEFAULT_SERVED_MODELS, check_line
from airflow_llm_batch.emulator.openai.validation import (
    OpenAIError,
    check_create_params,
    check_input_file,
    output_expiry_seconds,
)
from airflow_llm_batch.emulator.quotas import RunningBatch, account_label, digest, first_refusal
from airflow_llm_batch.emulator.scenario import Scenario
from airflow_llm_batch.emulator.state import EmulatorState

PROVIDER = "openai"
BATCH_FILE_TTL = 30 * DAY  # "files with purpose=batch expire after 30 days", outputs likewise
MAX_REQUESTS = 50_000
MAX_BYTES = 200 * 1024 * 1024
UPLOAD_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")


@dataclass
class StoredFile:
    """A file in the Files API; ``content`` is the exact bytes served by ``/content``."""

    id: str
    filename: str
    purpose: str
    created_at: int
    content: bytes
    expires_at: int | None

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.content),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "expires_at": self.expires_at,
            "status_details": None,
        }


class OpenAIService:
    """Files and batches of the emulated OpenAI account. Callers hold ``state.lock``.

    Azure OpenAI (``emulator/azure``) is the same service under another name, with its own paths
    for the endpoints (``url_aliases``) and batches that never expire (``outcome``).
    """

    provider = PROVIDER
    url_aliases: ClassVar[Mapping[str, str]] = {}  # another spelling of an endpoint path (Azure's)

    def __init__(self, state: EmulatorState) -> None:
        self.state = state
        self.files: dict[str, StoredFile] = {}
        self.batches: dict[str, Batch] = {}
        # Output file id -> downloads served so far (scenario openai_short_output_reads).
        self.output_reads: dict[str, int] = {}

    def reset(self) -> None:
        self.files.clear()
        self.batches.clear()
        self.output_reads.clear()

    def settle(self) -> None:
        for batch in self.batches.values():
            self._refresh(batch)

    def outcome(self, scenario: Scenario) -> str:
        """How a batch created now ends (the scenario's ``batch_outcome``)."""
        return scenario.batch_outcome

    def completion_seconds(self, scenario: Scenario) -> float:
        return scenario.completion_seconds

    # Files ---------------------------------------------------------------------------------

    def upload_file(self, filename: str, purpose: str, content: bytes, expires_after: Any = None) -> dict[str, Any]:
        if purpose not in UPLOAD_PURPOSES:
            raise OpenAIError(400, f"Invalid value for 'purpose': {purpose!r}.", param="purpose", code="invalid_value")
        seconds = output_expiry_seconds(expires_after, "expires_after")
        stored = self._store(filename, purpose, content, seconds)
        return stored.to_api()

    def get_file(self, file_id: str) -> StoredFile:
        stored = self.files.get(file_id)
        if stored is None:
            raise OpenAIError(404, f"No such File object: {file_id}", param="id")
        return stored

    def file_content(self, file_id: str) -> bytes:
        """The bytes a download serves: an output file is short on its first N reads if the scenario says so.

        Users report ``completed`` batches whose output holds fewer lines than ``request_counts``
        (issue #12 of this project; openai-python#3071 for output that is absent); the missing lines
        appear on a later read.
        """
        stored = self.get_file(file_id)
        if file_id not in self.output_reads:
            return stored.content
        reads = self.output_reads[file_id]
        self.output_reads[file_id] = reads + 1
        if reads >= self.state.scenario.openai_short_output_reads:
            return stored.content
        rows = stored.content.splitlines(keepends=True)
        return b"".join(rows[: len(rows) // 2])

    def delete_file(self, file_id: str) -> dict[str, Any]:
        self.get_file(file_id)
        del self.files[file_id]
        return {"id": file_id, "object": "file", "deleted": True}

    def list_files(self, purpose: str | None, after: str | None, limit: int, order: str) -> dict[str, Any]:
        ordered = [f for f in self.files.values() if purpose is None or f.purpose == purpose]
        if order == "desc":
            ordered.reverse()
        return _page([f.to_api() for f in ordered], after, limit)

    def _store(self, filename: str, purpose: str, content: bytes, ttl: int | None) -> StoredFile:
        created = int(self.state.now())
        if ttl is None and purpose in ("batch", "batch_output"):
            ttl = BATCH_FILE_TTL
        stored = StoredFile(
            f"file-{uuid.uuid4().hex[:24]}", filename, purpose, created, content, created + ttl if ttl else None
        )
        self.files[stored.id] = stored
        return stored

    # Batches -------------------------------------------------------------------------------

    # Long on purpose: one create call's checks in the order the real service applies them (which
    # refusal wins when several apply), then the accepted batch; split up, that order would be hidden.
    def create_batch(self, body: Any, account: str = "", organization: str | None = None) -> dict[str, Any]:
        """Create a batch for ``account`` (the API key); ``organization`` names it in quota messages."""
        check_create_params(body)
        scenario = self.state.scenario
        if scenario.openai_metadata == "refused" and body.get("metadata") is not None:
            # An OpenAI-compatible host without batch metadata (scenario ``openai_metadata``).
            raise OpenAIError(400, "Unrecognized request argument supplied: metadata", param="metadata")
        source = self.get_file(body["input_file_id"])
        if source.purpose != "batch":
            raise OpenAIError(
                400,
                f"File {source.id} has purpose {source.purpose!r}; a batch needs purpose 'batch'.",
                param="input_file_id",
                code="invalid_value",
            )
        parsed = check_input_file(
            source.content,
            body["endpoint"],
            scenario.max_requests_per_batch or MAX_REQUESTS,
            scenario.max_bytes_per_batch or MAX_BYTES,
            self.url_aliases,
        )
        if scenario.batch_outcome == "failed" and not parsed.errors:
            parsed.add_error("invalid_request", "The input file failed validation (emulated: batch_outcome=failed).")
        load = batch_load(body["endpoint"], parsed.requests)
        refused = None
        if not parsed.errors:
            refusal = first_refusal(
                scenario.quotas_for(self.provider), self.provider, account, parsed.model, load, self._running()
            )
            if refusal is not None:
                refused = quota_error(refusal, organization or DEFAULT_ORGANIZATION)
                parsed.errors.append(refused)
        batch_id = f"batch_{uuid.uuid4().hex}"
        now = self.state.now()
        metadata = body.get("metadata") if scenario.openai_metadata == "kept" else None
        job_key = job_key_from_tags(metadata)
        entry = BatchEntry(
            self.provider,
            batch_id,
            int(now),
            parsed.model,
            len(parsed.requests),
            job_key,
            dict(metadata or {}),
            input_digest=digest(source.content),
            account=account_label(account),
            enqueued_tokens=load.tokens(True),
            refused=refused["code"] if refused else None,
        )
        occurrences = self.state.ledger.record_batch(entry, [custom_id for custom_id, _ in parsed.requests])
        batch = Batch(
            id=batch_id,
            endpoint=body["endpoint"],
            input_file_id=source.id,
            metadata=metadata,
            created_at=now,
            completion_seconds=self.completion_seconds(scenario),
            outcome=self.outcome(scenario),
            model=parsed.model,
            items=_plan_items(scenario, body["endpoint"], parsed.requests, occurrences),
            errors=parsed.errors,
            output_expiry=output_expiry_seconds(body.get("output_expires_after"), "output_expires_after"),
            account=account,
            load=load,
            finalizing_extra=scenario.finalizing_seconds,
        )
        self.batches[batch_id] = batch
        return batch.to_api(self._refresh(batch))

    def retrieve_batch(self, batch_id: str) -> dict[str, Any]:
        batch = self._batch(batch_id)
        return batch.to_api(self._refresh(batch))

    def list_batches(self, after: str | None, limit: int) -> dict[str, Any]:
        newest_first = list(reversed(self.batches.values()))
        return _page([b.to_api(self._refresh(b)) for b in newest_first], after, limit)

    def cancel_batch(self, batch_id: str) -> dict[str, Any]:
        batch = self._batch(batch_id)
        now = self.state.now()
        progress = self._refresh(batch)
        if progress.ended_at is not None:
            raise OpenAIError(
                409,
                f"Cannot cancel a batch with status '{progress.status}'.",
                param="batch_id",
                code="batch_not_cancellable",
            )
        if progress.status != "cancelling":
            batch.cancel_at, batch.cancel_done = now, batch.done_by(now)
        return batch.to_api(self._refresh(batch))

    def _running(self) -> list[RunningBatch]:
        """Batches still in the queue: not ended, and not doomed by a validation or quota error."""
        now = self.state.now()
        return [
            RunningBatch(b.account, b.model, b.load)
            for b in self.batches.values()
            if not b.errors and b.progress(now).ended_at is None
        ]

    def _batch(self, batch_id: str) -> Batch:
        batch = self.batches.get(batch_id)
        if batch is None:
            raise OpenAIError(404, f"No batch found with id '{batch_id}'.", param="batch_id")
        return batch

    def _refresh(self, batch: Batch) -> Progress:
        """The batch's progress now; the first time it is terminal, write its results and bill."""
        progress = batch.progress(self.state.now())
        if progress.ended_at is not None and not batch.finished:
            batch.finished = True
            if progress.status != "failed":
                self._write_results(batch, progress)
        return progress

    def _write_results(self, batch: Batch, progress: Progress) -> None:
        output, errors, billed = [], [], []
        created = int(progress.ended_at or self.state.now())
        for index, item in enumerate(batch.items):
            if index >= progress.done:
                errors.append(lines.dumps(lines.not_run_line(batch.id, item.custom_id, progress.status)))
            elif item.refusal is not None:
                refused = lines.refused_line(batch.id, item.custom_id, item.refusal.status, item.refusal.error())
                errors.append(lines.dumps(refused))
            elif item.error_kind is not None:
                errors.append(lines.dumps(lines.http_error_line(batch.id, item.custom_id, item.error_kind)))
            else:
                answer = responses_api.response_body if batch.endpoint == responses_api.ENDPOINT else None
                line, usage = lines.success_line(
                    batch.id, batch.endpoint, item.custom_id, item.body, item.invalid_output, created, answer
                )
                text = lines.dumps(line)
                output.append(text[: len(text) // 2] if item.malformed_line else text)
                batch.usage.input_tokens += usage.input_tokens
                batch.usage.output_tokens += usage.output_tokens
                billed.append(item.custom_id)
        # Only the error file when every item failed: output_file_id stays null (openai-python#3071).
        if output:
            batch.output_file_id = self._result_file(batch, "output", output).id
            self.output_reads[batch.output_file_id] = 0
        if errors:
            batch.error_file_id = self._result_file(batch, "error", errors).id
        self.state.ledger.record_billed(self.provider, batch.id, job_key_from_tags(batch.metadata), billed)

    def _result_file(self, batch: Batch, kind: str, rows: list[str]) -> StoredFile:
        content = ("\n".join(rows) + "\n").encode()
        return self._store(f"{batch.id}_{kind}.jsonl", "batch_output", content, batch.output_expiry)


def _plan_items(
    scenario: Scenario, endpoint: str, requests: list[tuple[str, dict[str, Any]]], occurrences: list[int]
) -> list[BatchItem]:
    """Each request with its fate, in the shuffled order the batch processes and reports them."""
    served = scenario.openai_served_models or DEFAULT_SERVED_MODELS
    items = []
    for (custom_id, body), seen in zip(requests, occurrences, strict=True):
        refusal = None
        if scenario.strict:
            on_responses = endpoint == responses_api.ENDPOINT
            refusal = responses_api.check_line(body, served) if on_responses else check_line(endpoint, body, served)
        items.append(
            BatchItem(
                custom_id,
                body,
                None if refusal else scenario.item_error(custom_id, seen),
                scenario.has_invalid_output(custom_id, seen),
                scenario.has_malformed_line(custom_id, seen),
                refusal,
            )
        )
    items.sort(key=lambda item: scenario.order_key(item.custom_id))
    return items


def _page(data: list[dict[str, Any]], after: str | None, limit: int) -> dict[str, Any]:
    """One page of a cursor list: the items after ``after`` (an id), ``limit`` of them."""
    start = 0
    if after is not None:
        ids = [row["id"] for row in data]
        if after not in ids:
            raise OpenAIError(
                400, f"Invalid 'after': no object with id {after!r}.", param="after", code="invalid_value"
            )
        start = ids.index(after) + 1
    page = data[start : start + limit]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": start + limit < len(data),
    }
