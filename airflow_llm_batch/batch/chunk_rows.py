"""One batch's result rows: its result lines reconciled with the chunk's id map, then the unseen ids.

The rules of a row, for both ways through the Results task (``results.py``): a line for an unknown
id is ignored with a warning, a second line for an id is ignored, an id with no line gets a
``missing`` (or ``expired`` / ``cancelled``) row, and a line's outcome becomes a row by
:func:`to_item_result` (structured output validated, failures mapped onto the taxonomy).
"""

from __future__ import annotations

import itertools
import logging
import operator
from collections.abc import Iterator
from typing import Any

from airflow_llm_batch.batch import jsonl
from airflow_llm_batch.batch.job import JobLayout
from airflow_llm_batch.batch.manifest import Manifest
from airflow_llm_batch.batch.records import (
    ITEM_RESULT_COLUMNS,
    BatchOutcome,
    BatchStatus,
    ErrorType,
    ItemResult,
    ItemStatus,
    RawOutcome,
)
from airflow_llm_batch.batch.row_blocks import OutcomeBlock, RowBlock, Same
from airflow_llm_batch.batch.schema import OutputValidator

log = logging.getLogger(__name__)

_UNSEEN_BY_OUTCOME = {
    BatchOutcome.EXPIRED: (ErrorType.EXPIRED, "the batch expired before this item ran"),
    BatchOutcome.CANCELLED: (ErrorType.CANCELLED, "the batch was cancelled before this item ran"),
}


class ChunkRows:
    """One batch's rows: its result lines reconciled with the chunk's id map, then the unseen ids.

    The lines come one by one (:meth:`row`) or, from backends that read many at once, as columns
    (:meth:`block`); both decide exactly alike, line by line, and tests compare them.
    """

    def __init__(
        self, manifest: Manifest, layout: JobLayout, chunk: int, status: BatchStatus, validator: OutputValidator | None
    ) -> None:
        # custom_id -> the user's id, or ``_SEEN`` once a line of it has been read (no set of the
        # ids seen: a second table of fifty thousand strings cost as much again to fill and probe).
        self.ids: dict[str, Any] = jsonl.read_pairs(layout.ids_file(chunk))
        self.seen = 0  # ids with a result line so far (late output is re-read while this is short)
        self.unreadable = 0  # result lines with no id of this chunk (malformed, or an unknown id)
        self.status = status
        self.validator = validator
        self.model = manifest.model
        self.common = {"provider": manifest.provider, "batch_id": status.batch_id, "attempt": manifest.attempt}

    def accept(self, custom_id: str) -> Any:
        """The user's id for a result line, or ``None`` when the line is to be ignored."""
        ids = self.ids
        user_id = ids.get(custom_id)
        if user_id is None:
            self.unreadable += 1  # a line the provider wrote all the same: not late output
            if custom_id:
                log.warning("Batch %s returned a result line for an unknown id; ignored", self.status.batch_id)
            else:
                log.warning("Batch %s returned a malformed result line; ignored", self.status.batch_id)
            return None
        if user_id is _SEEN:
            return None  # a second line for the item, or a line already read before a download restarted
        ids[custom_id] = _SEEN
        self.seen += 1
        return user_id

    def row(self, outcome: RawOutcome) -> tuple[ItemResult, str] | None:
        user_id = self.accept(outcome.custom_id)
        if user_id is None:
            return None
        return to_item_result(user_id, outcome, self.validator, self.model, self.common), outcome.custom_id

    def block(self, block: OutcomeBlock) -> RowBlock | None:
        """The rows of a block of lines, as columns; the unusual ones built by :func:`to_item_result`."""
        custom_ids, length = block.custom_ids, len(block)
        user_ids: list[Any] = list(map(self.ids.get, custom_ids))
        marks = dict.fromkeys(custom_ids, _SEEN)
        keep: list[int] | None = None
        if len(marks) != length or None in user_ids or _SEEN in user_ids:  # unknown ids, or lines seen before
            keep = [index for index, custom_id in enumerate(custom_ids) if self.accept(custom_id) is not None]
        else:
            self.ids.update(marks)
            self.seen += length
        columns = self._usual_columns(block, user_ids)
        general = set(block.others)
        if self.validator is not None:
            general.update(_positions_of_none(columns["json"]))  # type: ignore[arg-type]
        if keep is not None:
            general.intersection_update(keep)
        general_rows = []
        for index in sorted(general):
            row = to_item_result(user_ids[index], block.outcome(index), self.validator, self.model, self.common)
            general_rows.append((row, custom_ids[index]))
            _patch(columns, length, index, row)
        if keep is not None and len(keep) != length:
            if not keep:
                return None
            pick = [operator.itemgetter(index) for index in keep]
            for name, column in columns.items():
                if type(column) is list:
                    columns[name] = [get(column) for get in pick]
            length = len(keep)
        return RowBlock(
            length=length,
            columns=columns,
            general_rows=general_rows,
            usual=length - len(general_rows),
            usual_input_tokens=_token_sum(columns["input_tokens"]) - sum(r.input_tokens or 0 for r, _ in general_rows),
            usual_output_tokens=_token_sum(columns["output_tokens"])
            - sum(r.output_tokens or 0 for r, _ in general_rows),
        )

    def _usual_columns(self, block: OutcomeBlock, user_ids: list[Any]) -> dict[str, list[Any] | Same]:
        """Every row as a usual line makes it: succeeded, its output valid where the check is sure."""
        models: list[Any] = block.models
        if not all(models):
            models = [model or self.model for model in models]
        validator = self.validator
        return {
            "id": user_ids,
            "status": Same(ItemStatus.SUCCEEDED),
            "text": block.texts,
            "json": Same(None) if validator is None else validator.stored_texts(block.texts),  # type: ignore[dict-item]
            "embedding": Same(None),
            "error_type": Same(None),
            "error_message": Same(None),
            "retryable": Same(False),
            "provider": Same(self.common["provider"]),
            "model": _same_or_list(models),
            "batch_id": Same(self.common["batch_id"]),
            "attempt": Same(self.common["attempt"]),
            "input_tokens": block.input_tokens,  # type: ignore[dict-item]
            "output_tokens": block.output_tokens,  # type: ignore[dict-item]
            "finish_reason": _same_or_list(block.finish_reasons),
            "reused_from": Same(None),
        }

    def unseen_rows(self) -> Iterator[tuple[ItemResult, str]]:
        """A row for every id of the chunk with no result line: missing, expired or cancelled; for a
        batch that failed as a whole, a permanent ``invalid_request`` row with the provider's reason."""
        unseen_type, unseen_message = _UNSEEN_BY_OUTCOME.get(
            self.status.outcome or BatchOutcome.COMPLETED,
            (ErrorType.MISSING, "the provider returned no result for this item"),
        )
        if self.status.outcome is BatchOutcome.FAILED:
            reason = "; ".join(self.status.errors) or "the provider gave no reason"
            unseen_type, unseen_message = (
                ErrorType.INVALID_REQUEST,
                f"batch {self.status.batch_id} failed as a whole: {reason}",
            )
        yield from self.rows_for_unseen(unseen_type, unseen_message)

    def rows_for_unseen(self, unseen_type: ErrorType, unseen_message: str) -> Iterator[tuple[ItemResult, str]]:
        """A failed row of this type and message for every id of the chunk with no result line."""
        ids = self.ids
        unseen = map(operator.is_not, ids.values(), itertools.repeat(_SEEN))
        for custom_id, user_id in itertools.compress(ids.items(), unseen):
            row = ItemResult.failure(user_id, unseen_type, unseen_message, model=self.model, **self.common)
            yield row, custom_id


_row_values = operator.attrgetter(*ITEM_RESULT_COLUMNS)
_SEEN: Any = object()  # (an id map's value once its item has a row)


def _patch(columns: dict[str, list[Any] | Same], length: int, index: int, row: ItemResult) -> None:
    """Put a row built the general way at ``index`` of the columns."""
    for name, value in zip(ITEM_RESULT_COLUMNS, _row_values(row), strict=True):
        if name == "json" and value is not None:
            value = jsonl.dumps(value).decode()  # what a results file stores (see ``RowBlock``)
        column = columns[name]
        if type(column) is Same:
            if column.value is value:
                continue
            column = columns[name] = [column.value] * length
        column[index] = value  # type: ignore[index]


def _same_or_list(values: list[Any]) -> list[Any] | Same:
    """:class:`Same` for a column of one repeated value (the model, the finish reason): cheaper to
    count (a C loop) than to convert to Arrow value by value."""
    if values and values.count(values[0]) == len(values):
        return Same(values[0])
    return values


def _positions_of_none(values: list[Any]) -> Iterator[int]:
    """Where ``values`` holds ``None``, found by ``list.index`` (a C loop)."""
    index = -1
    try:
        while True:
            index = values.index(None, index + 1)
            yield index
    except ValueError:
        return


def _token_sum(column: list[Any] | Same) -> int:
    if type(column) is Same:
        return 0
    return sum(filter(None, column))  # type: ignore[arg-type]


def to_item_result(
    user_id: str,
    outcome: RawOutcome,
    validator: OutputValidator | None,
    model: str,
    common: dict[str, Any],
) -> ItemResult:
    reason = None
    if outcome.succeeded and validator is not None:
        parsed, reason = validator.parse(outcome.text)
        if reason is None:  # the usual line: one construction, nothing to change afterwards
            return ItemResult(
                id=user_id,
                status=ItemStatus.SUCCEEDED,
                text=outcome.text,
                json=parsed,
                embedding=outcome.embedding,
                model=outcome.model or model,
                input_tokens=outcome.input_tokens,
                output_tokens=outcome.output_tokens,
                finish_reason=outcome.finish_reason,
                **common,
            )
    row = ItemResult(
        id=user_id,
        status=ItemStatus.SUCCEEDED if outcome.succeeded else ItemStatus.FAILED,
        text=outcome.text,
        embedding=outcome.embedding,
        model=outcome.model or model,
        input_tokens=outcome.input_tokens,
        output_tokens=outcome.output_tokens,
        finish_reason=outcome.finish_reason,
        **common,
    )
    if not outcome.succeeded:
        error_type = outcome.error_type or ErrorType.SERVER_ERROR
        row.error_type = error_type.value
        row.error_message = outcome.error_message
        row.retryable = error_type.retryable
    elif reason is not None:  # the output did not validate
        row.status = ItemStatus.FAILED
        row.error_type = ErrorType.INVALID_OUTPUT.value
        row.error_message = f"output {reason}"
        row.retryable = True
    return row
