"""The usual Submit pass a block of items at a time, in C-level loops (``docs/performance.md``).

The usual job renders a prompt template through the backend's line encoder, and its items are
dicts with a string id and every field a string. For such a job the per-item pass of
``prepare.py`` spent most of its time in Python calls around work done in C. Here a block of
``BLOCK_ITEMS`` items is taken whole when every decision the per-item pass would make on it is
the usual one, each decided for the block at once with built-ins over lists: every item a
``dict``, every id a non-blank ``str`` that repeats no other and that the provider accepts as it
is, every field there and a ``str``, every line encodable and under the size limits, no problem
found so far. Nothing is changed before all of that is known; a block that fails any of it goes
to the per-item pass whole, which decides, and words every problem, as it always did.
``tests/bench/test_prepare_blocks_agree.py`` holds the two to the same files, fingerprint and
errors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from operator import methodcaller
from typing import Any, Protocol

import orjson

from airflow_llm_batch.batch.backends.base import LineEncoder
from airflow_llm_batch.batch.unique_ids import SeenIds

BLOCK_ITEMS = 1024


class BlockPass:
    """The items of a pass as ``(position, item)`` pairs for the per-item pass, minus the blocks
    ``take`` took; ``count`` is the number of items read.

    :param take: ``take(block, first_position)``: writes the block and returns ``True``, or
        returns ``False`` having changed nothing (:class:`BlockTaker`). ``None``: every item
        goes to the per-item pass.
    """

    def __init__(self, items: Iterable[Any], take: Callable[[list[Any], int], bool] | None) -> None:
        self._items = items
        self.take = take
        self.count = 0

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        take = self.take
        if take is None:
            for pair in enumerate(self._items):
                self.count += 1
                yield pair
            return
        iterator = iter(self._items)
        while block := list(islice(iterator, BLOCK_ITEMS)):
            position = self.count
            self.count += len(block)
            if not take(block, position):
                yield from enumerate(block, position)


# What the block path asks of ``prepare.py``'s parts (typed here: that module imports this one).
class _Mapper(Protocol):
    def keeps_all(self, user_ids: list[str]) -> bool: ...


class _Chunks(Protocol):
    def add_all(self, model: str, custom_ids: list[str], user_ids: list[str], lines: list[bytes]) -> None: ...


class _Problems(Protocol):
    total: int


class BlockTaker:
    """Takes a block of items when each is the usual one (see the module's docstring)."""

    def __init__(
        self,
        *,
        id_field: str,
        render_all: Callable[[list[dict[str, Any]]], list[str] | None],
        encoder: LineEncoder,
        mapper: _Mapper,
        seen: SeenIds,
        chunks: _Chunks,
        problems: _Problems,
        max_line_bytes: int,
    ) -> None:
        assert encoder.encode_all is not None
        self._get_id = methodcaller("get", id_field)
        self._render_all, self._encode_all, self._model = render_all, encoder.encode_all, encoder.model
        self._mapper, self._seen, self._chunks, self._problems = mapper, seen, chunks, problems
        self._max_line_bytes = max_line_bytes

    def __call__(self, block: list[Any], first_position: int) -> bool:
        if self._problems.total or set(map(type, block)) != {dict}:
            return False
        ids = list(map(self._get_id, block))
        if set(map(type, ids)) != {str} or not all(map(str.strip, ids)) or not self._seen.all_new(ids):
            return False
        texts = self._render_all(block)
        if texts is None or not self._mapper.keeps_all(ids):
            return False
        try:
            lines = self._encode_all(ids, texts)
        except orjson.JSONEncodeError:  # e.g. a lone surrogate: the per-item pass names the field
            return False
        if max(map(len, lines)) > self._max_line_bytes:
            return False
        self._seen.add_all(ids, first_position)
        self._chunks.add_all(self._model, ids, ids, lines)
        return True
