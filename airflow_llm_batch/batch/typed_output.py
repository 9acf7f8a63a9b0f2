"""Structured output checked in C: a msgspec type derived from the response schema.

The Results task of a million-line job validates a million small JSON objects. The usual one is
what OpenAI's strict structured outputs write: compact JSON, the properties in the schema's
order, every value a string, an integer, a boolean or null. :func:`compile_output_type` turns such
a schema into msgspec types (``Literal`` for an enum, ``Meta`` for lengths and bounds, a ``Struct``
per object) and :meth:`TypedOutput.stored_texts` answers for each model text: it gives the text
itself when msgspec decodes it into that type *and* encodes the result back to exactly the same
bytes. Then, and only then, the general path (:class:`~airflow_llm_batch.batch.schema.OutputValidator`)
would find the object valid and store the same JSON text (orjson and msgspec write strings,
integers, booleans and null alike: a test compares them on every code point), so the result row
is the same. Any other answer is ``None``: "not sure", and the caller takes the general path,
which stays the judge and writes every error message.

Not supported (no typed check at all, the general path does the work): numbers that may be
floats (float spellings differ between encoders), ``pattern``, ``$ref``, unions other than
"X or null", enums of non-strings, and every assertion keyword not listed in ``_KNOWN``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from airflow_llm_batch.batch.quick_schema import ASSERTING_KEYWORDS

# The assertion keywords mapped here; other asserting ones make the schema unsupported, and
# keywords that only annotate (title, description, default, examples, format...) are ignored,
# as jsonschema ignores them.
_KNOWN = frozenset(
    (
        "type",
        "enum",
        "const",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "minItems",
        "maxItems",
        "minLength",
        "maxLength",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "anyOf",
    )
)
# orjson writes integers in this range only (the general path stores ``orjson.dumps(value)``).
_INT_LOW, _INT_HIGH = -(2**63), 2**64 - 1
_MAX_DEPTH = 16


class _Unsupported(Exception):
    pass


class TypedOutput:
    """A response schema as a msgspec type; see the module docstring for what it promises."""

    def __init__(self, output_type: Any) -> None:
        self._decode = msgspec.json.Decoder(output_type).decode
        self._encode = msgspec.json.Encoder().encode

    def stored_texts(self, texts: list[str | None]) -> list[str | None]:
        """For each text: itself when it is valid and already in the form the results file stores,
        else ``None`` (ask the general path)."""
        decode, encode = self._decode, self._encode
        out: list[str | None] = []
        append = out.append
        for text in texts:
            try:  # (``None`` raises TypeError: no text, the general path says so)
                append(text if encode(decode(text)) == text.encode() else None)  # type: ignore[arg-type,union-attr]
            except (msgspec.DecodeError, TypeError, AttributeError, UnicodeEncodeError, RecursionError):
                append(None)
        return out


def compile_output_type(schema: Any) -> TypedOutput | None:
    """The typed check of ``schema``, or ``None`` when the schema uses something it cannot mirror."""
    try:
        return TypedOutput(_Compiler().type_of(schema, 0))
    except (_Unsupported, TypeError, ValueError, RecursionError):
        return None


class _Compiler:
    def __init__(self) -> None:
        self._structs = 0

    def type_of(self, schema: Any, depth: int) -> Any:
        if depth > _MAX_DEPTH or not isinstance(schema, dict):
            raise _Unsupported("too deep, or a boolean schema")
        asserting = schema.keys() & ASSERTING_KEYWORDS
        if asserting - _KNOWN:
            raise _Unsupported(sorted(asserting - _KNOWN))
        if "anyOf" in schema:
            return self._nullable(schema, depth)
        names = schema.get("type")
        if names is None:
            if "enum" in schema or "const" in schema:
                return self._strings(schema)
            raise _Unsupported("a schema without a type")
        if isinstance(names, list):
            others = [name for name in names if name != "null"]
            if len(names) != 2 or len(others) != 1:
                raise _Unsupported("a union of types")
            if "enum" in schema or "const" in schema:  # (they apply to null too: no "or null" then)
                raise _Unsupported("an enum beside a union of types")
            return self._one_type({**schema, "type": others[0]}, depth) | None
        return self._one_type(schema, depth)

    def _nullable(self, schema: dict[str, Any], depth: int) -> Any:
        branches = schema["anyOf"]
        if set(schema.keys() & ASSERTING_KEYWORDS) != {"anyOf"} or not isinstance(branches, list):
            raise _Unsupported("anyOf beside other keywords")
        others = [branch for branch in branches if branch != {"type": "null"}]
        if len(branches) != 2 or len(others) != 1:
            raise _Unsupported("anyOf other than 'X or null'")
        return self.type_of(others[0], depth + 1) | None

    def _one_type(self, schema: dict[str, Any], depth: int) -> Any:
        name = schema["type"]
        if "enum" in schema or "const" in schema:
            if name != "string":
                raise _Unsupported("an enum of non-strings")
            return self._strings(schema)
        if name == "string":
            return _annotated(str, _count(schema, "minLength"), _count(schema, "maxLength"))
        if name == "integer":
            return self._integer(schema)
        if name == "boolean":
            return bool
        if name == "null":
            return None
        if name == "array":
            if "items" not in schema:
                raise _Unsupported("an array of anything")
            items = self.type_of(schema["items"], depth + 1)
            return _annotated(list[items], _count(schema, "minItems"), _count(schema, "maxItems"))  # type: ignore[valid-type]
        if name == "object":
            return self._struct(schema, depth)
        raise _Unsupported(f"type {name!r}")

    @staticmethod
    def _strings(schema: dict[str, Any]) -> Any:
        values = schema["enum"] if "enum" in schema else [schema["const"]]
        if "enum" in schema and "const" in schema:
            raise _Unsupported("enum and const")
        if not values or not all(isinstance(value, str) for value in values):
            raise _Unsupported("an enum of non-strings")
        if schema.keys() & {"minLength", "maxLength"}:
            raise _Unsupported("lengths beside an enum")
        return Literal[tuple(values)]  # type: ignore[valid-type]

    @staticmethod
    def _integer(schema: dict[str, Any]) -> Any:
        low, high = _INT_LOW, _INT_HIGH
        for keyword in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
            value = schema.get(keyword)
            if value is None:
                continue
            if type(value) is not int:
                raise _Unsupported("a bound that is not an integer")
            if keyword == "minimum":
                low = max(low, value)
            elif keyword == "exclusiveMinimum":
                low = max(low, value + 1)
            elif keyword == "maximum":
                high = min(high, value)
            else:
                high = min(high, value - 1)
        return Annotated[int, msgspec.Meta(ge=low, le=high)]

    def _struct(self, schema: dict[str, Any], depth: int) -> Any:
        properties = schema.get("properties", {})
        required = schema.get("required", [])
        additional = schema.get("additionalProperties", True)
        if not isinstance(properties, dict) or not isinstance(required, list) or additional not in (True, False):
            raise _Unsupported("properties, required or additionalProperties")
        if len(set(required)) != len(required) or not set(required) <= properties.keys():
            raise _Unsupported("a required property that is not declared")
        fields: list[Any] = []
        rename: dict[str, str] = {}
        for number, (key, sub) in enumerate(properties.items()):
            field_type = self.type_of(sub, depth + 1)
            name = f"f{number}"
            rename[name] = key
            if key in required:
                fields.append((name, field_type))
            else:  # absent stays absent: UNSET fields are not encoded
                fields.append((name, field_type | msgspec.UnsetType, msgspec.UNSET))
        self._structs += 1
        # ``additionalProperties`` absent or true: unknown keys are dropped on decode, so such a
        # text never encodes back to itself and gets no answer; only a closed object can be sure.
        return msgspec.defstruct(
            f"Output{self._structs}",
            fields,
            kw_only=True,
            rename=rename,
            forbid_unknown_fields=additional is False,
            gc=False,
        )


def _annotated(base: Any, min_length: int | None, max_length: int | None) -> Any:
    if min_length is None and max_length is None:
        return base
    return Annotated[base, msgspec.Meta(min_length=min_length, max_length=max_length)]


def _count(schema: dict[str, Any], keyword: str) -> int | None:
    value = schema.get(keyword)
    if value is None:
        return None
    if type(value) is not int or value < 0:
        raise _Unsupported(f"{keyword} that is not a count")
    return value
