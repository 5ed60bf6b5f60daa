"""Sessions: append-only history, session-scoped state, status, heartbeat, TTL.

A session's records all live in its partition ``session/<id>`` (see
:mod:`statekeel.core.layout`); every write goes through the one session write
path, :mod:`statekeel.core.session_write`, which also renews the TTL.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any

from ..core import Core, SessionCore, SessionWrites, layout
from ..core.session_write import RENEW_FACTOR, Committed
from ..core.validate import check_expect, check_int, check_name, check_optional_name, stored_seconds
from ..errors import ConflictError, ExpiredError, InvalidInputError
from ..models import Item, Message, SessionInfo, SessionStatus, to_datetime
from ..protocol import ANY, Entry, Expect, Op, Put, Record
from . import checkpoint_prune
from . import checkpoints as _checkpoints
from . import idempotency as _idempotency
from . import lifecycle as _lifecycle
from . import retention as _retention
from . import summaries as _summaries
from .context import MemoryOption, build_context
from .context_render import Tokenizer, WorkingSet
from .history_view import visible_entries
from ._duration import Duration, maybe_seconds
from .decisions import DecisionContext
from .leases import Lease
from .notes import SessionNotes
from .retention import Retention
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
        self._lease: Lease | None = None

    @property
    def lease_token(self) -> int | None:
        """The fencing token of the lease this handle holds (None: opened without ``lease=``)."""
        return None if self._lease is None else self._lease.token

    def release(self) -> None:
        """Give up the lease (another process may take it at once); later writes are not fenced."""
        if self._lease is not None:
            self._lease.release()
            self._sc.fence = None
            self._lease = None

    def __enter__(self) -> Session:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

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
    def append(
        self, *messages: Any, state: Mapping[str, Any] | None = None, idempotency_key: str | None = None
    ) -> int:
        """Append ``messages`` (and write ``state``) in one atomic, durable batch.

        Returns the sequence number of the first appended message. With
        ``idempotency_key=k`` the write is applied at most once within 24 hours:
        retrying it (after an :class:`UnavailableError`, say) returns the original
        seq and writes nothing (:mod:`statekeel.features.idempotency`).
        """
        if state is not None and type(state) is not dict and not isinstance(state, Mapping):
            raise InvalidInputError(
                f"state= must be a mapping of state keys to values, got {type(state).__name__}"
            )
        if not messages and not state:
            raise InvalidInputError("append() needs at least one message (or state=)")
        writes = SessionWrites(list(messages), [(k, v, ANY, None) for k, v in (state or {}).items()])
        return self._commit(writes, idempotency_key).first_seq or 0

    def _commit(self, writes: SessionWrites, idempotency_key: str | None) -> Committed:
        if idempotency_key is None:
            return self._sc.commit(writes)
        return _idempotency.commit_once(self._sc, writes, idempotency_key)

    def batch(self, *, idempotency_key: str | None = None) -> SessionBatch:
        """Group appends and state writes into one atomic commit: ``with s.batch() as b:``;
        ``idempotency_key=k`` applies it at most once (see :meth:`append`)."""
        if idempotency_key is not None:
            check_name(idempotency_key, "an idempotency_key")
        return SessionBatch(self, idempotency_key)

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
        if last is None or include_hidden:  # a whole history: the view first, so a restored one is not read twice
            view = self._view(include_hidden)
            items = self._backend.read_values(self._log, limit=last, reverse=last is not None) if view is None else []
        else:  # the newest N: the view and the values in one call (one round trip where the backend can)
            (view,), items = self._backend.get_many_and_values(
                [layout.session_view_key(self.id)], self._log, limit=last, reverse=True)
        if view is not None:  # restored: its hidden ranges left out
            items = [(e.data, e.codec) for e in self._entries(last, 1, None, view)]
        return self._core.codec.decode_many(items, self._log)

    def __len__(self) -> int:
        """How many messages are stored (trimmed ones are gone; hidden ones still count)."""
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

    # -- lifecycle (statekeel.features.lifecycle) -------------------------------
    def delete(self) -> bool:
        """Remove everything of this session (history, state, checkpoints, notes, decisions,
        listing) in one batch; True if it existed. The space is reclaimed by ``statekeel gc``."""
        return _lifecycle.delete_session(self._core, self.id, self._sc.fence)

    def clear(self, *, state: bool = True) -> int:
        """Drop the whole history (and the session state unless ``state=False``) atomically;
        seqs keep counting up. Returns how many messages were dropped."""
        return _lifecycle.clear(self._sc, state=state)

    def pop(self) -> Message | None:
        """Remove the newest message atomically and return it (None when the history is empty)."""
        entry = _lifecycle.pop(self._sc)
        if entry is None:
            return None
        value = self._core.codec.decode(entry.data, entry.codec, self._log)
        return Message(entry.seq, value, to_datetime(entry.created_at))  # type: ignore[arg-type]

    def trim(self, *, keep_last: int | None = None, before: int | None = None) -> int:
        """Drop the oldest history: keep the newest ``keep_last`` messages, or drop every seq
        ``< before``; returns how many entries went. Checkpoints whose newest message was
        trimmed can no longer be restored."""
        return _lifecycle.trim(self._sc, keep_last=keep_last, before=before)

    # -- retention (statekeel.features.retention) --------------------------------
    def set_retention(self, retention: Retention | None) -> None:
        """Keep these caps for this session (None: the store defaults only); ``gc`` applies them."""
        _retention.set_session_retention(self._core, self.id, retention)

    def apply_retention(self) -> tuple[int, int]:
        """Apply this session's caps now; returns (messages dropped, checkpoints dropped)."""
        return _retention.apply_retention(self._core, self.id)

    # -- status --------------------------------------------------------------
    def set_status(self, status: SessionStatus) -> SessionInfo:
        """Set active / waiting / completed / crashed (compare-and-set on the session record)."""
        check_status(status)
        info = set_status(self._core, self.id, status)
        self._arm(status)
        return info

    def _arm(self, status: str) -> None:
        """The reopen rule: the next write through this handle to a completed or waiting
        session makes it active again, in the same batch (see :func:`_reactivation`)."""
        self._sc.once = _reactivation(self._core, self.id) if status in ("completed", "waiting") else None

    def wait(self) -> SessionInfo:
        """Mark the session waiting for user input: never stale, never marked crashed while
        it waits; its next write (through this handle or one opened later) makes it active."""
        return self.set_status("waiting")

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

    # -- the working set (statekeel.features.context / .summaries) --------------
    def context(
        self, budget: int = 4000, *, tokenizer: Tokenizer | None = None, memory: MemoryOption = None,
        memories: int = 5, query: str | None = None, runs: Sequence[str] | None = None, recent: int | None = None,
    ) -> WorkingSet:
        """What a new context window needs, within ``budget`` tokens: standing orders, the user's
        profile, open decisions, waiting runs, relevant memories, summaries and recent messages,
        with what was dropped and why (docs/working-set.md). Reads only what it keeps."""
        return build_context(self._core, self.id, self.user, budget=budget, tokenizer=tokenizer, memory=memory,
                             memories=memories, query=query, runs=runs, recent=recent)

    def summarize(
        self, upto: int | None = None, *, fn: _summaries.Summarizer, start: int | None = None
    ) -> _summaries.Summary:
        """Store ``fn(messages)`` as the summary of history ``start..upto`` (default: the messages
        not yet summarised, up to the newest); :meth:`context` shows it for messages that do not fit."""
        return _summaries.summarize(self._sc, fn, upto, start)

    # -- checkpoints (statekeel.features.checkpoints) ---------------------------
    def checkpoint(
        self, label: str | None = None, *, full_every: int = _checkpoints.DEFAULT_FULL_EVERY,
        compress: str | None = None, replace: bool = False,
    ) -> _checkpoints.Checkpoint:
        """Snapshot the state and history position; stores only what changed since the last one.

        Labels are unique in a session: a label in use raises :class:`InvalidInputError`
        unless ``replace=True``, which moves it to the new checkpoint (the old one stays,
        unlabelled)."""
        return _checkpoints.create(self._sc, label, full_every=full_every, compress=compress, replace=replace)

    def checkpoints(self) -> list[_checkpoints.Checkpoint]:
        """Every checkpoint of this session, oldest first."""
        return _checkpoints.list_checkpoints(self._sc)

    def restore(self, cp: _checkpoints.Checkpoint | int | str) -> _checkpoints.Checkpoint:
        """Roll the state back to ``cp``; later history is hidden (``include_hidden=True`` shows it)."""
        return _checkpoints.restore(self._sc, cp)

    def fork(self, cp: _checkpoints.Checkpoint | int | str, *, into: str) -> Session:
        """A new session ``into`` holding ``cp``'s state and visible history up to it.

        The fork starts with no checkpoints: the source's checkpoints stay with the source."""
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

    def __init__(self, session: Session, idempotency_key: str | None = None) -> None:
        self._session = session
        self._key = idempotency_key
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
            self.first_seq = self._session._commit(self._writes, self._key).first_seq


def _reactivation(core: Core, session_id: str) -> Callable[[float | None], list[Op]]:
    """Ops setting a completed or waiting session active (compare-and-set on its record);
    reopening a completed one is recorded in it (``reopened``: the last 20 times)."""

    def ops(expires: float | None) -> list[Op]:
        rec = core.backend.get(layout.session_meta_key(session_id))
        body = None if rec is None else dict(core.codec.decode(rec.data, rec.codec, rec.key))
        if rec is None or body is None or body.get("status") not in ("completed", "waiting"):
            return []
        if body["status"] == "completed":
            body["reopened"] = [*body.get("reopened", [])[-19:], time.time()]
        body["status"] = "active"
        data, codec = core.codec.encode(body, f"session {session_id!r} metadata", rec.key)
        return [Put(rec.key, data, codec, rec.version, rec.expires_at if expires is None else expires)]

    return ops


# -- opening -------------------------------------------------------------------------
def open_session(
    core: Core, session_id: str, user: str | None, ttl: Duration | None, lease: Duration | None = None
) -> Session:
    """Get or create a session; a crashed one is set active again (a recovery), a completed or
    waiting one with its first write (:meth:`Session._arm`).

    ``lease``: acquire the session's lease first (:mod:`statekeel.features.leases`),
    so that this handle is its only writer until it releases it or goes silent
    for that long; every write of the handle is then fenced.
    """
    check_name(session_id, "a session id")
    check_optional_name(user, "user")
    ttl_s = maybe_seconds(ttl, "ttl")
    lease_s = maybe_seconds(lease, "lease")
    if lease_s is None:
        return _open(core, session_id, user, ttl_s)
    if user is not None:  # refuse a wrong owner before the lease is written
        rec = core.backend.get(layout.session_meta_key(session_id))
        owner = None if rec is None else session_info(core, session_id, rec).user
        if owner not in (None, user):
            raise InvalidInputError(
                f"session {session_id!r} belongs to user {owner!r}, not {user!r}; use another session id"
            )
    held = Lease(core, layout.lease_key("session", session_id), f"session {session_id!r}", lease_s)
    held.acquire()
    try:
        s = _open(core, session_id, user, ttl_s)
    except BaseException:
        held.release()
        raise
    s._lease, s._sc.fence = held, held
    return s


def _open(core: Core, session_id: str, user: str | None, ttl_s: float | None) -> Session:
    for _ in range(100):
        # the index entry too: a creation cut short by a crash (written by an older
        # version in two batches) left it out, and reopening lists the session again
        rec, listed = core.backend.get_many(
            [layout.session_meta_key(session_id), layout.session_index_key(session_id)]
        )
        try:
            if rec is None:
                if user is not None and core.keyring is not None:  # tag its data key before any write;
                    core.bind_subject(layout.partition("session", session_id), user)
                body = {"user": user, "status": "active", "ttl": ttl_s}
                expires = None if ttl_s is None else time.time() + ttl_s * RENEW_FACTOR
                return Session(core, session_id, put_meta(core, session_id, body, None, expires), None)
            return _reopen(core, session_id, rec, user, ttl_s, listed is not None)
        except ConflictError:
            continue
    raise ConflictError(layout.session_meta_key(session_id), None, None)


def reopened_meta(
    core: Core, session_id: str, rec: Record, found: SessionInfo, user: str | None, ttl_s: float | None,
    listed: bool,
) -> tuple[dict[str, Any], float | None] | None:  # fmt: skip
    """What reopening a stored session writes to its record — ``(body, expires_at)`` — or None when
    nothing changes (pure: the sync and asyncio paths both execute it). Another user's session is refused."""
    if user is not None and found.user not in (None, user):
        raise InvalidInputError(
            f"session {session_id!r} belongs to user {found.user!r}, not {user!r}; use another session id"
        )
    owner = found.user or user
    ttl = found.ttl if ttl_s is None else ttl_s
    changed = owner != found.user or ttl != found.ttl or found.status == "crashed"
    if not changed and listed:
        return None
    old = core.codec.decode(rec.data, rec.codec, rec.key)  # keeps retention caps, reopen events
    body = {**old, "user": owner, "status": "active" if changed else found.status, "ttl": ttl}
    expires = rec.expires_at if ttl == found.ttl or ttl is None else time.time() + ttl * RENEW_FACTOR
    return body, expires


def _reopen(core: Core, session_id: str, rec: Record, user: str | None, ttl_s: float | None,
            listed: bool) -> Session:
    found = session_info(core, session_id, rec)
    meta = reopened_meta(core, session_id, rec, found, user, ttl_s, listed)
    if meta is not None:
        rec = put_meta(core, session_id, meta[0], rec.version, meta[1])
    s = Session(core, session_id, rec, found)
    s._arm(found.status)
    return s


def find_session(core: Core, session_id: str) -> Session | None:
    """The session as stored, or None: creates nothing and leaves its status as it is."""
    check_name(session_id, "a session id")
    rec = core.backend.get(layout.session_meta_key(session_id))
    return None if rec is None else Session(core, session_id, rec, session_info(core, session_id, rec))
