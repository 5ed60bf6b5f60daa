"""AsyncSessionNotes: the asyncio twin of ``session.notes``."""

from __future__ import annotations

import datetime as dt
from typing import Any

from ..features._duration import Duration
from ..features.notes import NoteRead, SessionNotes
from ._worker import Worker

__all__ = ["AsyncSessionNotes"]


class AsyncSessionNotes:
    """Stamped notes of one session, keyed by author. Get it as ``session.notes``."""

    def __init__(self, notes: SessionNotes, worker: Worker) -> None:
        self._notes = notes
        self._worker = worker

    async def write(self, author: str, value: Any) -> dt.datetime:
        """Replace ``author``'s note with ``value``, stamped now; returns the stamp (UTC)."""
        return await self._worker.run(lambda: self._notes.write(author, value))

    async def read(self, author: str, max_age: Duration | None = None) -> NoteRead:
        """``author``'s note: not ready if never written, stale if older than ``max_age``."""
        return await self._worker.run(lambda: self._notes.read(author, max_age))

    async def all(self, max_age: Duration | None = None) -> dict[str, NoteRead]:
        """Every author's note in this session."""
        return await self._worker.run(lambda: self._notes.all(max_age))

    async def delete(self, author: str) -> bool:
        """Remove ``author``'s note (readers then see "not ready"); True if there was one."""
        return await self._worker.run(lambda: self._notes.delete(author))
