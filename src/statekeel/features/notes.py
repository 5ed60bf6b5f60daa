"""Shared notes with staleness: one process leaves a stamped note, another reads it.

    s.notes.write("observer", {"issues": []})          # e.g. an async observer
    note = s.notes.read("observer", max_age="5m")      # the primary loop
    if not note.ready: ...                             # nothing written yet
    elif note.stale: ...                               # older than max_age
    else: use(note.value)

Each author has one record per session, ``session/<id>/notes/<author>``: a
write is one put, a read one get, so readers never block writers and no
pub/sub is needed. The note's time is the record's ``updated_at``; it expires
with the session.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Any

from ..core import SessionCore, layout
from ..core.validate import check_name
from ..errors import InvalidInputError
from ..models import to_datetime
from ..protocol import ANY, Delete, Put, Record, keys
from ._duration import Duration, maybe_seconds

__all__ = ["NoteRead", "SessionNotes"]


@dataclass(frozen=True, slots=True)
class NoteRead:
    """What ``session.notes.read(author, max_age=...)`` found."""

    author: str
    """Who wrote (or would write) the note."""
    ready: bool
    """False when ``author`` has not written a note yet."""
    value: Any
    """The note; None when not ready."""
    written_at: dt.datetime | None
    """When it was written (UTC); None when not ready."""
    age: float | None
    """Seconds since it was written; None when not ready."""
    stale: bool
    """True when older than ``max_age`` (never when no ``max_age`` was given)."""

    @property
    def fresh(self) -> bool:
        """Ready and not stale: safe to act on."""
        return self.ready and not self.stale


class SessionNotes:
    """The notes of one session, keyed by author. Get it as ``session.notes``."""

    def __init__(self, session: SessionCore) -> None:
        self._session = session
        self._store = session.core
        self._prefix = layout.note_prefix(session.id)

    def _key(self, author: str) -> str:
        return self._prefix + keys.escape(check_name(author, "a note author (e.g. 'observer')"))

    def write(self, author: str, value: Any) -> dt.datetime:
        """Replace ``author``'s note with ``value``, stamped now; returns the stamp (UTC)."""
        key = self._key(author)
        data, codec = self._store.codec.encode(value, f"session[{self._session.id!r}].notes[{author!r}]", key)
        rec = self._session.apply(lambda exp: [Put(key, data, codec, ANY, exp)])[0]
        assert isinstance(rec, Record)
        stamp = to_datetime(rec.updated_at)
        assert stamp is not None
        return stamp

    def read(self, author: str, max_age: Duration | None = None) -> NoteRead:
        """``author``'s note: not ready if never written, stale if older than ``max_age``."""
        limit = maybe_seconds(max_age, "max_age")
        rec = self._store.backend.get(self._key(author))
        if rec is None:
            return NoteRead(author, False, None, None, None, False)
        return self._note(author, rec, limit)

    def _note(self, author: str, rec: Record, limit: float | None) -> NoteRead:
        age = max(0.0, time.time() - rec.updated_at)
        value = self._store.codec.decode(rec.data, rec.codec, rec.key)
        return NoteRead(author, True, value, to_datetime(rec.updated_at), age, limit is not None and age > limit)

    def all(self, max_age: Duration | None = None) -> dict[str, NoteRead]:
        """Every author's note in this session."""
        limit = maybe_seconds(max_age, "max_age")
        out: dict[str, NoteRead] = {}
        after: str | None = None
        while recs := self._store.backend.scan(self._prefix, after=after, limit=500):
            for rec in recs:
                author = keys.unescape(rec.key[len(self._prefix) :])
                out[author] = self._note(author, rec, limit)
            after = recs[-1].key
        return out

    def delete(self, author: str) -> bool:
        """Remove ``author``'s note (readers then see "not ready"); True if there was one."""
        return bool(self._store.backend.apply([Delete(self._key(author))])[0])
