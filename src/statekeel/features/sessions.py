"""Sessions: append-only history, session-scoped state, status, heartbeat, TTL.

A session's records all live in its partition ``session/<id>`` (see
:mod:`statekeel.core.layout`); every write goes through the one session write
path, :mod:`statekeel.core.session_write`, which also renews the TTL.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ..core import Core, SessionCore, SessionWrites, layout
from ..core.session_write import RENEW_FACTOR
from ..core.validate import check_expect, check_int, check_name, check_optional_name, stored_seconds
from ..errors import ConflictError, ExpiredError, InvalidInputError
from ..models import Item, Message, SessionInfo, SessionStatus, to_datetime
from ..protocol import ANY, Entry, Expect, Put, Record, keys
from . import checkpoint_prune
from . import checkpoints as _checkpoints
from .history_view import visible_entries
from ._duration import Duration, maybe_seconds
from .decisions import DecisionContext
from .notes import SessionNotes
from .session_index import check_status, put_meta, session_info, set_status
from .state import Scope, StateView

__all__ = ["Session", "SessionBatch", "SessionState", "find_session", "open_session"]


class SessionState(StateView):
    """State of scope ``session:<id>``: writes renew the session's TTL and heartbeat."""

    def __init__(self, session: SessionCore) -> None:
        super().__init__(session.core, Scope("session", session.id))
        self._session = session

    def put(self, key: str, value: Any, *, expect: Expect = ANY, ttl: Duration | None = None) -> Item:
        writes = SessionWrites(puts=[(key, value, check_expect(expect), maybe_seconds(ttl, "ttl"))])
        return self._item(self._session.commit(writes).records[0])

    def delete(self, key: str, *, expect: Expect = ANY) -> bool:
        return self._session.commit(SessionWrites(deletes=[(key, check_expect(expect))])).deleted[0]


class Session:
    """One conversation: history, state and status. Get it from ``store.session(id)``."""

    def __init__(self, core: Core, session_id: str, meta: Record, resumed: SessionInfo | None) -> None:
        self._core = core
        self._backend = core.backend
        self.id = session_id
        self._log = layout.history_log(session_id)
        body = core.codec.decode(meta.data, meta.codec, meta.key)
        # a ttl that is not a sane duration (NaN, inf: older versions took them) reads as "never"
        ttl = stored_seconds(body.get("ttl"))
        self._sc = SessionCore(core, session_id, body.get("user"), ttl, meta.expires_at if ttl else None)
        self.resumed = resumed
        """How the session was found when opened (None if it was new): a resumed
        session whose status was ``crashed`` or that went stale is a recovery."""
        self.state = SessionState(self._sc)

    @property
    def user(self) -> str | None:
        """The user the session belongs to, if any."""
        return self._sc.user

    @property
    def ttl(self) -> float | None:
        """Seconds of inactivity after which the session expires; None = never."""
        return self._sc.ttl

    def __repr__(self) -> str:
        return f"<Session {self.id!r} user={self.user!r}>"

    # -- writing -------------------------------------------------------------
    def append(self, *messages: Any, state: Mapping[str, Any] | None = None) -> int:
        """Append ``messages`` (and write ``state``) in one atomic, durable batch.

        Returns the sequence number of the first appended message.
        """
        if state is not None and type(state) is not dict and not isinstance(state, Mapping):
            raise InvalidInputError(
                f"state= must be a mapping of state keys to values, got {type(state).__name__}"
            )
        if not messages and not state:
            raise InvalidInputError("append() needs at least one message (or state=)")
        writes = SessionWrites(list(messages), [(k, v, ANY, None) for k, v in (state or {}).items()])
        first = self._sc.commit(writes).first_seq
        assert first is not None or not messages
        return first or 0

    def batch(self) -> SessionBatch:
        """Group appends and state writes into one atomic commit: ``with s.batch() as b:``."""
        return SessionBatch(self)

    def heartbeat(self) -> None:
        """Record that the agent is alive (what stale detection looks at)."""
        self._sc.commit(SessionWrites())

    # -- reading -------------------------------------------------------------
    def messages(
        self, last: int | None = None, *, start: int = 1, stop: int | None = None, include_hidden: bool = False
    ) -> list[Message]:
        """History entries with their sequence numbers and times, oldest first.

        ``last=N`` reads only the newest N (cost O(N)); ``start``/``stop`` select
        ``start <= seq < stop``. Entries hidden by :meth:`restore` are skipped
        unless ``include_hidden=True`` (they are kept, never deleted).
        """
        if not _wants_any(last):
            return []
        check_int(start, "start")
        if stop is not None:
            check_int(stop, "stop")
        entries = self._entries(last, start, stop, self._view(include_hidden))
        values = self._core.codec.decode_many([(e.data, e.codec) for e in entries], self._log)
        return [
            Message(e.seq, v, to_datetime(e.created_at))  # type: ignore[arg-type]
            for e, v in zip(entries, values)
        ]

    def _view(self, include_hidden: bool) -> Record | None:
        """The hidden-ranges record left by restore(), or None (never restored, or asked for all)."""
        return None if include_hidden else self._backend.get(layout.session_view_key(self.id))

    def _entries(self, last: int | None, start: int, stop: int | None, view: Record | None) -> list[Entry]:
        if view is None:  # never restored: one point read more than the plain log read
            return self._backend.read(self._log, start=start, stop=stop, limit=last, reverse=last is not None)
        return visible_entries(self._core, view, self._log, start, stop, last)

    def history(self, last: int | None = None, *, include_hidden: bool = False) -> list[Any]:
        """The appended values, oldest first; ``last=N`` costs O(N), not O(history)."""
        if not _wants_any(last):
            return []
        view = self._view(include_hidden)
        if view is None:  # the backend's fast path, no Entry objects
            items = self._backend.read_values(self._log, limit=last, reverse=last is not None)
        else:
            items = [(e.data, e.codec) for e in self._entries(last, 1, None, view)]
        return self._core.codec.decode_many(items, self._log)

    def __len__(self) -> int:
        info = self._backend.log_info(self._log)
        return 0 if info is None else info.last_seq - info.first_seq + 1

    def info(self) -> SessionInfo:
        """Status, timestamps and TTL as stored now."""
        rec = self._backend.get(layout.session_meta_key(self.id))
        if rec is None:
            raise ExpiredError(f"session {self.id!r} no longer exists (expired or deleted)")
        return session_info(self._core, self.id, rec)

    def is_stale(self, after: Duration) -> bool:
        """True when active but without a write or heartbeat for ``after``."""
        secs = maybe_seconds(after, "after")
        assert secs is not None
        return self.info().is_stale(secs)

    # -- status --------------------------------------------------------------
    def set_status(self, status: SessionStatus) -> SessionInfo:
        """Set active / completed / crashed (compare-and-set on the session record)."""
        check_status(status)
        return set_status(self._core, self.id, status)

    def complete(self) -> SessionInfo:
        """Mark the session completed."""
        return self.set_status("completed")

    def mark_crashed(self) -> SessionInfo:
        """Mark the session crashed (recovery will find it)."""
        return self.set_status("crashed")

    # -- decisions and notes (statekeel.features.decisions / .notes) ----------
    def decide(self, decision: str, *, rationale: str | None = None, action: Any = None) -> DecisionContext:
        """``with s.decide(...) as d:`` records the decision durably before the block runs
        and its outcome (or error) when the block ends."""
        return DecisionContext(self._sc, decision, rationale, action)

    @property
    def notes(self) -> SessionNotes:
        """Stamped notes left in this session by other processes, read with a staleness limit."""
        return SessionNotes(self._sc)

    # -- checkpoints (statekeel.features.checkpoints) ---------------------------
    def checkpoint(
        self, label: str | None = None, *, full_every: int = _checkpoints.DEFAULT_FULL_EVERY,
        compress: str | None = None,
    ) -> _checkpoints.Checkpoint:
        """Snapshot the state and history position; stores only what changed since the last one."""
        return _checkpoints.create(self._sc, label, full_every=full_every, compress=compress)

    def checkpoints(self) -> list[_checkpoints.Checkpoint]:
        """Every checkpoint of this session, oldest first."""
        return _checkpoints.list_checkpoints(self._sc)

    def restore(self, cp: _checkpoints.Checkpoint | int | str) -> _checkpoints.Checkpoint:
        """Roll the state back to ``cp``; later history is hidden (``include_hidden=True`` shows it)."""
        return _checkpoints.restore(self._sc, cp)

    def fork(self, cp: _checkpoints.Checkpoint | int | str, *, into: str) -> Session:
        """A new session ``into`` holding ``cp``'s state and visible history up to it."""
        check_name(into, "into (the new session id)")

        def open_new() -> SessionCore:
            return open_session(self._core, into, self.user, self.ttl)._sc

        _checkpoints.fork(self._sc, cp, into, open_new)
        return open_session(self._core, into, None, None)

    def diff(
        self, a: _checkpoints.Checkpoint | int | str, b: _checkpoints.Checkpoint | int | str | None = None
    ) -> _checkpoints.CheckpointDiff:
        """What changed from checkpoint ``a`` to ``b`` (default: to the current state)."""
        return _checkpoints.diff(self._sc, a, b)

    def hidden_ranges(self) -> list[tuple[int, int]]:
        """The history seq ranges (inclusive) that restores hid; ``include_hidden=True`` reads them."""
        return _checkpoints.hidden_ranges(self._sc)

    def prune_checkpoints(self, *, keep_last: int | None = None, newer_than: Duration | None = None) -> int:
        """Delete old checkpoints, keeping what is kept restorable; returns how many went."""
        return checkpoint_prune.prune(self._sc, keep_last=keep_last, newer_than=newer_than)


def _wants_any(last: int | None) -> bool:
    """Validate ``last=`` (an int >= 0); False when it asks for nothing (``last=0``)."""
    return last is None or check_int(last, "last") != 0


class SessionBatch:
    """Collects appends and state writes; commits them atomically on exit."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._writes = SessionWrites()
        self.first_seq: int | None = None
        """After the block: the sequence number of the first appended message."""

    def append(self, *messages: Any) -> None:
        self._writes.messages.extend(messages)

    def put(self, key: str, value: Any, *, expect: Expect = ANY, ttl: Duration | None = None) -> None:
        self._writes.puts.append((key, value, check_expect(expect), maybe_seconds(ttl, "ttl")))

    def delete(self, key: str, *, expect: Expect = ANY) -> None:
        self._writes.deletes.append((key, check_expect(expect)))

    def __enter__(self) -> SessionBatch:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.first_seq = self._session._sc.commit(self._writes).first_seq


# -- opening -------------------------------------------------------------------------
def open_session(core: Core, session_id: str, user: str | None, ttl: Duration | None) -> Session:
    """Get or create a session; a crashed one is set active again (a recovery)."""
    check_name(session_id, "a session id")
    check_optional_name(user, "user")
    ttl_s = maybe_seconds(ttl, "ttl")
    for _ in range(100):
        # the index entry too: a creation cut short by a crash (written by an older
        # version in two batches) left it out, and reopening lists the session again
        rec, listed = core.backend.get_many(
            [layout.session_meta_key(session_id), layout.session_index_key(session_id)]
        )
        try:
            if rec is None:
                if user is not None:  # tag the session's data with its subject before any is written
                    core.bind_subject(layout.partition("session", session_id), user)
                body = {"user": user, "status": "active", "ttl": ttl_s}
                expires = None if ttl_s is None else time.time() + ttl_s * RENEW_FACTOR
                return Session(core, session_id, put_meta(core, session_id, body, None, expires), None)
            return _reopen(core, session_id, rec, user, ttl_s, listed is not None)
        except ConflictError:
            continue
    raise ConflictError(layout.session_meta_key(session_id), None, None)


def _reopen(core: Core, session_id: str, rec: Record, user: str | None, ttl_s: float | None,
            listed: bool) -> Session:
    found = session_info(core, session_id, rec)
    if user is not None and found.user not in (None, user):
        raise InvalidInputError(
            f"session {session_id!r} belongs to user {found.user!r}, not {user!r}; use another session id"
        )
    owner = found.user or user
    ttl = found.ttl if ttl_s is None else ttl_s
    changed = owner != found.user or ttl != found.ttl or found.status == "crashed"
    if changed or not listed:
        body = {"user": owner, "status": "active" if changed else found.status, "ttl": ttl}
        expires = rec.expires_at if ttl == found.ttl or ttl is None else time.time() + ttl * RENEW_FACTOR
        rec = put_meta(core, session_id, body, rec.version, expires)
    return Session(core, session_id, rec, found)


def find_session(core: Core, session_id: str) -> Session | None:
    """The session as stored, or None: creates nothing and leaves its status as it is."""
    check_name(session_id, "a session id")
    rec = core.backend.get(layout.session_meta_key(session_id))
    return None if rec is None else Session(core, session_id, rec, session_info(core, session_id, rec))
