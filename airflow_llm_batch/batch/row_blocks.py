"""Result lines and result rows in blocks, as columns: the records of the Results task's columnar path.

Apart from ``records.py`` because DAG files import that one (through the operators): these are
needed only when results are read, and three dataclasses cost a DAG parse about 3 ms.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from airflow_llm_batch.batch.records import ItemResult, RawOutcome


@dataclass(slots=True)
class OutcomeBlock:
    """Many result lines at once, as columns: the columnar path of the Results task.

    Index ``i`` of the columns is one line of the provider's file, in file order. For most lines it
    is what the backend would make of the line alone: ``RawOutcome(custom_ids[i], succeeded=True,
    text=texts[i], model=models[i], input_tokens=..., output_tokens=..., finish_reason=...)``.
    The lines the backend reads the general way (errors, refusals, any unusual shape) are in
    ``others`` by index, their ``RawOutcome`` whole; only their ``custom_ids`` entry is filled in.
    """

    custom_ids: list[str]
    texts: list[str | None]
    models: list[str | None]
    input_tokens: list[int | None]
    output_tokens: list[int | None]
    finish_reasons: list[str | None]
    others: dict[int, RawOutcome] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.custom_ids)

    def outcome(self, index: int) -> RawOutcome:
        """Line ``index`` as the one-line path reads it."""
        other = self.others.get(index)
        if other is not None:
            return other
        return RawOutcome(
            custom_id=self.custom_ids[index],
            succeeded=True,
            text=self.texts[index],
            model=self.models[index],
            input_tokens=self.input_tokens[index],
            output_tokens=self.output_tokens[index],
            finish_reason=self.finish_reasons[index],
        )


@dataclass(frozen=True, slots=True)
class Same:
    """A column in which every row of a :class:`RowBlock` holds ``value``."""

    value: Any


@dataclass(slots=True)
class RowBlock:
    """Consecutive result rows as columns, for sinks that write columns (Parquet).

    :param columns: one entry per name of ``ITEM_RESULT_COLUMNS``, in that order: a list of
        ``length`` values, or :class:`Same`. The ``json`` column holds the JSON *text* a results
        file stores for the structured output (``orjson.dumps(row.json)``), not the object.
    :param general_rows: the rows of the block built one by one (failures, unusual lines), with
        their ``custom_id``, in order: the summary and the failed-items file read them.
    :param usual: how many rows are not in ``general_rows`` (all succeeded), and their tokens.
    """

    length: int
    columns: dict[str, list[Any] | Same]
    general_rows: list[tuple[ItemResult, str]]
    usual: int
    usual_input_tokens: int
    usual_output_tokens: int
