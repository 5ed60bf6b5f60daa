"""Idempotent session writes: a keyed append or batch is applied at most once within its window.

A write made with ``idempotency_key=k`` carries, in the same atomic batch, a
create-only Put (``expect=None``) of the record ``session/<id>/idem/<k>``
holding how many messages it appends. The first attempt that commits creates the record; any
later attempt with the same key — the natural retry after an
:class:`~statekeel.errors.UnavailableError` whose write may have been applied —
conflicts on it, so nothing of it is written, and it returns the original
result instead: the seq of the first message the original attempt appended
(the entries its batch appended carry the record's ``created_at``: every backend
stamps one batch with one time; None if they were trimmed meanwhile). This works
on every backend because it uses only the protocol's compare-and-set.

The window (default 24 h) is how long the record is kept: a retry within it is
deduplicated; the record expires after it (a session with a longer TTL keeps
it as long as the session, which only widens the window). A key is one
logical write: reusing it for different content within the window returns the
first write's result and stores nothing new.
"""

from __future__ import annotations

import time
from typing import Final

from ..core import SessionCore, SessionWrites, layout
from ..core.session_write import Committed
from ..core.validate import check_name
from ..errors import ConflictError
from ..protocol import Op, Put, Record

__all__ = ["DEFAULT_WINDOW", "commit_once", "keyed", "unkeyed"]

DEFAULT_WINDOW: Final = 24 * 3600.0
"""Seconds an idempotency key is remembered: retries within it are applied at most once."""

_PAGE: Final = 200
_SKEW: Final = 60.0
"""Seconds of clock difference between writers allowed for when looking back for a batch."""


def commit_once(sc: SessionCore, writes: SessionWrites, key: str, window: float = DEFAULT_WINDOW) -> Committed:
    """Commit ``writes`` unless ``key`` was already applied; then return the original result.

    Costs one more Put in the same batch and no extra round trip: a retry learns that
    the key was used from the batch's conflict on it."""
    with_key, rkey = keyed(sc, writes, key, window)
    try:
        done = sc.commit(with_key)
    except ConflictError:
        rec = sc.backend.get(rkey)
        if rec is None:
            raise  # a compare-and-set of the write itself failed, not the key
        return _replayed(sc, rec)
    return unkeyed(done)


def keyed(sc: SessionCore, writes: SessionWrites, key: str, window: float = DEFAULT_WINDOW) -> tuple[SessionWrites, str]:
    """``writes`` with the create-only record of ``key`` added (last), and that record's key: what
    :func:`commit_once` commits (the asyncio API commits it natively, :mod:`statekeel.aio._native`)."""
    check_name(key, "an idempotency_key")
    rkey = layout.idempotency_key(sc.id, key)
    data, codec = sc.core.codec.encode({"messages": len(writes.messages)}, f"idempotency key {key!r}", rkey)
    inner = writes.extra
    until = time.time() + window

    def extra(expires: float | None) -> list[Op]:
        return [*(inner(expires) if inner is not None else ()), Put(rkey, data, codec, None, until)]

    return SessionWrites(writes.messages, writes.puts, writes.deletes, extra, writes.heartbeat), rkey


def unkeyed(done: Committed) -> Committed:
    """The result of a :func:`keyed` write as the caller's writes give it (the key's record dropped)."""
    done.extra = done.extra[:-1]
    return done


def _replayed(sc: SessionCore, rec: Record) -> Committed:
    """The result of the attempt that created ``rec`` (nothing is written): the first entry
    its batch appended — found walking the history back from the newest entry, as far
    as entries appended after that batch (allowing for clock skew between writers)."""
    if not sc.core.codec.decode(rec.data, rec.codec, rec.key)["messages"]:
        return Committed(None, [], [], [])
    found: int | None = None
    stop: int | None = None
    while True:
        page = sc.backend.read(sc.keys.history, stop=stop, limit=_PAGE, reverse=True)
        for e in reversed(page):
            if e.created_at == rec.created_at:
                found = e.seq  # keep walking: the batch's first entry is the lowest
            elif e.created_at < rec.created_at - _SKEW or found is not None:
                return Committed(found, [], [], [])
        if len(page) < _PAGE:
            return Committed(found, [], [], [])
        stop = page[0].seq
