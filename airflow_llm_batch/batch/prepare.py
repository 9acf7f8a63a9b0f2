"""Items to request files: render, validate, map ids, chunk to the provider's limits, write.

One streaming pass over the items. Nothing here calls a provider: the caller submits the chunks
only when :func:`prepare_chunks` returned without raising, so bad input fails before any API call.
"""

from __future__ import annotations

import hashlib
import re
from array import array
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

from airflow_llm_batch.batch import jsonl
from airflow_llm_batch.batch.backends.base import BatchBackend, ChunkFile, PreparedJob, RequestSpec
from airflow_llm_batch.batch.fingerprint import LineDigest
from airflow_llm_batch.batch.preflight import Preflight
from airflow_llm_batch.batch.prepare_blocks import BlockPass, BlockTaker
from airflow_llm_batch.batch.reuse import ReuseLookup
from airflow_llm_batch.batch.state import chunk_file_name, ids_file_name
from airflow_llm_batch.batch.storage import StoragePath
from airflow_llm_batch.batch.templates import PromptTemplate, TemplateFieldError
from airflow_llm_batch.batch.unique_ids import SeenIds
from airflow_llm_batch.exceptions import ConfigurationError, InvalidInputError

__all__ = ["ChunkWriter", "IdMapper", "PreparedJob", "prepare_chunks"]

MAX_PROBLEMS_SHOWN = 10
_encode_json = msgspec.json.encode


class IdMapper:
    """Maps user ids to ids the provider accepts, keeping the user's id where it already fits.

    An id that does not fit (too long, characters the provider refuses) becomes ``h-`` plus a hash
    of it; the ids file beside each chunk maps it back, so results always carry the user's id.
    """

    def __init__(self, pattern: str | None, max_length: int) -> None:
        self._fits = re.compile(pattern).fullmatch if pattern else None
        self._max_length = max_length
        self._mapped: set[str] = set()

    def custom_id(self, user_id: str) -> str:
        fits = len(user_id) <= self._max_length and (self._fits is None or bool(self._fits(user_id)))
        if fits and user_id not in self._mapped:
            return user_id
        digest = hashlib.blake2b(user_id.encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()
        mapped = f"h-{digest}"
        self._mapped.add(mapped)
        return mapped

    def keeps_all(self, user_ids: list[str]) -> bool:
        """Whether :meth:`custom_id` returns each of a block of ids unchanged (it then changes nothing)."""
        return (
            max(map(len, user_ids), default=0) <= self._max_length
            and (self._fits is None or all(map(self._fits, user_ids)))
            and self._mapped.isdisjoint(user_ids)
        )


class _Problems:
    """The input problems of a pass, in input order: the first ones in words, and how many in all."""

    def __init__(self) -> None:
        self.shown: list[tuple[int, str]] = []
        self.total = 0
        self.position = 0  # of the item being checked, set by the pass
        self._positions = array("q")  # of every problem (at most one per item)

    def add(self, message: str) -> None:
        self.total += 1
        self._positions.append(self.position)
        if len(self.shown) < MAX_PROBLEMS_SHOWN:
            self.shown.append((self.position, message))

    def add_late_duplicates(self, duplicates: list[tuple[int, str]], id_field: str) -> None:
        """Duplicates found after the pass (see ``SeenIds``): each replaces any other problem of its item."""
        if not duplicates:
            return
        at = {position for position, _ in duplicates}
        replaced = sum(1 for position in self._positions if position in at)
        self.total += len(duplicates) - replaced
        late = [
            (position, _duplicate(user_id, id_field, position)) for position, user_id in duplicates[:MAX_PROBLEMS_SHOWN]
        ]
        self.shown = sorted([shown for shown in self.shown if shown[0] not in at] + late)[:MAX_PROBLEMS_SHOWN]

    def raise_if_any(self) -> None:
        if self.total:
            raise InvalidInputError([message for _, message in self.shown], self.total)


def _at(position: int) -> str:
    """An item named by its place in the input, counted from 1 like the lines of a JSONL file."""
    return f"item #{position + 1}"


def _duplicate(user_id: str, id_field: str, position: int) -> str:
    return (
        f"{_at(position)} '{user_id}': id field '{id_field}' repeats the id of an earlier item; "
        "ids must be unique in a run"
    )


def item_id(item: Any, position: int, id_field: str) -> str:
    """The user's id of an item as a string; raises with the item's position when it is unusable."""
    if item.__class__ is dict:  # the usual case, checked without the slower Mapping machinery
        value = item.get(id_field)
        if value.__class__ is str and value.strip():
            return value
    if not isinstance(item, Mapping):
        raise _ItemProblem(f"{_at(position)}: is a {type(item).__name__}, expected a mapping of fields")
    value = item.get(id_field)
    if value is None:
        raise _ItemProblem(f"{_at(position)}: id field '{id_field}' is missing")
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _ItemProblem(
            f"{_at(position)}: id field '{id_field}' is a {type(value).__name__}; use a string or integer"
        )
    text = str(value)
    if not text.strip():
        raise _ItemProblem(f"{_at(position)}: id field '{id_field}' is empty")
    return text


class _ItemProblem(Exception):
    pass


class ChunkWriter:
    """Rolls request lines into chunk files that respect the provider's count and byte limits."""

    def __init__(self, out_dir: StoragePath, backend: BatchBackend, reuse: ReuseLookup | None = None) -> None:
        """:param reuse: lines it answers from the store (``reuse.py``) are not written (none by default)."""
        self._dir = out_dir
        self._reuse = reuse
        self._limits = backend.limits
        self._open: dict[str, tuple[int, jsonl.JsonlWriter, jsonl.JsonlWriter]] = {}
        self._next_index = 0
        self.chunks: list[ChunkFile] = []
        self._models: dict[int, str] = {}
        self._hash = LineDigest()

    def add(self, model: str, custom_id: str, user_id: str, line: bytes) -> None:
        if self._reuse is not None and self._reuse.reused(line):
            return
        limits = self._limits
        key = model if limits.single_model_per_batch else ""
        current = self._open.get(key)
        if current is None or (
            current[1].count >= limits.max_requests or current[1].bytes + len(line) + 1 > limits.max_bytes
        ):
            if current is not None:
                self._close(key)
            current = self._start(key, model)
        _, writer, ids = current
        writer.write_bytes(line)
        ids.write_bytes(jsonl.dumps([custom_id, user_id]))
        self._hash.update(line)

    def add_all(self, model: str, custom_ids: list[str], user_ids: list[str], lines: list[bytes]) -> None:
        """A block of lines, written as :meth:`add` one by one would write them (the same files,
        lines and fingerprint), in one piece when they fit the open chunk."""
        if self._reuse is not None:
            reused = self._reuse.reused_all(lines)
            if any(reused):
                kept = [index for index, taken in enumerate(reused) if not taken]
                custom_ids, user_ids = [custom_ids[i] for i in kept], [user_ids[i] for i in kept]
                lines = [lines[i] for i in kept]
                if not lines:
                    return
        key = model if self._limits.single_model_per_batch else ""
        current = self._open.get(key)
        if current is not None and (
            current[1].count + len(lines) <= self._limits.max_requests
            and current[1].bytes + sum(map(len, lines)) + len(lines) <= self._limits.max_bytes
        ):
            _, writer, ids = current
            writer.write_lines(lines)
            # msgspec writes the ``[custom_id, user_id]`` of ``add`` byte for byte (strings that orjson
            # encoded in the lines already), without orjson's 4 KiB allocation per result.
            ids.write_lines(list(map(_encode_json, zip(custom_ids, user_ids, strict=True))))
            self._hash.update_lines(lines)
            return
        reuse, self._reuse = self._reuse, None  # looked up above already
        try:
            for custom_id, user_id, line in zip(custom_ids, user_ids, lines, strict=True):
                self.add(model, custom_id, user_id, line)
        finally:
            self._reuse = reuse

    def _start(self, key: str, model: str) -> tuple[int, jsonl.JsonlWriter, jsonl.JsonlWriter]:
        index = self._next_index
        self._next_index += 1
        writer = jsonl.JsonlWriter(self._dir / chunk_file_name(index))
        ids = jsonl.JsonlWriter(self._dir / ids_file_name(index))
        self._models[index] = model
        self._open[key] = (index, writer, ids)
        return self._open[key]

    def _close(self, key: str) -> None:
        index, writer, ids = self._open.pop(key)
        writer.close()
        ids.close()
        self.chunks.append(ChunkFile(index, writer.path, writer.count, writer.bytes, self._models[index]))

    def finish(self) -> tuple[tuple[ChunkFile, ...], str]:
        for key in list(self._open):
            self._close(key)
        return tuple(sorted(self.chunks, key=lambda c: c.index)), self._hash.hexdigest()


# Longer than most on purpose: one streaming pass renders, checks and writes every item (the
# source is read once); each check is a few lines with its own message for the user.
def prepare_chunks(
    items: Iterable[Any],
    *,
    id_field: str,
    spec: RequestSpec,
    backend: BatchBackend,
    out_dir: StoragePath,
    template: PromptTemplate | None = None,
    body_field: str | None = None,
    preflight: Preflight | None = None,
    reuse: ReuseLookup | None = None,
) -> PreparedJob:
    """Render, validate and write every item; raise :class:`InvalidInputError` listing the problems.

    :param template: renders each item's prompt (chat) or input text (embedding).
    :param body_field: alternatively, the item field holding a ready provider-native body.
    :param preflight: the request check (``preflight/``); by default one with every rule on.
    :param reuse: the lookup in the reuse store: the items it answers are checked like any other,
        then left out of the chunk files (``item_count`` counts the others).
    """
    backend.check_model(spec)
    backend.check_spec(spec)
    if spec.options.get("endpoint") and backend.request_endpoint(spec) is None:
        raise ConfigurationError(
            f"endpoint={spec.options['endpoint']!r} applies to OpenAI, Azure OpenAI and OpenAI-compatible "
            f"connections; {backend.provider} has one endpoint per kind: remove it"
        )
    check = preflight or Preflight(backend, spec)
    if body_field is None and template is not None:
        check.check_template()  # the shape of every item's body, once
    out_dir.mkdir(parents=True, exist_ok=True)
    problems = _Problems()
    seen = SeenIds()
    mapper = IdMapper(backend.limits.custom_id_pattern, backend.limits.custom_id_max_length)
    requests = _Requests(backend, spec, template, body_field, mapper, check)
    size_threshold = check.size_threshold  # near the context window: one comparison per item
    chunks = ChunkWriter(out_dir, backend, reuse)
    max_request_bytes = backend.limits.max_request_bytes
    # The usual job's usual items are taken a block at a time (``prepare_blocks.py``); any other
    # item comes to the loop below, in its place in the input.
    blocks = BlockPass(items, take=None)
    if template is not None and requests.encoder is not None and requests.encoder.encode_all is not None:
        blocks.take = BlockTaker(
            id_field=id_field,
            render_all=template.render_all,
            encoder=requests.encoder,
            mapper=mapper,
            seen=seen,
            chunks=chunks,
            problems=problems,
            max_line_bytes=min(max_request_bytes, size_threshold),
        )
    for position, item in blocks:
        problems.position = position
        try:
            user_id = item_id(item, position, id_field)
        except _ItemProblem as problem:
            problems.add(str(problem))
            continue
        if not seen.add(user_id, position):
            problems.add(_duplicate(user_id, id_field, position))
            continue
        try:
            model, custom_id, line = requests.line_of(item, user_id)
        except TemplateFieldError as err:
            problems.add(
                f"item '{user_id}': field '{err.field}' {err.reason}; the prompt template uses {{{err.field}}}"
            )
            continue
        except _ItemProblem as problem:
            problems.add(f"item '{user_id}': {problem}")
            continue
        except jsonl.orjson.JSONEncodeError as err:
            problems.add(f"item '{user_id}': {_describe_encode_error(item, err)}")
            continue
        if len(line) > max_request_bytes:
            problems.add(
                f"item '{user_id}': its request is {len(line):,} bytes, above {backend.provider}'s limit of "
                f"{max_request_bytes:,} bytes per request; shorten the item's text"
            )
            continue
        if len(line) > size_threshold:
            too_big = check.check_size(user_id, len(line))
            if too_big is not None:
                problems.add(f"item '{user_id}': {too_big}")
                continue
        if not problems.total:
            chunks.add(model, custom_id, user_id, line)
    problems.add_late_duplicates(seen.late_duplicates(), id_field)
    problems.raise_if_any()
    check.report()
    written, fingerprint = chunks.finish()
    reused = reuse.hits if reuse is not None else 0
    return PreparedJob(chunks=written, item_count=blocks.count - reused, fingerprint=fingerprint)


class _Requests:
    """Items to request lines: through the backend's line encoder where it has one (a prompt
    template), else as its body and line dicts, JSON-encoded."""

    def __init__(
        self,
        backend: BatchBackend,
        spec: RequestSpec,
        template: PromptTemplate | None,
        body_field: str | None,
        mapper: IdMapper,
        check: Preflight,
    ) -> None:
        self._backend, self._spec, self._template, self._body_field = backend, spec, template, body_field
        self._mapper, self._check = mapper, check
        self.encoder = backend.line_encoder(spec) if template is not None and body_field is None else None

    def line_of(self, item: Any, user_id: str) -> tuple[str, str, bytes]:
        """``(model, custom_id, line)``. Raises ``TemplateFieldError`` or ``_ItemProblem`` before the
        id is mapped, ``JSONEncodeError`` after, as the general path always did."""
        encoder = self.encoder
        if encoder is not None:
            text = self._template.render(item)  # type: ignore[union-attr]
            custom_id = self._mapper.custom_id(user_id)
            return encoder.model, custom_id, encoder.encode(custom_id, text)
        spec = self._spec
        body = _body_of(item, spec, self._backend, self._template, self._body_field)
        if self._body_field is not None:
            problem = self._check.check_item_body(body)
            if problem is not None:
                raise _ItemProblem(f"(its '{self._body_field}') {problem}")
        custom_id = self._mapper.custom_id(user_id)
        line = jsonl.dumps(self._backend.build_line(custom_id, spec, body))
        return str(body.get("model", spec.model)), custom_id, line


def _body_of(
    item: Mapping[str, Any],
    spec: RequestSpec,
    backend: BatchBackend,
    template: PromptTemplate | None,
    body_field: str | None,
) -> dict[str, Any]:
    if body_field is not None:
        body = item.get(body_field)
        if not isinstance(body, Mapping):
            raise _ItemProblem(f"field '{body_field}' must hold the provider-native request body (a mapping)")
        return dict(body)
    if template is None:  # the operator checks this at build time; kept for direct callers
        raise _ItemProblem("no prompt template and no body field were given")
    return backend.build_body(spec, template.render(item))


def _describe_encode_error(item: Mapping[str, Any], err: Exception) -> str:
    for name, value in item.items():
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return f"field '{name}' is not valid UTF-8 (it holds an undecodable byte sequence)"
    return f"its request cannot be encoded as JSON ({err})"
