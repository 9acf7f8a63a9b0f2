"""What a job's cleanup did at the provider: deleted, already gone, or kept and why.

The providers cap what an account may store (OpenAI 100 GB of files per organization, Azure
OpenAI 500 files without an expiry, Gemini 20 GB; ``shared/reference/real-service-edges.md``), and
every batch leaves an input file and result files behind. Once a job's results are written to the
work dir nothing reads them again (a retry round reads its requests and failed ids from the work
dir), so the Results task deletes them. A delete that fails never fails the task: the results are
safe, and the file expires at the provider anyway; the summary says what was kept and why.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

# ``cleanup=`` of the Results task: after the results are written, delete the job's files at the
# provider (the default), also its batches where the provider allows it (Anthropic), or keep all.
CLEANUP_MODES = ("after_results", "after_results_and_batches", "never")


def check_cleanup_mode(value: str) -> str:
    if value not in CLEANUP_MODES:
        raise ValueError(
            f"cleanup must be one of {CLEANUP_MODES}, not {value!r}: 'after_results' deletes the job's files "
            "at the provider once its results are written, 'never' keeps them until they expire"
        )
    return value


@dataclass
class StorageCleanup:
    """One job's cleanup at the provider.

    :param deleted: ids of the files (and batches) deleted, or found already gone (404).
    :param kept: ``{"id", "reason"}`` of each one that could not be deleted.
    """

    deleted: list[str] = field(default_factory=list)
    kept: list[dict[str, str]] = field(default_factory=list)

    def delete(
        self, resource_id: str, call: Callable[[str], Any], kept_reason: Callable[[Exception], str | None] | None = None
    ) -> None:
        """``call(resource_id)``; a 404 counts as deleted, any other error is kept with its reason.

        :param kept_reason: a provider's own explanation for an error it knows (else a generic one).
        """
        try:
            call(resource_id)
        except Exception as error:
            if _status(error) == 404:
                self.deleted.append(resource_id)
                return
            reason = (kept_reason(error) if kept_reason else None) or (
                f"the delete failed ({type(error).__name__}, HTTP {_status(error)}); it expires at the provider"
            )
            log.warning("Could not delete %s at the provider: %s", resource_id, reason)
            self.kept.append({"id": resource_id, "reason": reason})
        else:
            self.deleted.append(resource_id)

    def to_dict(self) -> dict[str, Any]:
        return {"deleted": len(self.deleted), "deleted_ids": self.deleted, "kept": self.kept}


def _status(error: BaseException) -> int | None:
    # openai and anthropic: ``status_code``; google.genai: ``code``.
    for name in ("status_code", "code"):
        value = getattr(error, name, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None
