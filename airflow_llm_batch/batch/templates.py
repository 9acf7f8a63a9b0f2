"""Prompt templates: ``{field}`` placeholders filled from an item's fields.

The template is parsed once; rendering joins literal pieces with the item's values. A value is
inserted as it is and never parsed again, so a ticket that contains ``{{ }}`` or ``{body}`` stays
text (Airflow's Jinja has already run over the template itself, never over the items).
Write ``{{`` and ``}}`` for literal braces in the template.

Values that are not text: numbers and booleans as ``str()`` writes them; a dict or a list (a
nested JSON field, a Parquet struct or list) as compact JSON (``{"product":"a"}``, never Python's
``{'product': 'a'}``). A placeholder reaches into nested fields with dots: ``{meta.product}`` is
``item["meta"]["product"]``, unless the item has a field named ``meta.product`` itself.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from operator import itemgetter
from typing import Any

import orjson

from airflow_llm_batch.exceptions import ConfigurationError

# One field name per dot-separated part: letters, digits, ``_`` and ``-``.
_FIELD = re.compile(r"[\w-]+(\.[\w-]+)*")

_MISSING = object()


class TemplateFieldError(Exception):
    """An item lacks a field the template uses (turned into an InvalidInputError by the caller)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(field, reason)
        self.field = field
        self.reason = reason


class PromptTemplate:
    """A compiled ``str.format``-style template with plain field names.

    :param template: e.g. ``"Classify this ticket.\\nSubject: {subject}\\n\\n{body}"``.
    """

    __slots__ = ("_format", "_getters", "_paths", "_pieces", "fields", "template")

    def __init__(self, template: str) -> None:
        self.template = template
        pieces: list[tuple[str, str | None]] = []
        try:
            parsed = list(string.Formatter().parse(template))
        except ValueError as err:
            raise ConfigurationError(
                f"prompt template cannot be parsed ({err}); write {{{{ and }}}} for literal braces"
            ) from err
        for literal, name, spec, conversion in parsed:
            if name is not None and (spec or conversion):
                raise ConfigurationError(
                    f"prompt template field {{{name}!{conversion}:{spec}}}: only plain {{field}} "
                    "placeholders are supported"
                )
            if name == "" or (name is not None and not _FIELD.fullmatch(name)):
                raise ConfigurationError(
                    f"prompt template has a placeholder {{{name}}}; use item field names like {{body}} "
                    "(or {meta.product} for a nested field), and {{ }} for literal braces"
                )
            pieces.append((literal, name))
        self._pieces = tuple(pieces)
        self.fields = tuple(dict.fromkeys(name for _, name in pieces if name is not None))
        self._paths = {name: tuple(name.split(".")) for name in self.fields if "." in name}
        # For :meth:`render_all`: the template as a ``str.format`` string over the fields by index.
        number = {name: index for index, name in enumerate(self.fields)}
        self._format = "".join(
            literal.replace("{", "{{").replace("}", "}}") + ("" if name is None else f"{{{number[name]}}}")
            for literal, name in pieces
        )
        self._getters = tuple(itemgetter(name) for name in self.fields)

    def render(self, item: Mapping[str, Any]) -> str:
        """Fill the placeholders from ``item``; raise :class:`TemplateFieldError` naming the field."""
        out: list[str] = []
        for literal, name in self._pieces:
            out.append(literal)
            if name is None:
                continue
            value = item.get(name, _MISSING)
            if value is _MISSING and name in self._paths:
                value = _nested(item, self._paths[name])
            out.append(value if value.__class__ is str else _as_text(name, value))
        return "".join(out)

    def render_all(self, items: list[dict[str, Any]]) -> list[str] | None:
        """The prompts of a block of ``dict`` items in C-level loops, when every item holds every
        field as a plain ``str``: then each is what :meth:`render` returns. ``None`` otherwise
        (a field missing, nested, or not a ``str`` somewhere): render those one at a time."""
        if self._paths:
            return None
        columns = []
        for getter in self._getters:
            try:
                column = list(map(getter, items))
            except KeyError:
                return None
            if set(map(type, column)) != {str}:
                return None
            columns.append(column)
        if not columns:
            return [self._format.format()] * len(items)
        return list(map(self._format.format, *columns))


def _nested(item: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = item
    for part in path:
        if not isinstance(value, Mapping):
            return _MISSING
        value = value.get(part, _MISSING)
    return value


def _as_text(name: str, value: Any) -> str:
    """A field value that is not a plain ``str``, as the text the prompt shows."""
    if value is _MISSING:
        raise TemplateFieldError(name, "is missing")
    if value is None:
        raise TemplateFieldError(name, "is null")
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise TemplateFieldError(name, "is not valid UTF-8") from None
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping | list | tuple):
        try:  # compact JSON, UTF-8 as is: what a model reads best, and what the user would write
            return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
        except TypeError as err:
            raise TemplateFieldError(name, f"holds a value that cannot be written as JSON ({err})") from None
    return str(value)
