"""AsyncSessionNotes: the asyncio twin of ``session.notes``."""

from __future__ import annotations

from ..features.notes import SessionNotes
from ._generated import _SessionNotesForwards
from ._worker import Worker

__all__ = ["AsyncSessionNotes"]


class AsyncSessionNotes(_SessionNotesForwards):
    """Stamped notes of one session, keyed by author. Get it as ``session.notes``.

    Every method (``write``, ``read``, ``all``, ``delete``) is a plain forward,
    generated into ``_SessionNotesForwards``.
    """

    def __init__(self, notes: SessionNotes, worker: Worker) -> None:
        self._notes = notes
        self._worker = worker
