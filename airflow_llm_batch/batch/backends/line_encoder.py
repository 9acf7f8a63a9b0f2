"""Request lines of a prompt template without building a dict per item.

A chat job's lines differ only in the id and the rendered prompt: the model, the system prompt,
the parameters and (the bulk of most lines) the response schema are the same JSON every time.
:func:`fragment_encoder` serializes one line with markers in place of the id and the prompt,
cuts it there, and from then on joins the fixed fragments with the two JSON-encoded strings:
the same bytes as ``dumps(build_line(custom_id, spec, build_body(spec, text)))``, at a fraction
of the cost. It checks that claim on probes before it is used; a backend whose line depends on
the prompt in any other way gets ``None`` and keeps the general path.
"""

from __future__ import annotations

from itertools import repeat

import orjson

from airflow_llm_batch.batch.backends.base import BatchBackend, LineEncoder, RequestSpec

__all__ = ["LineEncoder", "fragment_encoder"]

_ID_MARK = "\x00llm-batch:custom-id\x00"
_TEXT_MARK = "\x00llm-batch:prompt\x00"
_PROBES = (
    ("T-1", "x"),
    ('id "quoted" \\ é', 'Subject: "Refund"\n\nline\twith \\ é \u2028 \U0001f600 {{ ds }} {body}' * 3),
)


def fragment_encoder(backend: BatchBackend, spec: RequestSpec) -> LineEncoder | None:
    """A :class:`LineEncoder` for ``backend``'s lines of ``spec``, or ``None`` where fragments do not fit."""
    body = backend.build_body(spec, _TEXT_MARK)
    try:
        sample = orjson.dumps(backend.build_line(_ID_MARK, spec, body))
    except orjson.JSONEncodeError:
        return None  # parameters JSON cannot hold: the general path names the items it fails for
    id_json, text_json = orjson.dumps(_ID_MARK), orjson.dumps(_TEXT_MARK)
    if sample.count(id_json) != 1 or sample.count(text_json) != 1:
        return None
    id_at, text_at = sample.index(id_json), sample.index(text_json)
    first, second = (id_json, text_json) if id_at < text_at else (text_json, id_json)
    head, rest = sample.split(first)
    middle, tail = rest.split(second)
    dumps = orjson.dumps

    if id_at < text_at:

        def encode(custom_id: str, text: str) -> bytes:
            return b"".join((head, dumps(custom_id), middle, dumps(text), tail))

        def encode_all(custom_ids: list[str], texts: list[str]) -> list[bytes]:
            pieces = zip(repeat(head), map(dumps, custom_ids), repeat(middle), map(dumps, texts), repeat(tail))
            return list(map(b"".join, pieces))

    else:

        def encode(custom_id: str, text: str) -> bytes:
            return b"".join((head, dumps(text), middle, dumps(custom_id), tail))

        def encode_all(custom_ids: list[str], texts: list[str]) -> list[bytes]:
            pieces = zip(repeat(head), map(dumps, texts), repeat(middle), map(dumps, custom_ids), repeat(tail))
            return list(map(b"".join, pieces))

    for custom_id, text in _PROBES:
        expected = orjson.dumps(backend.build_line(custom_id, spec, backend.build_body(spec, text)))
        if encode(custom_id, text) != expected or encode_all([custom_id], [text]) != [expected]:
            return None
    return LineEncoder(model=str(body.get("model", spec.model)), encode=encode, encode_all=encode_all)
