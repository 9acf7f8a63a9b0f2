"""A fast "yes, valid" for structured output, before the full JSON-schema validator.

``jsonschema`` takes about 15 us per object, more than everything else the Results task does for a
line. Most outputs are valid, and most response schemas use a few keywords (``type``,
``properties``, ``required``, ``enum``, ``additionalProperties``...). :func:`compile_check` turns
such a schema into plain Python functions, one per schema object, that answer ``True`` only for
an instance ``jsonschema`` (Draft 2020-12, no format checker) accepts too. ``False`` means "not
sure": the caller asks ``jsonschema``, which stays the judge and writes the error message. A
schema with an assertion keyword this module does not know gets no check at all.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Check = Callable[[Any], bool]


def _keywords(names: str) -> frozenset[str]:
    return frozenset(names.split())


# The assertion keywords of Draft 2020-12 (``Draft202012Validator.VALIDATORS`` without ``format``,
# which asserts nothing without a format checker), and those that change how ``$ref`` resolves.
# Other keywords annotate, or belong to no vocabulary: jsonschema ignores them, and so does this.
_ASSERTING = _keywords(
    "$dynamicRef $ref additionalProperties allOf anyOf const contains dependentRequired "
    "dependentSchemas enum exclusiveMaximum exclusiveMinimum if items maxItems maxLength "
    "maxProperties maximum minItems minLength minProperties minimum multipleOf not oneOf "
    "pattern patternProperties prefixItems properties propertyNames required type "
    "unevaluatedItems unevaluatedProperties uniqueItems $id $anchor $dynamicAnchor "
)
ASSERTING_KEYWORDS = _ASSERTING
_SUPPORTED = _keywords(
    "$ref additionalProperties allOf anyOf const enum exclusiveMaximum exclusiveMinimum items "
    "maxItems maxLength maxProperties maximum minItems minLength minProperties minimum pattern "
    "properties required type "
)
_CLASSES: dict[str, set[type]] = {
    "string": {str},
    "object": {dict},
    "array": {list},
    "boolean": {bool},
    "null": {type(None)},
    "number": {int, float},
    "integer": {int, float},
}
_TYPE_NAMES = frozenset(_CLASSES)
_ABSENT = object()


class _Unsupported(Exception):
    pass


def compile_check(schema: Any) -> Check | None:
    """A check that is ``True`` only for instances valid under ``schema``; ``None`` if unsupported."""
    try:
        compiler = _Compiler(schema)
        compiler.refuse_cycles(schema, ("#",))
        check = compiler.compile(schema, 0)
    except (_Unsupported, KeyError, IndexError, TypeError, ValueError, re.error, RecursionError):
        return None

    def guarded(value: Any) -> bool:
        try:
            return check(value)
        except RecursionError:  # a schema that refers to itself without descending: jsonschema says
            return False

    return guarded


def _always(value: Any) -> bool:
    return True


@dataclass(frozen=True)
class _Node:
    """The supported keywords of one schema object, compiled (``None``: the keyword is absent)."""

    keywords: frozenset[str]
    types: frozenset[type] | None
    strings: frozenset[str] | None  # from enum/const, with ``others``: the None/True/False allowed
    others: tuple[Any, ...]
    required: tuple[str, ...]
    declared: frozenset[str]
    checked: tuple[tuple[str, Check], ...]  # the properties whose schema asserts something
    closed: bool
    extra: Check | None
    min_props: int | None
    max_props: int | None
    each: Check
    min_items: int | None
    max_items: int | None
    min_length: int | None
    max_length: int | None
    search: Callable[[str], Any] | None
    low: float | None
    high: float | None
    above: float | None
    below: float | None
    applied: tuple[Check, ...]  # allOf and $ref
    any_of: tuple[Check, ...]


class _Compiler:
    def __init__(self, root: Any) -> None:
        self._root = root
        self._refs: dict[str, Check] = {}

    def compile(self, schema: Any, depth: int) -> Check:
        """One function for one schema object, all its keywords checked inline."""
        if depth > 32:
            raise _Unsupported("too deep")
        if schema is True:
            return _always
        if not isinstance(schema, dict):
            raise _Unsupported("a false or non-object schema")
        unsupported = (schema.keys() & _ASSERTING) - _SUPPORTED
        if unsupported:
            raise _Unsupported(sorted(unsupported))
        if not schema.keys() & _SUPPORTED:
            return _always
        node = self._node(schema, depth)
        return _leaf_check(node) or _object_check(node) or _general_check(node)

    def _node(self, schema: dict[str, Any], depth: int) -> _Node:
        required = tuple(schema.get("required", ()))
        properties = schema.get("properties", {})
        if not all(isinstance(key, str) for key in required) or not isinstance(properties, dict):
            raise _Unsupported("required or properties")
        compiled = ((key, self.compile(sub, depth + 1)) for key, sub in properties.items())
        additional = schema.get("additionalProperties", True)
        extra = None if additional is False or additional is True else self.compile(additional, depth + 1)
        any_of = tuple(self.compile(branch, depth + 1) for branch in schema.get("anyOf", ()))
        all_of = [self.compile(branch, depth + 1) for branch in schema.get("allOf", ())]
        if ("anyOf" in schema and not any_of) or ("allOf" in schema and not all_of):
            raise _Unsupported("an empty anyOf or allOf")
        if "$ref" in schema:
            all_of.append(self._ref(schema["$ref"], depth))
        strings, others = _enum(schema)
        return _Node(
            keywords=frozenset(schema.keys() & _SUPPORTED),
            types=_types(schema.get("type")),
            strings=strings,
            others=others,
            required=required,
            declared=frozenset(properties),
            checked=tuple((key, check) for key, check in compiled if check is not _always),
            closed=additional is False,
            extra=None if extra is _always else extra,
            min_props=_count(schema, "minProperties"),
            max_props=_count(schema, "maxProperties"),
            each=self.compile(schema["items"], depth + 1) if "items" in schema else _always,
            min_items=_count(schema, "minItems"),
            max_items=_count(schema, "maxItems"),
            min_length=_count(schema, "minLength"),
            max_length=_count(schema, "maxLength"),
            search=re.compile(schema["pattern"]).search if "pattern" in schema else None,
            low=_bound(schema, "minimum"),
            high=_bound(schema, "maximum"),
            above=_bound(schema, "exclusiveMinimum"),
            below=_bound(schema, "exclusiveMaximum"),
            applied=tuple(check for check in all_of if check is not _always),
            any_of=any_of,
        )

    def _ref(self, ref: Any, depth: int) -> Check:
        if ref not in self._refs:
            target = self._resolve(ref)
            self.refuse_cycles(target, (ref,))
            # A placeholder first, so a recursive model (a tree of nodes) compiles.
            box: list[Check] = []
            self._refs[ref] = lambda value: box[0](value)
            box.append(self.compile(target, depth + 1))
        return self._refs[ref]

    def _resolve(self, ref: Any) -> Any:
        if not isinstance(ref, str) or not (ref == "#" or ref.startswith("#/")):
            raise _Unsupported("only local JSON-pointer references")
        target: Any = self._root
        for part in ref[1:].split("/")[1:]:
            part = part.replace("~1", "/").replace("~0", "~")
            target = target[part] if isinstance(target, dict) else target[int(part)]
        return target

    def refuse_cycles(self, schema: Any, refs: tuple[str, ...]) -> None:
        """Refuse references that come back to the same instance without descending into it.

        jsonschema recurses on them without end; these checks stop at the first failing keyword
        and could say yes where jsonschema raises.
        """
        if len(refs) > 32:
            raise _Unsupported("too many references")
        if not isinstance(schema, dict):
            return
        for branch in [*schema.get("anyOf", ()), *schema.get("allOf", ())]:
            self.refuse_cycles(branch, refs)
        ref = schema.get("$ref")
        if ref is not None:
            if ref in refs:
                raise _Unsupported("a reference cycle")
            self.refuse_cycles(self._resolve(ref), (*refs, ref))


def _leaf_check(node: _Node) -> Check | None:
    """The usual property schemas (an enum of strings; a type; a string of bounded length) as one
    expression each: the general check costs several times as much per value."""
    keywords, types, strings = node.keywords, node.types, node.strings
    only_strings = strings is not None and not node.others and (types is None or str in types)
    if only_strings and keywords <= {"type", "enum", "const"}:
        return lambda v: v.__class__ is str and v in strings  # type: ignore[operator]
    if keywords == {"type"} and types is not None and _IntegralFloat not in types:
        return lambda v: v.__class__ in types
    if keywords <= {"type", "minLength", "maxLength"} and types == frozenset({str}):
        low = node.min_length or 0
        high = math.inf if node.max_length is None else node.max_length
        return lambda v: v.__class__ is str and low <= len(v) <= high
    return None


def _object_check(node: _Node) -> Check | None:
    """An object with named properties, the usual root of a response schema, in one function."""
    if not node.keywords <= {"type", "properties", "required", "additionalProperties"}:
        return None
    if node.types != frozenset({dict}) or node.extra is not None:
        return None
    required, declared, closed, checked = node.required, node.declared, node.closed, node.checked
    if closed and set(required) == declared:
        # Every property required and no other allowed (OpenAI's strict structured outputs).
        def exact_object(v: Any) -> bool:
            if v.__class__ is not dict or v.keys() != declared:
                return False
            for key, sub in checked:  # noqa: SIM110 - a plain loop is faster than all() over a generator
                if not sub(v[key]):
                    return False
            return True

        return exact_object

    def object_(v: Any) -> bool:
        if v.__class__ is not dict:
            return False
        for key in required:
            if key not in v:
                return False
        if closed and not v.keys() <= declared:
            return False
        for key, sub in checked:
            value = v.get(key, _ABSENT)
            if value is not _ABSENT and not sub(value):
                return False
        return True

    return object_


# Longer than most on purpose: one closure with every keyword's values bound as locals is the
# hot path of output validation; a helper per keyword would add calls per value (bench/results.py).
def _general_check(node: _Node) -> Check:
    """Every supported keyword, each tested only for the instances it applies to (as jsonschema)."""
    types, strings, others, integral = node.types, node.strings, node.others, _IntegralFloat
    required, declared, closed, checked, extra = node.required, node.declared, node.closed, node.checked, node.extra
    min_props, max_props, each, min_items, max_items = (
        node.min_props,
        node.max_props,
        node.each,
        node.min_items,
        node.max_items,
    )
    min_length, max_length, search = node.min_length, node.max_length, node.search
    low, high, above, below, applied, any_of = node.low, node.high, node.above, node.below, node.applied, node.any_of

    def check(v: Any) -> bool:
        cls = v.__class__
        if types is not None and cls not in types and not (cls is float and integral in types and v.is_integer()):
            return False
        if strings is not None and not (v in strings if cls is str else any(v is other for other in others)):
            return False
        if cls is dict:
            for key in required:
                if key not in v:
                    return False
            if closed and not v.keys() <= declared:
                return False
            for key, sub in checked:
                value = v.get(key, _ABSENT)
                if value is not _ABSENT and not sub(value):
                    return False
            if extra is not None:
                for key in v.keys() - declared:
                    if not extra(v[key]):
                        return False
            if (min_props is not None and len(v) < min_props) or (max_props is not None and len(v) > max_props):
                return False
        elif cls is str:
            if (min_length is not None and len(v) < min_length) or (max_length is not None and len(v) > max_length):
                return False
            if search is not None and search(v) is None:
                return False
        elif cls is list:
            if (min_items is not None and len(v) < min_items) or (max_items is not None and len(v) > max_items):
                return False
            if each is not _always:
                for element in v:
                    if not each(element):
                        return False
        elif cls is int or cls is float:
            if (low is not None and not v >= low) or (high is not None and not v <= high):
                return False
            if (above is not None and not v > above) or (below is not None and not v < below):
                return False
        for sub in applied:
            if not sub(v):
                return False
        if any_of:
            for sub in any_of:  # noqa: SIM110 - a plain loop is faster than any() over a generator
                if sub(v):
                    return True
            return False
        return True

    return check


def _types(arg: Any) -> frozenset[type] | None:
    """The Python classes of the instances ``type`` admits; ``float`` also stands for integral floats.

    As jsonschema: ``1.0`` is an integer, ``True`` is neither an integer nor a number.
    """
    if arg is None:
        return None
    names = [arg] if isinstance(arg, str) else list(arg)
    if not names or not all(isinstance(name, str) and name in _TYPE_NAMES for name in names):
        raise _Unsupported("type")
    classes: set[type] = set()
    for name in names:
        classes |= _CLASSES[name]
    if "number" not in names and float in classes:
        # Only "integer" asked for floats: they pass only when integral (checked inline), so
        # mark them with a class no JSON value has and test ``is_integer`` on the side.
        return frozenset(classes - {float} | {_IntegralFloat})
    return frozenset(classes)


class _IntegralFloat:
    """Stands in ``types`` for "a float, if it is integral" (see :func:`_types`)."""


def _enum(schema: dict[str, Any]) -> tuple[frozenset[str] | None, tuple[Any, ...]]:
    """The strings, and the ``None``/``True``/``False``, that ``enum`` and ``const`` allow.

    Numbers, lists and objects are left out: jsonschema compares them its own way (``1 == 1.0``,
    never ``True``), and this check must never say yes where it says no.
    """
    allowed: list[Any] | None = None
    if "enum" in schema:
        allowed = list(schema["enum"])
    if "const" in schema:
        const = [schema["const"]]
        allowed = const if allowed is None else [value for value in allowed if _same(value, const[0])]
    if allowed is None:
        return None, ()
    strings = frozenset(value for value in allowed if value.__class__ is str)
    others = tuple(value for value in allowed if value is None or value is True or value is False)
    return strings, others


def _same(one: Any, two: Any) -> bool:
    return one.__class__ is two.__class__ and (one is two or (one.__class__ is str and one == two))


def _count(schema: dict[str, Any], name: str) -> int | None:
    if name not in schema:
        return None
    arg = schema[name]
    if arg.__class__ not in (int, float) or arg < 0 or arg != int(arg):
        raise _Unsupported(name)
    return int(arg)


def _bound(schema: dict[str, Any], name: str) -> float | None:
    if name not in schema:
        return None
    arg = schema[name]
    if arg.__class__ not in (int, float) or not math.isfinite(arg):
        raise _Unsupported(name)
    return arg  # type: ignore[no-any-return]
