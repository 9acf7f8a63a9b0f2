"""The emulator's fake LLM (not a real model): deterministic, provider-neutral, instant.

Every provider module answers through these functions, so one prompt gets the same answer from the
emulated OpenAI, Anthropic and Gemini. Answers are pure functions of their input (no clock, no
randomness): a test can compute the expected reply itself, and a DAG run against the emulator is
reproducible.

- `chat` returns compact JSON that satisfies the requested JSON schema (pydantic's
  ``model_json_schema()`` with ``$defs``/``$ref`` included), or a short summary without one.
- `broken_output` returns text that a schema check must reject (the ``invalid_output`` fault).
- `embed` returns a unit-length vector; texts sharing words point in similar directions.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

DEFAULT_DIMENSIONS = 256
SUMMARY_WORDS = 12
PHRASE_WORDS = 5
# Deeper than this, optional properties are left out and arrays get only their minimum length:
# self-referencing pydantic models (a tree of nodes) would otherwise recurse forever.
MAX_DEPTH = 8
_FORMAT_SAMPLES = {
    "date": "2024-01-01",
    "date-time": "2024-01-01T00:00:00Z",
    "time": "00:00:00",
    "email": "user@example.com",
    "uri": "https://example.com/",
    "url": "https://example.com/",
    "hostname": "example.com",
    "ipv4": "192.0.2.1",
}


@dataclass(frozen=True)
class ModelReply:
    """One answer of the model.

    :param text: the assistant message content.
    :param input_tokens: ceil(chars / 4) of system + user text.
    :param output_tokens: ceil(chars / 4) of ``text``.
    :param finish_reason: ``stop``, or ``length`` when ``max_tokens`` cut the text.
    """

    text: str
    input_tokens: int
    output_tokens: int
    finish_reason: str


def count_tokens(text: str) -> int:
    """The emulator's tokenizer: four characters a token, at least one token."""
    return max(1, math.ceil(len(text) / 4))


def chat(
    system: str | None, user: str, schema: dict[str, Any] | None = None, max_tokens: int | None = None
) -> ModelReply:
    """Answer one chat request: JSON satisfying ``schema`` if given, else a short summary."""
    if schema is not None:
        text = json.dumps(structured_value(schema, user), separators=(",", ":"), ensure_ascii=False)
    else:
        text = summarize(user)
    finish_reason = "stop"
    if max_tokens is not None and count_tokens(text) > max_tokens:
        text = text[: max(0, max_tokens) * 4]
        finish_reason = "length"
    input_tokens = count_tokens((system or "") + user)
    return ModelReply(text, input_tokens, count_tokens(text), finish_reason)


def summarize(user: str) -> str:
    """The first words of the text, as a 'summary' a test can predict."""
    return "Summary: " + " ".join(user.split()[:SUMMARY_WORDS])


def structured_value(schema: dict[str, Any], user: str) -> Any:
    """A JSON value that satisfies ``schema``, derived from the user text."""
    return _SchemaFiller(schema, user).value(schema, "$", 0)


def broken_output(schema: dict[str, Any] | None, user: str = "") -> str:
    """Text that fails a structured-output check, as a misbehaving model would produce.

    Half of the items (by a hash of the text) get valid JSON with a required property missing, the
    others truncated JSON; schemas without required properties always get truncated JSON.
    """
    value = structured_value(schema, user) if schema is not None else {"summary": summarize(user)}
    required = _SchemaFiller(schema, user).required_of_root() if schema is not None else []
    if isinstance(value, dict) and required and _stable_int("broken", user) % 2 == 0:
        value.pop(required[0], None)
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    truncated = text[: max(1, len(text) // 2)]
    try:
        json.loads(truncated)
    except ValueError:
        return truncated
    return "{" + truncated  # a cut number such as "12" -> "1" would still parse


def embed(text: str, dimensions: int = DEFAULT_DIMENSIONS) -> list[float]:
    """A unit-length vector: the normalized sum of one fixed random vector per word."""
    if dimensions < 1:
        raise ValueError(f"dimensions must be >= 1, got {dimensions}")
    words = re.findall(r"\w+", text.lower()) or [text]
    total = [0.0] * dimensions
    for word in words:
        for index, component in enumerate(_word_vector(word, dimensions)):
            total[index] += component
    norm = math.sqrt(sum(component * component for component in total)) or 1.0
    return [component / norm for component in total]


@lru_cache(maxsize=50_000)
def _word_vector(word: str, dimensions: int) -> tuple[float, ...]:
    generator = random.Random(_stable_int("word", word))
    return tuple(generator.gauss(0.0, 1.0) for _ in range(dimensions))


@lru_cache(maxsize=4096)
def _mention_pattern(value: str) -> re.Pattern[str]:
    """Whole words of an enum value, any case, plural allowed; ``_`` and ``-`` match spaces too."""
    word = r"[\s_-]+".join(re.escape(part) for part in re.split(r"[\s_-]+", value.strip()))
    return re.compile(rf"(?<!\w){word}(?:e?s)?(?!\w)", flags=re.IGNORECASE)


def _stable_int(*parts: str) -> int:
    """A hash that, unlike ``hash()``, is the same in every process."""
    return int.from_bytes(hashlib.sha256("\x1f".join(parts).encode()).digest()[:8], "big")


class _SchemaFiller:
    """Walks a JSON schema and builds a value that satisfies it.

    Supported: ``$ref`` into ``$defs``/``definitions``, ``const``, ``enum``, ``anyOf``/``oneOf``
    (first non-null option), ``allOf`` (merged), type lists, objects, arrays (``minItems``,
    ``maxItems``, ``prefixItems``), string formats and lengths, numeric bounds and ``multipleOf``.
    Not supported: ``pattern`` (left unsatisfied: no regex inversion here).
    """

    def __init__(self, root: dict[str, Any], user: str) -> None:
        self.root = root
        self.user = user
        self.phrase = " ".join(user.split()[:PHRASE_WORDS]) or "text"
        self._expanding: list[str] = []

    def required_of_root(self) -> list[str]:
        schema = self.resolve(self.root)
        return list(schema.get("required", []))

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        seen = 0
        while "$ref" in schema and seen < 32:
            siblings = {k: v for k, v in schema.items() if k != "$ref"}
            target = self._follow(schema["$ref"])
            schema = {**target, **siblings}
            seen += 1
        if "allOf" in schema:
            merged = {k: v for k, v in schema.items() if k != "allOf"}
            for part in schema["allOf"]:
                part = self.resolve(part)
                merged.setdefault("properties", {}).update(part.get("properties", {}))
                merged["required"] = [*merged.get("required", []), *part.get("required", [])]
                merged.update({k: v for k, v in part.items() if k not in ("properties", "required")})
            schema = merged
        return schema

    def _follow(self, ref: str) -> dict[str, Any]:
        if not ref.startswith("#"):
            raise ValueError(f"only local $ref are supported, got {ref!r}")
        node: Any = self.root
        for token in [t for t in ref[1:].split("/") if t]:
            node = node[token.replace("~1", "/").replace("~0", "~")]
        return dict(node)

    def value(self, schema: dict[str, Any] | bool, path: str, depth: int) -> Any:
        if isinstance(schema, bool):
            return self.phrase
        ref = schema.get("$ref")
        if isinstance(ref, str):
            self._expanding.append(ref)
            try:
                return self._value_of(self.resolve(schema), path, depth)
            finally:
                self._expanding.pop()
        return self._value_of(self.resolve(schema), path, depth)

    def _recursive(self, schema: Any) -> bool:
        """Whether ``schema`` leads back into a ``$ref`` that is being expanded right now."""
        if not isinstance(schema, dict):
            return False
        if schema.get("$ref") in self._expanding:
            return True
        options = [schema.get("items"), *schema.get("anyOf", []), *schema.get("oneOf", [])]
        return any(self._recursive(option) for option in options if option is not None)

    def _value_of(self, schema: dict[str, Any], path: str, depth: int) -> Any:
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            return self._enum(schema["enum"], path)
        for key in ("anyOf", "oneOf"):
            if key in schema:
                options = [o for o in schema[key] if isinstance(o, dict)]
                usable = [o for o in options if self.resolve(o).get("type") != "null"]
                if len(usable) < len(options) and (not usable or self._recursive(usable[0])):
                    return None
                return self.value(usable[0], path, depth) if usable else None
        kind = _schema_type(schema)
        if kind == "object":
            return self._object(schema, path, depth)
        if kind == "array":
            return self._array(schema, path, depth)
        if kind == "integer":
            return self._integer(schema, path)
        if kind == "number":
            return self._number(schema, path)
        if kind == "boolean":
            return _stable_int(self.user, path) % 2 == 0
        if kind == "null":
            return None
        return self._string(schema, path)

    def _object(self, schema: dict[str, Any], path: str, depth: int) -> dict[str, Any]:
        required = set(schema.get("required", []))
        result = {}
        for name, sub in schema.get("properties", {}).items():
            if name not in required and (depth >= MAX_DEPTH or self._recursive(sub)):
                continue
            result[name] = self.value(sub, f"{path}.{name}", depth + 1)
        return result

    def _array(self, schema: dict[str, Any], path: str, depth: int) -> list[Any]:
        prefix = schema.get("prefixItems", [])
        minimum = schema.get("minItems", 0)
        items = schema.get("items", {})
        shallow = depth >= MAX_DEPTH or self._recursive(items)
        count = max(minimum, len(prefix)) if shallow else max(1, minimum, len(prefix))
        if "maxItems" in schema:
            count = min(count, schema["maxItems"])
        result = []
        for index in range(count):
            sub = prefix[index] if index < len(prefix) else items
            element = self.value(sub, f"{path}[{index}]", depth + 1)
            if schema.get("uniqueItems") and element in result and isinstance(element, str):
                element = f"{element} {index + 1}"
            result.append(element)
        return result

    def _enum(self, values: list[Any], path: str) -> Any:
        """Prefer the value the text mentions most; ties and no mention fall back to a hash."""
        mentions = [self._mentions(v) for v in values]
        best = max(mentions, default=0)
        candidates = [v for v, m in zip(values, mentions, strict=True) if m == best] if best else values
        return candidates[_stable_int(self.user, path) % len(candidates)]

    def _mentions(self, value: Any) -> int:
        if not isinstance(value, str) or not value.strip():
            return 0
        return len(_mention_pattern(value).findall(self.user))

    def _string(self, schema: dict[str, Any], path: str) -> str:
        fmt = schema.get("format")
        if fmt == "uuid":
            digest = hashlib.sha256(f"{self.user}\x1f{path}".encode()).hexdigest()
            text = f"{digest[:8]}-{digest[8:12]}-4{digest[13:16]}-8{digest[17:20]}-{digest[20:32]}"
        else:
            text = _FORMAT_SAMPLES.get(str(fmt), self.phrase)
        minimum, maximum = schema.get("minLength", 0), schema.get("maxLength")
        while len(text) < minimum:
            text = f"{text} {self.phrase}"
        if maximum is not None and len(text) > maximum:
            text = text[:maximum].rstrip() or text[:maximum]
        return text[:maximum] if maximum is not None else text

    def _integer(self, schema: dict[str, Any], path: str) -> int:
        low, high = _bounds(schema)
        low_int = math.ceil(low) if low is not None else None
        high_int = math.floor(high) if high is not None else None
        if low_int is None:
            low_int = 0 if high_int is None or high_int >= 0 else high_int - 9
        if high_int is None:
            high_int = low_int + 9
        value = low_int + _stable_int(self.user, path) % max(1, high_int - low_int + 1)
        step = schema.get("multipleOf")
        if isinstance(step, int) and step > 0:
            value = math.ceil(value / step) * step
            if value > high_int:
                value -= step
        return value

    def _number(self, schema: dict[str, Any], path: str) -> float:
        low, high = _bounds(schema, integer=False)
        if low is None:
            low = 0.0 if high is None or high > 0 else high - 1.0
        if high is None:
            high = low + 1.0
        # A fraction strictly inside (0, 1) keeps exclusive bounds satisfied.
        fraction = 0.05 + (_stable_int(self.user, path) % 91) / 100
        value = round(low + (high - low) * fraction, 6)
        step = schema.get("multipleOf")
        if isinstance(step, int | float) and step > 0:
            value = math.ceil(value / step) * step
            if value > high:
                value -= step
        return value


def _bounds(schema: dict[str, Any], integer: bool = True) -> tuple[float | None, float | None]:
    """Inclusive lower and upper bounds; an exclusive integer bound moves one step inward."""
    nudge = 1 if integer else 0
    low = schema.get("minimum")
    if low is None and "exclusiveMinimum" in schema:
        low = math.floor(schema["exclusiveMinimum"]) + nudge if integer else schema["exclusiveMinimum"]
    high = schema.get("maximum")
    if high is None and "exclusiveMaximum" in schema:
        high = math.ceil(schema["exclusiveMaximum"]) - nudge if integer else schema["exclusiveMaximum"]
    return low, high


def _schema_type(schema: dict[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        non_null = [k for k in kind if k != "null"]
        kind = non_null[0] if non_null else "null"
    if kind is None:
        if "properties" in schema:
            return "object"
        if "items" in schema or "prefixItems" in schema:
            return "array"
        return "string"
    return str(kind)
