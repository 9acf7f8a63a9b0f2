"""Every error this package raises on purpose derives from :class:`LLMBatchError`.

The messages are written for the person reading the task log: they say which item, which
field, and what to change. They never carry an API key or an item's text.
"""

from __future__ import annotations

from typing import Any


class LLMBatchError(Exception):
    """Base class of the package's errors."""


class InvalidInputError(LLMBatchError, ValueError):
    """The input cannot become a batch. Raised before any API call.

    :param problems: one line per problem, each naming the item and the field.
    :param total: how many problems were found in all (``problems`` may list only the first ones).
    """

    def __init__(self, problems: list[str], total: int | None = None) -> None:
        self.problems = list(problems)
        self.total = total if total is not None else len(problems)
        if self.total == 1:
            message = self.problems[0]
        else:
            shown = "\n  - ".join(self.problems)
            more = self.total - len(self.problems)
            tail = f"\n  ... and {more} more" if more > 0 else ""
            message = f"{self.total} input problems, nothing was submitted:\n  - {shown}{tail}"
        super().__init__(message)


class ConfigurationError(LLMBatchError, ValueError):
    """An operator or connection is set up in a way that cannot work (wrong provider, kind, ...)."""


class BatchFailedError(LLMBatchError):
    """A whole batch failed at the provider (input validation, billing, ...).

    Batch-level failures are reported as such and never turned into per-item rows.
    """


class BatchRefusedError(LLMBatchError):
    """The provider refused a status call for good while the task waited (a rejected key, 401/403).

    The message names the connection and the batch, never the key.
    """


class BatchTimeoutError(LLMBatchError):
    """The deadline fixed at submit time passed before every batch ended."""


class StateConflictError(LLMBatchError):
    """The job's record cannot be used as it is: it belongs to other input, is damaged, or another
    task holds the right to create this job's batches."""


class JobFilesMissingError(LLMBatchError, FileNotFoundError):
    """The job's request files are gone from the work dir (deleted, or on another worker's disk)."""


class BudgetExceededError(LLMBatchError):
    """The Submit task's cost estimate is above its ``max_cost``. Raised before any API call.

    :param estimate: the estimated batch cost in USD.
    :param max_cost: the limit the task was given.
    """

    def __init__(self, message: str, estimate: float | None = None, max_cost: float | None = None) -> None:
        super().__init__(message)
        self.estimate = estimate
        self.max_cost = max_cost


class QualityGateError(LLMBatchError):
    """A finished step's results are below a quality gate the user set to fail (``min_success_rate``).

    :param summary: the task's summary, with the tripped gates in ``gates``; the task still keeps it.
    """

    def __init__(self, message: str, summary: dict[str, Any]) -> None:
        super().__init__(message)
        self.summary = summary
