"""The pre-flight check of a job's requests: built once per job, asked once per template and per item.

Bodies rendered from one template differ only in the prompt text, which every SDK type accepts
as a string: so the shape (SDK types, model rules) is checked once, on the body every item's
request is built from, and each item only where it varies, its size (``check_size``: one
comparison per item). Bodies given whole by the items (``body_field``) are checked one by one.

Context size: a request's input tokens are estimated as its line's bytes / ``BYTES_PER_TOKEN``
(4, the English average; no tokenizer ships with this package's dependencies). Code, JSON and
non-Latin text have fewer bytes per token, so the estimate is low for them and a refusal is never
premature there; text with long runs of spaces or repeated characters can be over-estimated:
raise the window with ``preflight={"models": {...}}`` or skip ``context_window``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from airflow_llm_batch.batch.backends.base import BatchBackend, RequestSpec
from airflow_llm_batch.batch.preflight.models import (
    MODELS_AS_OF,
    RULES,
    ModelFacts,
    ModelTable,
    openai_rules,
    output_limit_problem,
    strict_schema_problems,
)
from airflow_llm_batch.batch.preflight.responses import responses_rules
from airflow_llm_batch.batch.preflight.sdk_types import BodyType, body_type
from airflow_llm_batch.batch.pricing import BYTES_PER_TOKEN
from airflow_llm_batch.batch.records import Kind
from airflow_llm_batch.exceptions import ConfigurationError, InvalidInputError

log = logging.getLogger(__name__)

NEAR_FRACTION = 0.9  # of the context window: reported, not refused
NEAR_SHOWN = 5


@dataclass(frozen=True)
class PreflightSettings:
    """How the check runs: on or off, rules skipped, model rows overridden or added.

    Given as the operators' ``preflight=`` argument: ``False`` switches the whole check off,
    ``{"skip": ["reasoning_temperature"], "models": {"my-model": {"context_window": 32000}}}``
    keeps it on with changes. The rule names are the keys of :data:`~.models.RULES`.
    """

    enabled: bool = True
    skip: frozenset[str] = frozenset()
    models: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @classmethod
    def coerce(cls, value: Any) -> PreflightSettings:
        if value is None or value is True:
            return cls()
        if value is False:
            return cls(enabled=False)
        if isinstance(value, PreflightSettings):
            return value
        if not isinstance(value, Mapping) or set(value) - {"skip", "models"}:
            raise ConfigurationError(
                f'preflight must be True, False or {{"skip": [rule, ...], "models": {{model: {{...}}}}}}; got {value!r}'
            )
        skip = frozenset(value.get("skip") or ())
        unknown = sorted(skip - set(RULES))
        if unknown:
            raise ConfigurationError(f"preflight skip: unknown rule(s) {unknown}; the rules are {sorted(RULES)}")
        return cls(skip=skip, models=dict(value.get("models") or {}))


@dataclass
class SizeReport:
    """Requests near the context window (reported, not refused) and the largest estimate seen."""

    near: list[tuple[str, int]] = field(default_factory=list)
    near_count: int = 0
    largest_tokens: int = 0


class Preflight:
    """The check of one job's requests, set up once from the backend, the spec and the settings."""

    def __init__(self, backend: BatchBackend, spec: RequestSpec, settings: PreflightSettings | None = None) -> None:
        self.settings = settings = settings or PreflightSettings()
        self.backend, self.spec = backend, spec
        self._endpoint = backend.request_endpoint(spec)  # OpenAI: chat completions or Responses
        self._format = backend.request_format or backend.provider  # OpenAI's shape on compatible hosts too
        self.enabled = settings.enabled
        self._table = ModelTable(settings.models)
        self._body_type: BodyType | bool | None = False  # False: not looked up yet
        self._unknown_logged: set[str] = set()
        self._template_checked = False
        self.sizes = SizeReport()
        facts = self._facts(spec.model) if settings.enabled else None
        window = facts.context_window if facts and settings.enabled and "context_window" not in settings.skip else 0
        # Byte sizes at which a request line is near / over the window: one comparison per item.
        self._window = window
        self._refuse_bytes = window * BYTES_PER_TOKEN if window and not (facts and facts.truncates) else None
        self._near_bytes = int(window * NEAR_FRACTION) * BYTES_PER_TOKEN if window else None
        # The pass compares each line's length with this before calling :meth:`check_size`.
        self.size_threshold = self._near_bytes if self._near_bytes is not None else sys.maxsize

    # The shape ----------------------------------------------------------------------------------
    def check_template(self) -> None:
        """Every item's body comes from the template, differing only in the prompt: check it once."""
        if self.enabled and not self._template_checked:
            self.check_shared_body(self.backend.build_body(self.spec, "(the rendered prompt)"))
            self._template_checked = True

    def check_shared_body(self, body: Mapping[str, Any]) -> None:
        """The body every item's request is built from; its problems are every item's."""
        if not self.enabled:
            return
        problems = self.body_problems(body, str(body.get("model") or self.spec.model))
        if problems:
            raise InvalidInputError([f"every item: {problem}" for problem in problems])

    def check_item_body(self, body: Mapping[str, Any]) -> str | None:
        """A body given by an item (``body_field``): its first problem, or ``None``."""
        if not self.enabled:
            return None
        model = str(body.get("model") or self.spec.model)
        if model != self.spec.model and "model_kind" not in self.settings.skip:
            try:
                self.backend.check_model(replace(self.spec, model=model))
            except ConfigurationError as err:
                return f"field 'model': {err}"
        problems = self.body_problems(body, model)
        return "; ".join(problems) if problems else None

    def body_problems(self, body: Mapping[str, Any], model: str) -> list[str]:
        """Every problem of one body, each naming its field and what to change."""
        skip = self.settings.skip
        found: list[str] = []
        judged = self._type()
        if judged is not None and "sdk_types" not in skip:
            for problem in judged.validate(body):
                found.append(
                    f"field '{problem.path}' {problem.message}{self._origin(problem.path)} (judged by {judged.judge})"
                )
        facts = self._facts(model)
        rules: list[tuple[str, str]] = []
        if self._format == "openai" and self._endpoint == "/v1/responses":
            rules += responses_rules(body, facts, skip)
        elif self._format == "openai" and self.spec.kind is Kind.CHAT:
            if facts is not None:
                rules += openai_rules(body, facts, skip)
            if "strict_schema" not in skip:
                rules += strict_schema_problems(body)
        if facts is not None and "max_output" not in skip:
            limit = output_limit_problem(body, facts)
            rules += [limit] if limit else []
        found += [f"field '{name}' {message}{self._origin(name)} (model {model})" for name, message in rules]
        return found

    # The size -----------------------------------------------------------------------------------
    def check_size(self, user_id: str, line_bytes: int) -> str | None:
        """An item's request line against the context window: a problem when over, noted when near."""
        near = self._near_bytes
        if near is None or line_bytes <= near:
            return None
        tokens = -(-line_bytes // BYTES_PER_TOKEN)
        if self._refuse_bytes is not None and line_bytes > self._refuse_bytes:
            return (
                f"its request is about {tokens:,} tokens ({line_bytes:,} bytes / {BYTES_PER_TOKEN} bytes per "
                f"token), above {self.spec.model}'s context window of {self._window:,} tokens; shorten or split "
                "the item's text"
            )
        sizes = self.sizes
        sizes.near_count += 1
        sizes.largest_tokens = max(sizes.largest_tokens, tokens)
        if len(sizes.near) < NEAR_SHOWN:
            sizes.near.append((user_id, tokens))
        return None

    def report(self) -> None:
        """Log the requests near the window (after the pass, once)."""
        sizes = self.sizes
        if sizes.near_count:
            shown = ", ".join(f"'{user_id}' (~{tokens:,})" for user_id, tokens in sizes.near)
            log.warning(
                "%d request(s) are near %s's context window of %s tokens (estimated at %d bytes per token): %s. "
                "They are submitted; an answer may be cut short.",
                sizes.near_count,
                self.spec.model,
                f"{self._window:,}",
                BYTES_PER_TOKEN,
                shown,
            )

    # Helpers ------------------------------------------------------------------------------------
    def _type(self) -> BodyType | None:
        if self._body_type is False:
            placement = "gemini_field_placement" not in self.settings.skip
            self._body_type = body_type(self._format, self.spec.kind, self._endpoint, placement=placement)
            if self._body_type is None:
                log.info("No SDK request type to check %s bodies against: skipped", self.backend.provider)
        return self._body_type if isinstance(self._body_type, BodyType) else None

    def _facts(self, model: str) -> ModelFacts | None:
        facts = self._table.facts(model)
        if facts is None and model not in self._unknown_logged:
            self._unknown_logged.add(model)
            log.info(
                "Model %r is not in the pre-flight model table (as of %s): its context window and model rules are "
                "not checked; add it with preflight={'models': {%r: {'context_window': ...}}}",
                model,
                MODELS_AS_OF,
                model,
            )
        return facts

    def _origin(self, path: str) -> str:
        top = path.split(".", 1)[0].split("[", 1)[0]
        return " (set in parameters=)" if top in self.spec.parameters else ""
