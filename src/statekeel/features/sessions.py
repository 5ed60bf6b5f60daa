"""Sessions: append-only history, session-scoped state, status, heartbeat, TTL.

Backend layout of session ``S`` (one partition, ``session/S``)::

    session/S/meta          {"user", "status", "ttl"}; updated_at is the heartbeat
    session/S/history       the append-only log of messages
    session/S/state/<key>   session-scoped state
    session/S/view          history ranges hidden by a checkpoint restore (see checkpoints.py)
    idx/sessions/S          {"user", "status"}: what listings scan

TTL: a session with ``ttl`` expires when it has been inactive for at least
``ttl`` (and at most 1.1 × ``ttl``): each write renews the expiry of everything
the session owns to ``now + 1.1 × ttl`` once less than ``ttl`` is left, so the
renewal costs one range update per tenth of the TTL, not one per write.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ..errors import ConflictError, ExpiredError, InvalidInputError, NotFoundError
from ..models import Item, SESSION_STATUSES, Message, SessionInfo, SessionStatus, to_datetime
from ..protocol import ANY, Entry, KEEP, Append, Delete, Expect, Expire, Op, Put, Record, Touch, keys
from . import checkpoints as _checkpoints
from ._duration import Duration, maybe_seconds
from .decisions import DecisionContext
from .notes import SessionNotes
from .state import Scope, StateView

if TYPE_CHECKING:
    from ..store import Store

__all__ = ["Session", "SessionBatch", "SessionState"]

RENEW_FACTOR = 1.1


def meta_key(session_id: str) -> str:
    return keys.join("session", session_id, "meta")


def index_key(session_id: str) -> str:
    return keys.join("idx", "sessions", session_id)


INDEX_PREFIX = keys.join("idx", "sessions") + "/"


@dataclass
class _Committed:
    """What one atomic session write produced."""

    first_seq: int | None
    records: list[Record]
    deleted: list[bool]


@dataclass
class _Writes:
    """What one atomic session write carries."""

    messages: list[Any] = field(default_factory=list)
    puts: list[tuple[str, Any, Expect, float | None]] = field(default_factory=list)
    deletes: list[tuple[str, Expect]] = field(default_factory=list)


class SessionState(StateView):
    """State of scope ``session:<id>``: writes renew the session's TTL and heartbeat."""

    def __init__(self, session: Session) -> None:
        super().__init__(session._store, Scope("session", session.id))
        self._session = session

    def put(self, key: str, value: Any, *, expect: Expect = ANY, ttl: Duration | None = None) -> Item:
        writes = _Writes(puts=[(key, value, expect, maybe_seconds(ttl, "ttl"))])
        return self._item(self._session._commit(writes).records[0])

    def delete(self, key: str, *, expect: Expect = ANY) -> bool:
        return self._session._commit(_Writes(deletes=[(key, expect)])).deleted[0]


class Session:
    """One conversation: history, state and status. Get it from ``store.session(id)``."""

    def __init__(self, store: Store, session_id: str, meta: Record, resumed: SessionInfo | None) -> None:
        self._store = store
        self._backend = store.backend
        self.id = session_id
        self._meta_key = meta_key(session_id)
        self._log = keys.join("session", session_id, "history")
        self._prefix = keys.join("session", session_id) + "/"
        body = store.codec.decode(meta.data, meta.codec, meta.key)
        self.user: str | None = body.get("user")
        self.ttl: float | None = body.get("ttl")
        self._expires_at = meta.expires_at
        self.resumed = resumed
        """How the session was found when opened (None if it was new): a resumed
        session whose status was ``crashed`` or that went stale is a recovery."""
        self.state = SessionState(self)

    def __repr__(self) -> str:
        return f"<Session {self.id!r} user={self.user!r}>"

    # -- writing -------------------------------------------------------------
    def append(self, *messages: Any, state: Mapping[str, Any] | None = None) -> int:
        """Append ``messages`` (and write ``state``) in one atomic, durable batch.

        Returns the sequence number of the first appended message.
        """
        if not messages and not state:
            raise InvalidInputError("append() needs at least one message (or state=)")
        writes = _Writes(list(messages), [(k, v, ANY, None) for k, v in (state or {}).items()])
        first = self._commit(writes).first_seq
        assert first is not None or not messages
        return first or 0

    def batch(self) -> SessionBatch:
        """Group appends and state writes into one atomic commit: ``with s.batch() as b:``."""
        return SessionBatch(self)

    def heartbeat(self) -> None:
        """Record that the agent is alive (what stale detection looks at)."""
        self._commit(_Writes())

    def _renewal(self) -> tuple[float | None, list[Op]]:
        if self.ttl is None:
            return None, []
        now = time.time()
        if self._expires_at is not None and self._expires_at >= now + self.ttl:
            return self._expires_at, []
        if self._expires_at is not None and self._expires_at <= now:
            self._check_alive()
        new = now + self.ttl * RENEW_FACTOR
        return new, [Expire(self._prefix, new)]

    def _check_alive(self) -> None:
        rec = self._backend.get(self._meta_key)
        if rec is None:
            raise ExpiredError(
                f"session {self.id!r} expired (ttl {self.ttl}s); open it again with store.session()"
            )
        self._expires_at = rec.expires_at

    def _commit(self, writes: _Writes) -> _Committed:
        expires, ops = self._renewal()
        codec = self._store.codec
        if writes.messages:
            items = tuple(
                codec.encode(m, f"session[{self.id!r}].append message {i + 1}", self._log)
                for i, m in enumerate(writes.messages)
            )
            ops.append(Append(self._log, items, KEEP if self.ttl is None else expires))
        append_at = len(ops) - 1 if writes.messages else None
        if not writes.messages:  # an append is itself the heartbeat (see session_info)
            ops.append(Touch(self._meta_key))
        puts_at = len(ops)
        for key, value, expect, ttl in writes.puts:
            full = self.state._full_key(key)
            data, name = codec.encode(value, f"session:{self.id}[{key!r}]", full)
            exp = time.time() + ttl if ttl is not None else expires
            ops.append(Put(full, data, name, expect, exp))
        ops.extend(Delete(self.state._full_key(k), e) for k, e in writes.deletes)
        results = self._backend.apply(ops)
        if expires is not None and expires != self._expires_at:
            self._expires_at = expires
            self._backend.apply([Touch(index_key(self.id), expires)])
        first = results[append_at] if append_at is not None else None
        puts_end = puts_at + len(writes.puts)
        return _Committed(
            first if isinstance(first, int) else None,
            [r for r in results[puts_at:puts_end] if isinstance(r, Record)],
            [bool(r) for r in results[puts_end:]],
        )

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
        entries = self._entries(last, start, stop, self._view(include_hidden))
        values = self._store.codec.decode_many([(e.data, e.codec) for e in entries], self._log)
        return [
            Message(e.seq, v, to_datetime(e.created_at))  # type: ignore[arg-type]
            for e, v in zip(entries, values)
        ]

    def _view(self, include_hidden: bool) -> Record | None:
        """The hidden-ranges record left by restore(), or None (never restored, or asked for all)."""
        return None if include_hidden else self._backend.get(_checkpoints.view_key(self.id))

    def _entries(self, last: int | None, start: int, stop: int | None, view: Record | None) -> list[Entry]:
        if view is None:  # never restored: one point read more than the plain log read
            return self._backend.read(self._log, start=start, stop=stop, limit=last, reverse=last is not None)
        return _checkpoints.visible_entries(self._store, view, self._log, start, stop, last)

    def history(self, last: int | None = None, *, include_hidden: bool = False) -> list[Any]:
        """The appended values, oldest first; ``last=N`` costs O(N), not O(history)."""
        if not _wants_any(last):
            return []
        view = self._view(include_hidden)
        if view is None:  # the backend's fast path, no Entry objects
            items = self._backend.read_values(self._log, limit=last, reverse=last is not None)
        else:
            items = [(e.data, e.codec) for e in self._entries(last, 1, None, view)]
        return self._store.codec.decode_many(items, self._log)

    def __len__(self) -> int:
        info = self._backend.log_info(self._log)
        return 0 if info is None else info.last_seq - info.first_seq + 1

    def info(self) -> SessionInfo:
        """Status, timestamps and TTL as stored now."""
        rec = self._backend.get(self._meta_key)
        if rec is None:
            raise ExpiredError(f"session {self.id!r} no longer exists (expired or deleted)")
        return session_info(self._store, self.id, rec)

    def is_stale(self, after: Duration) -> bool:
        """True when active but without a write or heartbeat for ``after``."""
        secs = maybe_seconds(after, "after")
        assert secs is not None
        return self.info().is_stale(secs)

    # -- status --------------------------------------------------------------
    def set_status(self, status: SessionStatus) -> SessionInfo:
        """Set active / completed / crashed (compare-and-set on the session record)."""
        if status not in SESSION_STATUSES:
            raise InvalidInputError(f"status must be one of {', '.join(SESSION_STATUSES)}, got {status!r}")
        return set_status(self._store, self.id, status)

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
        return DecisionContext(self, decision, rationale, action)

    @property
    def notes(self) -> SessionNotes:
        """Stamped notes left in this session by other processes, read with a staleness limit."""
        return SessionNotes(self)

    # -- checkpoints (statekeel.features.checkpoints) ---------------------------
    def checkpoint(
        self, label: str | None = None, *, full_every: int = _checkpoints.DEFAULT_FULL_EVERY,
        compress: str | None = None,
    ) -> _checkpoints.Checkpoint:
        """Snapshot the state and history position; stores only what changed since the last one."""
        return _checkpoints.create(self, label, full_every=full_every, compress=compress)

    def checkpoints(self) -> list[_checkpoints.Checkpoint]:
        """Every checkpoint of this session, oldest first."""
        return _checkpoints.list_checkpoints(self)

    def restore(self, cp: _checkpoints.Checkpoint | int | str) -> _checkpoints.Checkpoint:
        """Roll the state back to ``cp``; later history is hidden (``include_hidden=True`` shows it)."""
        return _checkpoints.restore(self, cp)

    def fork(self, cp: _checkpoints.Checkpoint | int | str, *, into: str) -> Session:
        """A new session ``into`` holding ``cp``'s state and visible history up to it."""
        return _checkpoints.fork(self, cp, into)

    def diff(
        self, a: _checkpoints.Checkpoint | int | str, b: _checkpoints.Checkpoint | int | str | None = None
    ) -> _checkpoints.CheckpointDiff:
        """What changed from checkpoint ``a`` to ``b`` (default: to the current state)."""
        return _checkpoints.diff(self, a, b)

    def prune_checkpoints(self, *, keep_last: int | None = None, newer_than: Duration | None = None) -> int:
        """Delete old checkpoints, keeping what is kept restorable; returns how many went."""
        return _checkpoints.prune(self, keep_last=keep_last, newer_than=newer_than)


def _wants_any(last: int | None) -> bool:
    """Validate ``last=``; False when it asks for nothing (``last=0``)."""
    if last is not None and (not isinstance(last, int) or last < 0):
        raise InvalidInputError(f"last must be a non-negative int, got {last!r}")
    return last != 0


class SessionBatch:
    """Collects appends and state writes; commits them atomically on exit."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._writes = _Writes()
        self.first_seq: int | None = None
        """After the block: the sequence number of the first appended message."""

    def append(self, *messages: Any) -> None:
        self._writes.messages.extend(messages)

    def put(self, key: str, value: Any, *, expect: Expect = ANY, ttl: Duration | None = None) -> None:
        self._writes.puts.append((key, value, expect, maybe_seconds(ttl, "ttl")))

    def delete(self, key: str, *, expect: Expect = ANY) -> None:
        self._writes.deletes.append((key, expect))

    def __enter__(self) -> SessionBatch:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.first_seq = self._session._commit(self._writes).first_seq


# -- store-level helpers ------------------------------------------------------
def session_info(store: Store, session_id: str, rec: Record) -> SessionInfo:
    """Info from the meta record; ``updated_at`` also counts the last append."""
    body = store.codec.decode(rec.data, rec.codec, rec.key)
    log = store.backend.log_info(keys.join("session", session_id, "history"))
    updated = max(rec.updated_at, log.updated_at) if log else rec.updated_at
    return SessionInfo(
        session_id, body.get("user"), body.get("status", "active"),
        to_datetime(rec.created_at), to_datetime(updated),  # type: ignore[arg-type]
        to_datetime(rec.expires_at), body.get("ttl"),
    )


def _put_meta(store: Store, session_id: str, body: dict[str, Any], expect: Expect, expires: float | None) -> Record:
    data, codec = store.codec.encode(body, f"session {session_id!r} metadata", meta_key(session_id))
    rec = store.backend.apply([Put(meta_key(session_id), data, codec, expect, expires)])[0]
    idx_data, idx_codec = store.codec.encode({}, f"session {session_id!r} index", index_key(session_id))
    store.backend.apply([Put(index_key(session_id), idx_data, idx_codec, ANY, expires)])
    assert isinstance(rec, Record)
    return rec


def open_session(store: Store, session_id: str, user: str | None, ttl: Duration | None) -> Session:
    """Get or create a session; a crashed one is set active again (a recovery)."""
    keys.escape(session_id)  # validates type and emptiness
    if user is not None and not isinstance(user, str):
        raise InvalidInputError(f"user must be a str, got {type(user).__name__}")
    ttl_s = maybe_seconds(ttl, "ttl")
    for _ in range(100):
        rec = store.backend.get(meta_key(session_id))
        try:
            if rec is None:
                if user is not None:  # tag the session's data with its subject before any is written
                    store.bind_subject(keys.join("session", session_id), user)
                body = {"user": user, "status": "active", "ttl": ttl_s}
                expires = None if ttl_s is None else time.time() + ttl_s * RENEW_FACTOR
                return Session(store, session_id, _put_meta(store, session_id, body, None, expires), None)
            return _reopen(store, session_id, rec, user, ttl_s)
        except ConflictError:
            continue
    raise ConflictError(meta_key(session_id), None, None)


def _reopen(store: Store, session_id: str, rec: Record, user: str | None, ttl_s: float | None) -> Session:
    found = session_info(store, session_id, rec)
    if user is not None and found.user not in (None, user):
        raise InvalidInputError(
            f"session {session_id!r} belongs to user {found.user!r}, not {user!r}; use another session id"
        )
    owner = found.user or user
    ttl = found.ttl if ttl_s is None else ttl_s
    if owner != found.user or ttl != found.ttl or found.status == "crashed":
        body = {"user": owner, "status": "active", "ttl": ttl}
        expires = rec.expires_at if ttl == found.ttl or ttl is None else time.time() + ttl * RENEW_FACTOR
        rec = _put_meta(store, session_id, body, rec.version, expires)
    return Session(store, session_id, rec, found)


def get_info(store: Store, session_id: str) -> SessionInfo | None:
    keys.escape(session_id)  # validates type and emptiness
    rec = store.backend.get(meta_key(session_id))
    return None if rec is None else session_info(store, session_id, rec)


def set_status(store: Store, session_id: str, status: SessionStatus) -> SessionInfo:
    for _ in range(100):
        rec = store.backend.get(meta_key(session_id))
        if rec is None:
            raise NotFoundError(f"no session {session_id!r}; open it with store.session(id) first")
        body = dict(store.codec.decode(rec.data, rec.codec, rec.key))
        body["status"] = status
        try:
            return session_info(store, session_id, _put_meta(store, session_id, body, rec.version, rec.expires_at))
        except ConflictError:
            continue
    raise ConflictError(meta_key(session_id), None, None)


def list_sessions(
    store: Store,
    *,
    status: SessionStatus | None = None,
    user: str | None = None,
    stale_after: float | None = None,
    after: str | None = None,
    limit: int = 50,
) -> tuple[list[SessionInfo], str | None]:
    """One page of sessions matching the filters, in id order, and the next cursor."""
    if status is not None and status not in SESSION_STATUSES:
        raise InvalidInputError(f"status must be one of {', '.join(SESSION_STATUSES)}, got {status!r}")
    if stale_after is not None and status not in (None, "active"):
        raise InvalidInputError(
            f"stale_after only applies to active sessions, so status={status!r} would match nothing; "
            "drop one of the two filters"
        )
    out: list[SessionInfo] = []
    cursor = index_key(after) if after is not None else None
    while len(out) < limit:
        idx = store.backend.scan(INDEX_PREFIX, after=cursor, limit=max(limit, 100))
        if not idx:
            return out, None
        ids = [keys.split(r.key)[-1] for r in idx]
        metas = store.backend.get_many([meta_key(i) for i in ids])
        for sid, meta in zip(ids, metas):
            info = session_info(store, sid, meta) if meta is not None else None
            if info is not None and _matches(info, status, user, stale_after):
                out.append(info)
                if len(out) == limit:
                    return out, sid
        cursor = idx[-1].key
    return out, None


def _matches(info: SessionInfo, status: str | None, user: str | None, stale_after: float | None) -> bool:
    if status is not None and info.status != status:
        return False
    if user is not None and info.user != user:
        return False
    return stale_after is None or info.is_stale(stale_after)


def iter_sessions(store: Store, **filters: Any) -> Iterator[SessionInfo]:
    after = None
    while True:
        page, after = list_sessions(store, after=after, **filters)
        yield from page
        if after is None:
            return
