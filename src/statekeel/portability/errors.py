"""Errors of export, import, copy and backup; all are :class:`~statekeel.StoreError`.

    StoreError
    ├── NotAStoreError
    │   └── NotAnExportError        the folder is not a statekeel export at all
    ├── IncompleteExportError       no manifest, or files that no longer match it
    ├── ImportConflictError         the target holds other data under the same keys
    └── VerificationError           a copy, export or import does not match its source
"""

from __future__ import annotations

from ..errors import NotAStoreError, StoreError

__all__ = ["NotAnExportError", "IncompleteExportError", "ImportConflictError", "VerificationError"]

LISTED = 10
"""How many differences or conflicts a message names; the rest are counted."""


def _listing(items: list[str], total: int) -> str:
    shown = "; ".join(items[:LISTED])
    more = total - min(total, LISTED)
    return shown + (f"; … and {more} more" if more else "")


class NotAnExportError(NotAStoreError):
    """The folder holds no statekeel export (no ``manifest.json``, no store marker)."""


class IncompleteExportError(StoreError):
    """The export was never finished, or its files changed after it was written."""


class ImportConflictError(StoreError):
    """The target already holds different data under keys the export has; nothing was imported."""

    def __init__(self, conflicts: list[str], total: int) -> None:
        super().__init__(
            f"the target already holds different data for {total} record(s)/log(s) of the export "
            f"({_listing(conflicts, total)}); nothing was imported. Use on_conflict='skip' to keep "
            "the target's data or on_conflict='overwrite' to replace it (CLI: --on-conflict)"
        )
        self.conflicts = conflicts
        self.total = total


class VerificationError(StoreError):
    """The target does not hold exactly what the source holds."""

    def __init__(self, what: str, differences: list[str], total: int) -> None:
        super().__init__(
            f"verification failed: {what} differs in {total} place(s) ({_listing(differences, total)}); "
            "re-run the copy (it resumes and overwrites), and make sure nothing writes to the source meanwhile"
        )
        self.differences = differences
        self.total = total
