"""Structured output: one ``response_schema`` argument for every provider, and its validation.

A user passes a JSON schema dict or a pydantic model class. Each backend turns :class:`ResponseSchema`
into its provider's native form; the results step validates every returned object against it, and
an answer that does not parse or validate becomes an ``invalid_output`` row (retryable) that keeps
the raw text for diagnosis.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from airflow_llm_batch.exceptions import ConfigurationError

_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True)
class ResponseSchema:
    """A JSON schema with the name providers ask for (OpenAI requires ``^[a-zA-Z0-9_-]{1,64}$``)."""

    name: str
    schema: dict[str, Any]

    @classmethod
    def coerce(cls, value: Any) -> ResponseSchema | None:
        """Accept ``None``, a schema dict, a pydantic model class, or a ResponseSchema."""
        if value is None or isinstance(value, ResponseSchema):
            return value
        if isinstance(value, dict):
            schema = value
            name = str(value.get("title") or "response")
        elif hasattr(value, "model_json_schema"):
            schema = value.model_json_schema()
            name = getattr(value, "__name__", "response")
        else:
            raise ConfigurationError(
                f"response_schema must be a JSON schema dict or a pydantic model class, not {type(value).__name__}"
            )
        if schema.get("type", "object") != "object":
            raise ConfigurationError('response_schema must describe a JSON object ("type": "object")')
        _check_schema(schema)
        return cls(name=_NAME_UNSAFE.sub("_", name)[:64] or "response", schema=schema)

    def validator(self) -> OutputValidator:
        return OutputValidator(self.schema)


def _check_schema(schema: dict[str, Any]) -> None:
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as err:
        raise ConfigurationError(f"response_schema is not a valid JSON schema: {err.message}") from err


class OutputValidator:
    """Parses a model's text and validates it; built once per results run, used per line."""

    def __init__(self, schema: dict[str, Any]) -> None:
        import msgspec  # a dependency of Airflow's task SDK, so already loaded in a worker
        from jsonschema import Draft202012Validator

        from airflow_llm_batch.batch.quick_schema import compile_check
        from airflow_llm_batch.batch.typed_output import compile_output_type

        self._validator = Draft202012Validator(schema)
        # The fast paths of a million-line results run; each answers only when it is sure.
        # msgspec decodes JSON exactly as ``json`` does (big integers too, unlike orjson) and
        # refuses only what ``json`` would refuse or read differently (NaN, lone surrogates).
        self._decode = msgspec.json.Decoder().decode
        self._decode_errors = (msgspec.DecodeError, ValueError, RecursionError)
        self._quick_check = compile_check(schema)
        self._typed = compile_output_type(schema)

    def stored_texts(self, texts: list[str | None]) -> list[str | None]:
        """For a block of model texts: each text itself where it is surely valid and already the JSON
        text a results file stores for it, else ``None``; the caller then takes :meth:`parse`.

        The columnar path of the Results task; see ``typed_output.py`` for why that is exact.
        """
        if self._typed is None:
            return [None] * len(texts)
        return self._typed.stored_texts(texts)

    def parse(self, text: str | None) -> tuple[Any, str | None]:
        """Return ``(object, None)`` when valid, or ``(None, reason)`` when it is not."""
        stripped = text.strip() if text is not None else ""
        if not stripped:
            return None, "the model returned no text"
        json_text = _strip_code_fence(stripped) if stripped[0] == "`" else stripped
        try:
            value = self._decode(json_text)
        except self._decode_errors:
            try:
                value = json.loads(json_text)
            except json.JSONDecodeError as err:
                return None, f"not valid JSON ({err.msg} at char {err.pos})"
        if self._quick_check is not None and self._quick_check(value):
            return value, None
        error = next(iter(self._validator.iter_errors(value)), None)
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "(root)"
            return None, f"does not match the response schema at {where}: {error.message}"
        return value, None


def _strip_code_fence(text: str) -> str:
    """Some models wrap JSON in a Markdown fence even when asked for JSON; accept that."""
    stripped = text.strip()
    if stripped.startswith("```") and stripped.endswith("```"):
        body = stripped[3:-3]
        return body.split("\n", 1)[1] if "\n" in body else body
    return stripped
