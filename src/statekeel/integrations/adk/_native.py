"""The session service's per-turn calls on an AsyncStore's native asyncio driver: no thread hop.

Given an :class:`~statekeel.aio.AsyncStore` on PostgreSQL or Redis (plain, encrypted,
tamper-evident or a tenant's handle), the calls an ADK ``Runner`` makes on every turn —
``get_session``, ``append_event`` — and ``create_session`` and ``get_user_state`` run on
the store's asyncio driver (:mod:`statekeel.aio._native`) instead of its worker thread, so
concurrent conversations are not serialised behind one thread. They do what the sync
methods of :class:`~.session_service.StatekeelSessionService` do, with the same pure code
(the planned batch, the codec, the checks); only the reads and the commit are awaited, and
fewer round trips are made:

* ``append_event``: the event's keyed batch (its compare-and-set on the head included), planned
  with the session's handle kept from ``get_session`` (:class:`Handles`; read first when there is
  none). A conflict — a stale session, an event already stored, a session deleted — writes
  nothing and is handed to the sync code on the worker, which tells them apart
  (:class:`StaleSessionError`, the replayed result, :class:`SessionNotFoundError`).
* ``get_session``: the session record, any restore view and the newest events in one
  ``get_many_and_values``, then the first page of the session's, ``app:`` and ``user:`` states
  in one ``scan_many`` (one round trip on PostgreSQL and Redis: the scans pipelined on one
  connection). Sent as separate reads at once (``asyncio.gather``) they cost more CPU with many
  conversations (each its own pooled connection and task), where throughput is decided:
  PostgreSQL at C = 8 gave 211–229 turns/s at once against 263 in turn (benchmarks/scale_adk.py).

* ``list_sessions``, ``list_sessions_page``: a page's index scan, then all its reads at once
  (:func:`page`; the sync listing runs them on a few threads).

What each returns is :data:`WORKER` when the sync method must run instead (a session built by
hand without the version marker this service sets; a session restored to a checkpoint, whose
hidden ranges the sync history applies).
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Coroutine
from typing import Any, Final

from google.adk.errors.already_exists_error import AlreadyExistsError
from google.adk.errors.session_not_found_error import SessionNotFoundError
from google.adk.events.event import Event
from google.adk.sessions.session import Session
from google.adk.sessions.state import State

from ...aio import _native
from ...core import layout
from ...core.session_write import SessionCore, SessionWrites
from ...core.validate import MAX_INT
from ...errors import ConflictError
from ...features.sessions import Session as SkSession
from ...features.state import StateView
from ...protocol import Record
from ...protocol.aio import AsyncBackend
from ...store import Store
from . import _layout as L
from ._checks import event_record
from ._listing import Listing, StateScan, ids_in
from ._writes import scoped_ops, session_puts

__all__ = ["WORKER", "Fallback", "Handles", "append", "create", "get", "page", "user_state"]


class Fallback(enum.Enum):
    WORKER = "worker"
    """Returned when the sync method must run on the worker instead."""


WORKER: Final = Fallback.WORKER


class Handles:
    """The sessions' write handles (:class:`SessionCore`) one service's native calls plan with, by
    session key, kept as a statekeel session handle is kept: made from the session record that
    ``get_session`` and ``create_session`` read anyway, so that ``append_event`` reads nothing
    before its batch (the batch's compare-and-set on the head fails if the session is gone, and
    the sync code then says so). At most :attr:`SIZE`, the oldest dropped first."""

    SIZE = 1024

    def __init__(self) -> None:
        self._by: dict[str, SessionCore] = {}

    def get(self, key: str) -> SessionCore | None:
        return self._by.get(key)

    def keep(self, key: str, sc: SessionCore) -> None:
        by = self._by
        by.pop(key, None)
        by[key] = sc
        if len(by) > self.SIZE:
            del by[next(iter(by))]

    def drop(self, key: str) -> None:
        self._by.pop(key, None)


async def append(
    lane: _native.Lane, store: Store, handles: Handles, session: Session, event: Event,
    deltas: dict[str, dict[str, Any]],
) -> int | Fallback:  # fmt: skip
    """``_append``: the head version the event's batch moved the session to."""
    marker = session._storage_update_marker
    if marker is None or not marker.isdigit():  # not one of ours: the sync check reads the newest event
        return WORKER
    app, user = session.app_name, session.user_id
    key = L.session_key(app, user, session.id)
    async with lane.turn():
        sc = handles.get(key)
        if sc is None:
            meta, head = await lane.backend.get_many([layout.session_meta_key(key), _head_key(key)])
            if meta is None or head is None:
                raise SessionNotFoundError(f"Session {session.id} not found.")
            sc = SkSession(store, key, meta, None)._sc
            handles.keep(key, sc)
        if not _native.plain(sc):
            return WORKER
        expect = int(marker)
        data, idem = event_record(event)
        puts = [(L.HEAD, {"t": event.timestamp}, expect, None), *session_puts(deltas)]
        writes = SessionWrites([data], puts, extra=scoped_ops(store, app, user, deltas))
        done = await _native.commit_once(lane.backend, sc, writes, idem)
    if done is None:  # stale, redelivered or gone: the sync code reads the session afresh
        handles.drop(key)
        return WORKER
    return expect + 1


async def get(
    lane: _native.Lane, store: Store, handles: Handles, app: str, user: str, sid: str, last: int | None
) -> Session | None | Fallback:
    """``_get`` without ``after_timestamp``: the session, its merged state and newest ``last`` events."""
    if last is not None and (type(last) is not int or not 0 <= last <= MAX_INT):
        return WORKER  # the sync read refuses it (once it found the session) with the error it gives
    key = L.session_key(app, user, sid)
    backend, log = lane.backend, layout.history_log(key)
    wanted = [layout.session_meta_key(key), layout.session_view_key(key)]
    values: list[tuple[bytes, str]] = []
    async with lane.turn():
        if last == 0:
            found = await backend.get_many(wanted)
        else:
            found, values = await backend.get_many_and_values(wanted, log, limit=last, reverse=last is not None)
        scan = StateScan(store, key)
        head, state, scoped = await _states(backend, store, app, user, scan)
    meta, view = found
    if head is None or meta is None:
        handles.drop(key)
        return None
    handles.keep(key, SkSession(store, key, meta, None)._sc)
    if view is not None:  # restored to a checkpoint: its hidden ranges are the sync history's
        return WORKER
    state.update(scoped)
    events = [Event.model_validate(e) for e in store.codec.decode_many(values, log)]
    session = Session(id=sid, app_name=app, user_id=user, state=state, events=events, last_update_time=head.value["t"])
    session._storage_update_marker = str(head.version)
    return session


async def create(
    lane: _native.Lane, store: Store, handles: Handles, app: str, user: str, sid: str,
    deltas: dict[str, dict[str, Any]], now: float,
) -> Session | Fallback:  # fmt: skip
    """``_create`` (the caller checked ``deltas``): the session opened and its head, state and
    ``app:``/``user:`` deltas written create-only, natively."""
    key = L.session_key(app, user, sid)
    async with lane.turn():
        s = await _native.open_session(lane.backend, store, key, user, None)
        if not _native.plain(s._sc):
            return WORKER
        puts = [(L.HEAD, {"t": now}, None, None), *session_puts(deltas)]  # HEAD create-only
        try:
            writes = SessionWrites([], puts, extra=scoped_ops(store, app, user, deltas))
            await _native.commit(lane.backend, s._sc, writes)
        except ConflictError:
            raise AlreadyExistsError(f"Session with id {sid} already exists.") from None
        handles.keep(key, s._sc)
        scoped = (await _states(lane.backend, store, app, user))[2]
    session = Session(id=sid, app_name=app, user_id=user, state=dict(deltas["session"]), last_update_time=now)
    session.state.update(scoped)
    session._storage_update_marker = "1"
    return session


async def _states(
    backend: AsyncBackend, store: Store, app: str, user: str, scan: StateScan | None = None
) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """The session's head and state (with ``scan``) and ``_scoped_state`` — the ``app:`` and
    ``user:`` state of ``app``, prefixed: the first page of each in one :meth:`~AsyncBackend.scan_many`
    (one round trip on PostgreSQL and Redis), any further pages after."""
    views = (_Prefixed(store.app, app, State.APP_PREFIX), _Prefixed(store.user(user), app, State.USER_PREFIX))
    firsts = [(scan.prefix, None, StateScan.PAGE)] if scan is not None else []
    pages = await backend.scan_many([*firsts, *(v.scan_of() for v in views)])
    head, state = await _stored_state(backend, scan, pages.pop(0)) if scan is not None else (None, {})
    scoped: dict[str, Any] = {}
    for v, first in zip(views, pages):
        scoped.update(await v.read(backend, first))
    return head, state, scoped


async def page(
    lane: _native.Lane, store: Store, app: str, prefix: str, after: str, size: int,
    scoped: dict[str | None, dict[str, Any]],
) -> tuple[list[Session], list[str], bool]:  # fmt: skip
    """One page of ``_list``/``_page``: the sessions after ``after`` under ``prefix``, their ids
    and whether more may follow. The index scan, then every read of the page at once (what the
    sync listing's :class:`~._listing.Fan` does with threads)."""
    backend = lane.backend
    async with lane.turn():
        index = await backend.scan(layout.SESSION_INDEX_PREFIX, after=layout.session_index_key(after), limit=size)
        ids, more = ids_in(index, prefix, size)
        listing = Listing(app, ids, scoped)
        reads: list[Coroutine[Any, Any, Any]] = [_Prefixed(store.app, app, State.APP_PREFIX).read(backend)] \
            if listing.needs_app else []  # fmt: skip
        reads += [_Prefixed(store.user(owner), app, State.USER_PREFIX).read(backend) for owner in listing.owners]
        reads += [_stored_state(backend, StateScan(store, key)) for key, _ in listing.parsed]
        results = list(await asyncio.gather(*reads))
    return listing.sessions(results), ids, more


async def user_state(lane: _native.Lane, store: Store, app: str, user: str) -> dict[str, Any]:
    """``get_user_state``: the ``user:`` state of ``user`` in ``app``, keys without the prefix."""
    async with lane.turn():
        return await _Prefixed(store.user(user), app, "").read(lane.backend)


def _head_key(key: str) -> str:
    return layout.state_key("session", key, L.HEAD)


async def _stored_state(
    backend: AsyncBackend, scan: StateScan, first: list[Record] | None = None
) -> tuple[Any, dict[str, Any]]:
    """:func:`~._listing.stored_state`, its pages read natively (``first``: the first, read already)."""
    after = scan.take(await backend.scan(scan.prefix, limit=StateScan.PAGE) if first is None else first)
    while after is not None:
        after = scan.take(await backend.scan(scan.prefix, after=after, limit=StateScan.PAGE))
    return scan.head, scan.state


class _Prefixed:
    """:func:`~._listing.prefixed`, its pages read natively (the view's own checks and decoding); the
    keys with ``mark`` (``app:``, ``user:`` or nothing) in front."""

    PAGE = 500

    def __init__(self, view: StateView, app: str, mark: str) -> None:
        self.view, self.start, self.mark = view, L.scoped_key(app, ""), mark

    def scan_of(self, after: str | None = None) -> tuple[str, str | None, int]:
        """The scan (prefix, after, limit) of the page after ``after`` (None: of the first page)."""
        return (*self.view._scan_of(self.start, after, self.PAGE), self.PAGE)

    async def read(self, backend: AsyncBackend, first: list[Record] | None = None) -> dict[str, Any]:
        """Every value, from the page ``first`` (read already) or the first page on."""
        out: dict[str, Any] = {}
        page, after = first, None
        while True:
            if page is None:
                prefix, cursor, limit = self.scan_of(after)
                page = await backend.scan(prefix, after=cursor, limit=limit)
            items = self.view._page(page, self.PAGE)
            out.update((self.mark + item.key[len(self.start):], item.value) for item in items)
            if items.next is None:
                return out
            page, after = None, items.next
