"""Prompt templates: ``{field}`` placeholders filled from an item's fields.

The template is parsed once; rendering joins literal pieces with the item's values. A value is
inserted as it is and never parsed again, so a ticket that contains ``{{ }}`` or ``{body}`` stays
text (Airflow's Jinja has already run over the template itself, never over the items).
Write ``{{`` and ``}}`` for literal braces in the template.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Any

from airflow_llm_batch.exceptions import ConfigurationError

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

    __slots__ = ("_pieces", "fields", "template")

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
            if name == "" or (name is not None and not name.replace("_", "a").replace("-", "a").isalnum()):
                raise ConfigurationError(
                    f"prompt template has a placeholder {{{name}}}; use item field names like {{body}}, "
                    "and {{{{ }}}} for literal braces"
                )
            pieces.append((literal, name))
        self._pieces = tuple(pieces)
        self.fields = tuple(dict.fromkeys(name for _, name in pieces if name is not None))

    def render(self, item: Mapping[str, Any]) -> str:
        """Fill the placeholders from ``item``; raise :class:`TemplateFieldError` naming the field."""
        out: list[str] = []
        for literal, name in self._pieces:
            out.append(literal)
            if name is None:
                continue
            value = item.get(name, _MISSING)
            out.append(value if value.__class__ is str else _as_text(name, value))
        return "".join(out)


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
    return value if isinstance(value, str) else str(value)
