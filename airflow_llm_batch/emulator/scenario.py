"""The one fault switchboard of the emulator: every knob and every injected fault lives here.

A `Scenario` is a plain dataclass that round-trips through JSON, so the same description works from
a test (``emulator.set_scenario(...)``), over HTTP (``PUT /_emulator/scenario``) and from the CLI
(``--scenario file.json`` or flags). Provider modules never invent their own knobs: they read the
scenario and ask the helpers below which items fail and which requests get an HTTP fault.

Every decision is deterministic. An item's fate is a hash of ``seed`` and its ``custom_id``, never a
random draw, so a failing test fails the same way on every run and on every machine.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
from dataclasses import dataclass, field
from typing import Any

from airflow_llm_batch.emulator.quotas import QUOTA_PROVIDERS, QueueQuota, QuotaError, quota_from_dict

# The retryable and permanent item-level error kinds of the package's error taxonomy that a
# provider can report per item (ARCHITECTURE.md, "The records"). The order is the order in which
# an item's single draw is matched against the cumulative rates.
ITEM_ERROR_KINDS: tuple[str, ...] = (
    "rate_limited",
    "server_error",
    "invalid_request",
    "content_filtered",
    "context_length",
)
BATCH_OUTCOMES: tuple[str, ...] = ("completed", "failed", "expired", "cancelled")
OPENAI_METADATA_MODES: tuple[str, ...] = ("kept", "dropped", "refused")
FAULT_STATUSES: tuple[int, ...] = (429, 500, 503)


class ScenarioError(ValueError):
    """A scenario field has a value the emulator cannot act on; the message names the field."""


@dataclass
class HttpFault:
    """Answer matching provider requests with an HTTP error before the handler runs.

    :param route: regular expression searched in the full request path (``/openai/v1/batches$``).
    :param status: 429, 500 or 503; the body has the provider's own error shape.
    :param method: HTTP method to match (``POST``); None matches every method.
    :param rate: share of matching requests that fail, spread evenly: 1.0 fails all, 0.5 fails the
        1st, 3rd, 5th... A counter decides, not chance, so the sequence is reproducible.
    :param count: fail at most this many times, then let requests through (None: no limit).
    """

    route: str
    status: int
    method: str | None = None
    rate: float = 1.0
    count: int | None = None

    def __post_init__(self) -> None:
        if self.status not in FAULT_STATUSES:
            raise ScenarioError(f"http_faults: status {self.status} is not one of {FAULT_STATUSES}")
        _check_rate("http_faults.rate", self.rate)
        if self.count is not None and self.count < 0:
            raise ScenarioError("http_faults.count must be >= 0 or null")
        try:
            re.compile(self.route)
        except re.error as error:
            raise ScenarioError(f"http_faults.route {self.route!r} is not a regular expression: {error}") from error

    def matches(self, method: str, path: str) -> bool:
        """Whether this fault applies to a request, before the rate and count are consulted."""
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return re.search(self.route, path) is not None


@dataclass
class Scenario:
    """How the emulated providers behave. Every field has a default that gives a healthy batch.

    :param completion_seconds: time from create to a terminal status. The first tenth is
        ``validating``, the last tenth ``finalizing``; progress grows linearly in between.
    :param seed: salt of every deterministic choice (item fates, output order, enum picks).
    :param item_errors: error kind -> share of items that fail with it; kinds are
        ``ITEM_ERROR_KINDS``. Rates add up: ``{"rate_limited": 0.1, "server_error": 0.1}`` fails 20%.
    :param repeat_item_errors: when False (default) a resubmitted ``custom_id`` draws afresh, so a
        retry round can heal; when True an item that failed fails every time it is sent.
    :param invalid_output_rate: share of succeeded structured-output items whose text violates the
        schema or is not JSON at all (the package's ``invalid_output`` kind).
    :param malformed_line_rate: share of result lines written truncated, as a torn download would.
    :param batch_outcome: ``completed``, ``failed`` (input validation fails), ``expired`` (the first
        half of the items done, the rest expired) or ``cancelled`` (cancelled externally halfway).
    :param http_faults: HTTP errors injected before the handler, see `HttpFault`.
    :param api_key: the only key accepted; None accepts any non-empty key.
    :param max_requests_per_batch: override the provider's request-count limit (None: its default).
    :param max_bytes_per_batch: override the provider's input-size limit (None: its default).
    :param download_delay_seconds: pause before serving result file contents (slow downloads).
    :param dropped_downloads: the first N result downloads (any provider) send half of the body and
        then drop the connection, as a reset mid-download would.
    :param queue_quotas: per account and model limits on enqueued tokens, enqueued requests and
        concurrent batches, refused the way each provider refuses (see `quotas.QueueQuota`).
        Checked at each create, so changing them at runtime shrinks or grows capacity mid-job.
    :param vertex_claude_concurrent_jobs: Vertex AI's default limit of running batch jobs of
        Claude models per project (4, the documented default); None lifts it.
    :param create_429: provider -> how many batch creates to answer 429 in the provider's quota
        shape before letting them through (null: every create). Counted from the last scenario change.
    :param gemini_late_output_polls: a Gemini batch that ended ``SUCCEEDED`` shows no output (no
        responses file, no inlined responses) on its first N reads after the end.
    :param gemini_late_output_seconds: ...and for this many seconds after its end.
    :param openai_short_output_reads: the first N downloads of each OpenAI output file serve only
        its first half of lines (whole lines), though ``request_counts`` already say completed.
    :param finalizing_seconds: OpenAI batches stay in ``finalizing`` this much longer before
        ``completed`` (snapshotted at create, like ``completion_seconds``).
    :param strict: refuse request bodies the way each real service does (OpenAI: 400/404 lines in
        the error file; Anthropic: ``errored`` results; Gemini: 400 at create). False answers every
        well-formed batch, whatever its bodies hold.
    :param openai_served_models: the OpenAI models the emulated account serves (``fnmatch``
        patterns); other models get 404 lines in strict mode. None: ``openai/strict.py``'s default.
    :param openai_metadata: how the emulated OpenAI treats batch ``metadata``: ``kept`` (OpenAI
        itself), or as an OpenAI-compatible host without it (issue 15; kluster.ai's docs list the
        OpenAI properties it does not use): ``dropped`` (accepted, never shown again: batches list
        with ``metadata: null``) or ``refused`` (400 "Unrecognized request argument supplied: metadata").
    :param bedrock_min_records: the fewest records a Bedrock batch job runs with (AWS's quota
        "Minimum number of records per batch inference job", 100 by default); below it the job fails
        validation. Tests with fewer items lower it.
    :param gemini_camel_case_file_lines: strict mode also refuses snake_case field names in Gemini
        input-file lines (off by default: proto JSON accepts both spellings; see docs/emulator.md).
    """

    completion_seconds: float = 3.0
    seed: int = 0
    item_errors: dict[str, float] = field(default_factory=dict)
    repeat_item_errors: bool = False
    invalid_output_rate: float = 0.0
    malformed_line_rate: float = 0.0
    batch_outcome: str = "completed"
    http_faults: list[HttpFault] = field(default_factory=list)
    api_key: str | None = None
    max_requests_per_batch: int | None = None
    max_bytes_per_batch: int | None = None
    download_delay_seconds: float = 0.0
    dropped_downloads: int = 0
    queue_quotas: list[QueueQuota] = field(default_factory=list)
    vertex_claude_concurrent_jobs: int | None = 4
    create_429: dict[str, int | None] = field(default_factory=dict)
    gemini_late_output_polls: int = 0
    gemini_late_output_seconds: float = 0.0
    openai_short_output_reads: int = 0
    finalizing_seconds: float = 0.0
    strict: bool = True
    openai_served_models: list[str] | None = None
    gemini_camel_case_file_lines: bool = False
    openai_metadata: str = "kept"
    bedrock_min_records: int = 100

    def __post_init__(self) -> None:
        self.http_faults = [f if isinstance(f, HttpFault) else _fault_from_dict(f) for f in self.http_faults]
        try:
            self.queue_quotas = [quota_from_dict(q) for q in self.queue_quotas]
        except QuotaError as error:
            raise ScenarioError(str(error)) from error
        self._check_edges()
        if self.completion_seconds < 0:
            raise ScenarioError("completion_seconds must be >= 0")
        if self.download_delay_seconds < 0:
            raise ScenarioError("download_delay_seconds must be >= 0")
        if self.dropped_downloads < 0:
            raise ScenarioError("dropped_downloads must be >= 0")
        for kind, rate in self.item_errors.items():
            if kind not in ITEM_ERROR_KINDS:
                raise ScenarioError(f"item_errors: unknown kind {kind!r}; use one of {ITEM_ERROR_KINDS}")
            _check_rate(f"item_errors.{kind}", rate)
        _check_rate("invalid_output_rate", self.invalid_output_rate)
        _check_rate("malformed_line_rate", self.malformed_line_rate)
        if self.openai_metadata not in OPENAI_METADATA_MODES:
            raise ScenarioError(f"openai_metadata {self.openai_metadata!r} is not one of {OPENAI_METADATA_MODES}")
        if self.batch_outcome not in BATCH_OUTCOMES:
            raise ScenarioError(f"batch_outcome {self.batch_outcome!r} is not one of {BATCH_OUTCOMES}")
        for name in ("max_requests_per_batch", "max_bytes_per_batch"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ScenarioError(f"{name} must be >= 1 or null")

    def _check_edges(self) -> None:
        for name in ("gemini_late_output_polls", "openai_short_output_reads"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise ScenarioError(f"{name} must be an integer >= 0")
        for name in ("gemini_late_output_seconds", "finalizing_seconds"):
            if getattr(self, name) < 0:
                raise ScenarioError(f"{name} must be >= 0")
        if not isinstance(self.bedrock_min_records, int) or self.bedrock_min_records < 1:
            raise ScenarioError("bedrock_min_records must be an integer >= 1")
        limit = self.vertex_claude_concurrent_jobs
        if limit is not None and (not isinstance(limit, int) or limit < 0):
            raise ScenarioError("vertex_claude_concurrent_jobs must be an integer >= 0 or null")
        if not isinstance(self.create_429, dict):
            raise ScenarioError("create_429 is an object: provider -> count (null: every create)")
        for provider, count in self.create_429.items():
            if provider not in QUOTA_PROVIDERS:
                raise ScenarioError(f"create_429: provider {provider!r} is not one of {QUOTA_PROVIDERS}")
            if count is not None and (not isinstance(count, int) or count < 0):
                raise ScenarioError(f"create_429.{provider} must be an integer >= 0 or null")

    def quotas_for(self, provider: str) -> list[QueueQuota]:
        """The queue quotas of one provider, Vertex's Claude default included."""
        quotas = [quota for quota in self.queue_quotas if quota.provider == provider]
        if provider == "vertex" and self.vertex_claude_concurrent_jobs is not None:
            quotas.append(QueueQuota("vertex", model="claude*", concurrent_batches=self.vertex_claude_concurrent_jobs))
        return quotas

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scenario:
        """Build from JSON; unknown fields are an error so a typo never silently does nothing."""
        if not isinstance(data, dict):
            raise ScenarioError("a scenario is a JSON object")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ScenarioError(f"unknown scenario field(s) {unknown}; known fields: {sorted(known)}")
        try:
            return cls(**data)
        except TypeError as error:
            raise ScenarioError(str(error)) from error

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, the same shape `from_dict` accepts."""
        return dataclasses.asdict(self)

    def updated(self, **fields: Any) -> Scenario:
        """A copy with some fields changed, validated like a new scenario."""
        return Scenario.from_dict({**self.to_dict(), **fields})

    def item_error(self, custom_id: str, occurrence: int = 0) -> str | None:
        """The error kind this item fails with, or None if it succeeds.

        :param occurrence: how many earlier batches carried the same ``custom_id`` (from the
            ledger); it salts the draw unless ``repeat_item_errors`` is set.
        """
        if not self.item_errors:
            return None
        draw = self._draw("item_error", custom_id, occurrence)
        threshold = 0.0
        for kind in ITEM_ERROR_KINDS:
            threshold += self.item_errors.get(kind, 0.0)
            if draw < threshold:
                return kind
        return None

    def has_invalid_output(self, custom_id: str, occurrence: int = 0) -> bool:
        """Whether this item's structured output comes back broken."""
        return self._draw("invalid_output", custom_id, occurrence) < self.invalid_output_rate

    def has_malformed_line(self, custom_id: str, occurrence: int = 0) -> bool:
        """Whether this item's result line is written truncated."""
        return self._draw("malformed_line", custom_id, occurrence) < self.malformed_line_rate

    def order_key(self, custom_id: str) -> float:
        """Sort key that shuffles result lines reproducibly (real output is not in input order)."""
        return unit_hash(self.seed, "order", custom_id)

    def _draw(self, purpose: str, custom_id: str, occurrence: int) -> float:
        if occurrence and not self.repeat_item_errors:
            return unit_hash(self.seed, purpose, custom_id, str(occurrence))
        return unit_hash(self.seed, purpose, custom_id)


class FaultCounters:
    """Counts requests per `HttpFault` so that rate and count decide without randomness.

    Lives beside the scenario in `EmulatorState` and is cleared whenever the scenario is replaced.
    Callers hold the state's lock.
    """

    def __init__(self) -> None:
        self._matched: dict[int, int] = {}
        self._fired: dict[int, int] = {}
        self.downloads_dropped = 0
        self.creates_refused: dict[str, int] = {}

    def clear(self) -> None:
        self._matched.clear()
        self._fired.clear()
        self.downloads_dropped = 0
        self.creates_refused.clear()

    def refuse_this_create(self, scenario: Scenario, provider: str) -> bool:
        """Whether ``create_429`` answers this batch create with 429 (counts it)."""
        if provider not in scenario.create_429:
            return False
        limit = scenario.create_429[provider]
        refused = self.creates_refused.get(provider, 0)
        if limit is not None and refused >= limit:
            return False
        self.creates_refused[provider] = refused + 1
        return True

    def drop_this_download(self, scenario: Scenario) -> bool:
        """Whether this result download is to be cut off halfway (counts it)."""
        if self.downloads_dropped >= scenario.dropped_downloads:
            return False
        self.downloads_dropped += 1
        return True

    def pick(self, faults: list[HttpFault], method: str, path: str) -> HttpFault | None:
        """The first fault that fires for this request, counting it; None lets the request through."""
        for index, fault in enumerate(faults):
            if not fault.matches(method, path):
                continue
            seen = self._matched.get(index, 0) + 1
            self._matched[index] = seen
            fired = self._fired.get(index, 0)
            if fault.count is not None and fired >= fault.count:
                continue
            # The n-th match fires when ceil(n * rate) steps up: rate 1 fires always, 0.5 every
            # other request starting with the first, 0.1 the 1st, 11th, 21st...
            if _steps(seen, fault.rate) > _steps(seen - 1, fault.rate):
                self._fired[index] = fired + 1
                return fault
        return None


def unit_hash(seed: int, *parts: str) -> float:
    """A number in [0, 1) fixed by the seed and the parts; the emulator's only source of 'chance'."""
    digest = hashlib.sha256("\x1f".join([str(seed), *parts]).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _steps(count: int, rate: float) -> int:
    # Rounding first keeps 0.1 * 10 == 1.0 from becoming 1.0000000000000002 and firing early.
    return math.ceil(round(count * rate, 9))


def _check_rate(name: str, rate: float) -> None:
    if not isinstance(rate, int | float) or not 0.0 <= rate <= 1.0:
        raise ScenarioError(f"{name} must be a number in [0, 1], got {rate!r}")


def _fault_from_dict(data: Any) -> HttpFault:
    if not isinstance(data, dict):
        raise ScenarioError(f"http_faults entries are objects, got {data!r}")
    try:
        return HttpFault(**data)
    except TypeError as error:
        raise ScenarioError(f"http_faults entry {data!r}: {error}") from error
