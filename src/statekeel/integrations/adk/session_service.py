"""``StatekeelSessionService``: Google ADK's ``BaseSessionService`` over any statekeel URL or store.

    from statekeel.integrations.adk import StatekeelSessionService

    service = StatekeelSessionService.from_url("sqlite:///agent.db")
    runner = Runner(agent=agent, app_name="support", session_service=service)

Storage layout: :mod:`._layout`. An event, its state deltas (session, ``app:`` and ``user:``)
and the session's new ``last_update_time`` are one atomic batch; the batch compares-and-sets the
session's head, so a writer holding an outdated copy of the session gets ADK's
:class:`StaleSessionError` instead of overwriting newer state. ``get_session`` reads only
the events it returns (``num_recent_events=N``: the newest N), and ``list_sessions``
walks only the app's (or user's) range of the session index, never every session.
Every call runs the sync store code on the service's worker thread, never on the loop — except,
given an :class:`~statekeel.aio.AsyncStore` on PostgreSQL or Redis, the per-turn calls
(``get_session``, ``append_event``, ``create_session``, ``get_user_state``), which run on its
asyncio driver with no thread hop (:mod:`._native`), and so do the listings.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any, Optional, cast

from google.adk.errors.already_exists_error import AlreadyExistsError
from google.adk.errors import StaleSessionError
from google.adk.errors.session_not_found_error import SessionNotFoundError
from google.adk.events.event import Event
from google.adk.sessions.base_session_service import BaseSessionService, GetSessionConfig, ListSessionsResponse
from google.adk.sessions.session import Session

from ...aio import AsyncStore
from ...core import layout
from ...core.session_write import SessionWrites
from ...core.validate import check_int, short_repr
from ...errors import ConflictError, InvalidInputError
from ...features.sessions import Session as SkSession
from ...store import Store
from ...store import open as open_store
from .._given import given
from . import _layout as L
from . import _native as native
from ._checks import check_timestamp, event_record, state_deltas, storable
from ._writes import scoped_ops, session_puts
from ._listing import Fan, app_state, ids_after, ids_under, listed, prefixed, stored_state, user_state

__all__ = ["SessionsPage", "StatekeelSessionService"]

_PAGE = 200


class SessionsPage(ListSessionsResponse):
    """A page of :meth:`StatekeelSessionService.list_sessions_page`: ADK's response plus a cursor."""

    next_page_token: Optional[str] = None


class StatekeelSessionService(BaseSessionService):
    """ADK sessions, events and app/user/session state in a statekeel store.

    ``store`` is a :class:`statekeel.Store` or :class:`statekeel.aio.AsyncStore` the
    caller owns (left open by :meth:`close`); :meth:`from_url` opens one the service
    owns. A store opened with ``encryption=`` encrypts events and state; a tenant
    handle (``store.tenant(t)``) keeps the service to tenant ``t``'s data.
    """

    def __init__(self, store: Store | AsyncStore, *, workers: int = 1) -> None:
        if not isinstance(store, (Store, AsyncStore)):
            raise InvalidInputError(
                f"store must be a statekeel.Store or AsyncStore, got {type(store).__name__}; "
                "use StatekeelSessionService.from_url(url) to open one from a URL"
            )
        core, self._worker, self._owns_worker, self._lane = given(store, workers)
        """``_lane``: the AsyncStore's native lane when its reads run on the event loop (PostgreSQL, Redis)."""
        self._store = cast(Store, core)
        self._owned: Store | None = None
        self._handles = native.Handles()
        self._fan = Fan(self._store)

    @classmethod
    def from_url(cls, url: str, **open_options: Any) -> StatekeelSessionService:
        """A service on a store it opens (``statekeel.open(url, **open_options)``) and closes."""
        store = open_store(url, **open_options)
        service = cls(store)
        service._owned = store
        return service

    async def close(self) -> None:
        """Stop the worker; close the store only if :meth:`from_url` opened it."""
        self._fan.close()
        if self._owns_worker:
            self._worker.shutdown()
        if self._owned is not None:
            self._owned.close()

    # -- sessions ---------------------------------------------------------------------
    async def create_session(
        self, *, app_name: str, user_id: str, state: Optional[dict[str, Any]] = None,
        session_id: Optional[str] = None,
    ) -> Session:
        """Create a session (ADK's ``AlreadyExistsError`` if the id is taken); ids are stripped."""
        sid = (session_id.strip() if isinstance(session_id, str) else session_id) or str(uuid.uuid4())
        deltas = state_deltas(state)
        if self._lane is not None:
            storable(self._store, deltas)  # opening the session writes it: a refused value must fail first
            made = await native.create(
                self._lane, self._store, self._handles, app_name, user_id, sid, deltas, time.time()
            )
            if made is not native.WORKER:
                return made
        return await self._worker.run(lambda: self._create(app_name, user_id, sid, deltas))

    def _create(self, app: str, user: str, sid: str, deltas: dict[str, dict[str, Any]]) -> Session:
        key = L.session_key(app, user, sid)
        storable(self._store, deltas)  # opening the session writes it: a refused value must fail first
        s = self._store.session(key, user=user)
        now = time.time()
        puts = [(L.HEAD, {"t": now}, None, None), *session_puts(deltas)]  # HEAD create-only: the id is ours
        try:
            s._commit(SessionWrites([], puts, extra=scoped_ops(self._store, app, user, deltas)), None)
        except ConflictError:
            raise AlreadyExistsError(f"Session with id {sid} already exists.") from None
        session = Session(id=sid, app_name=app, user_id=user, state=dict(deltas["session"]), last_update_time=now)
        session.state.update(self._scoped_state(app, user))
        session._storage_update_marker = "1"
        return session

    async def get_session(
        self, *, app_name: str, user_id: str, session_id: str, config: Optional[GetSessionConfig] = None,
    ) -> Optional[Session]:
        """The session with its merged state and the events ``config`` selects (None if absent).

        ``num_recent_events=N`` reads only the newest N events; ``after_timestamp=t``
        keeps events with ``timestamp >= t``, read from the newest back to the first older one."""
        sid = session_id.strip() if isinstance(session_id, str) else session_id
        if self._lane is not None and (config is None or config.after_timestamp is None):
            last = None if config is None else config.num_recent_events
            found = await native.get(self._lane, self._store, self._handles, app_name, user_id, sid, last)
            if found is not native.WORKER:
                return found
        return await self._worker.run(lambda: self._get(app_name, user_id, sid, config))

    def _get(self, app: str, user: str, sid: str, config: GetSessionConfig | None) -> Session | None:
        key = L.session_key(app, user, sid)
        head, state = stored_state(self._store, key)
        meta = None if head is None else self._store.backend.get(layout.session_meta_key(key))
        if head is None or meta is None:
            return None
        s = SkSession(self._store, key, meta, None)  # a read-only handle: find_session's status read is not needed
        state.update(self._scoped_state(app, user))
        last = None if config is None else config.num_recent_events
        after = None if config is None else config.after_timestamp
        events = [Event.model_validate(e) for e in _events(s, last, after)]
        session = Session(id=sid, app_name=app, user_id=user, state=state, events=events,
                          last_update_time=head.value["t"])
        session._storage_update_marker = str(head.version)
        return session

    async def list_sessions(self, *, app_name: str, user_id: Optional[str] = None) -> ListSessionsResponse:
        """The app's (or the user's) sessions without events, oldest update first (ADK's order).

        Reads only that range of the session index, a page at a time, and one scan of each
        listed session's state (ADK returns it); no events."""
        if self._lane is None:
            return await self._worker.run(lambda: self._list(app_name, user_id))
        prefix = L.app_prefix(app_name) if user_id is None else L.user_prefix(app_name, user_id)
        scoped: dict[str | None, dict[str, Any]] = {}
        out: list[Session] = []
        after, more = prefix, True
        while more:
            found, ids, more = await native.page(self._lane, self._store, app_name, prefix, after, _PAGE, scoped)
            out += found
            after = ids[-1] if ids else after
        return _by_update(out)

    def _list(self, app: str, user: str | None) -> ListSessionsResponse:
        prefix = L.app_prefix(app) if user is None else L.user_prefix(app, user)
        scoped: dict[str | None, dict[str, Any]] = {}
        return _by_update([x for ids in ids_under(self._store, prefix, _PAGE)
                           for x in listed(self._store, self._fan, app, ids, scoped)])  # fmt: skip

    async def list_sessions_page(
        self, *, app_name: str, user_id: Optional[str] = None, page_size: int = 100, page_token: Optional[str] = None,
    ) -> SessionsPage:
        """One page of the app's (or user's) sessions, in session-id order (user, then id), and
        ``next_page_token`` for the next page (None: the last one). Costs O(page_size) whatever the
        number of sessions; ADK's :meth:`list_sessions` returns them all, sorted by update time."""
        size = check_int(page_size, "page_size")
        if not 1 <= size <= 1000:
            raise InvalidInputError(f"page_size must be between 1 and 1,000, got {size}")
        if self._lane is None:
            return await self._worker.run(lambda: self._page(app_name, user_id, size, page_token))
        prefix = _page_prefix(app_name, user_id, page_token)
        found, ids, more = await native.page(self._lane, self._store, app_name, prefix, page_token or prefix, size, {})
        return SessionsPage(sessions=found, next_page_token=ids[-1] if more else None)

    def _page(self, app: str, user: str | None, size: int, token: str | None) -> SessionsPage:
        prefix = _page_prefix(app, user, token)
        ids, more = ids_after(self._store, prefix, token or prefix, size)
        out = listed(self._store, self._fan, app, ids, {})
        return SessionsPage(sessions=out, next_page_token=ids[-1] if more else None)

    async def delete_session(self, *, app_name: str, user_id: str, session_id: str) -> None:
        """Delete the session, its events and state in one batch (nothing if it does not exist)."""
        sid = session_id.strip() if isinstance(session_id, str) else session_id
        key = L.session_key(app_name, user_id, sid)
        self._handles.drop(key)
        await self._worker.run(lambda: self._store.delete_session(key))

    async def get_user_state(self, *, app_name: str, user_id: str) -> dict[str, Any]:
        """The ``user:`` state of ``user_id`` in ``app_name``, keys without the prefix."""
        if self._lane is not None:
            return await native.user_state(self._lane, self._store, app_name, user_id)
        return await self._worker.run(lambda: prefixed(self._store.user(user_id), app_name))

    # -- events -------------------------------------------------------------------------
    async def append_event(self, session: Session, event: Event) -> Event:
        """Store ``event`` with its state delta atomically; refuse a stale ``session`` copy.

        ``temp:`` keys reach the in-memory session only. An equal re-delivery of an event
        already stored is applied once (an idempotency key from its content)."""
        if event.partial:
            return event
        check_timestamp(event.timestamp)
        self._apply_temp_state(session, event)
        event = self._trim_temp_delta_state(event)
        delta = event.actions.state_delta if event.actions and event.actions.state_delta else {}
        deltas = state_deltas(delta)
        found: int | native.Fallback = native.WORKER
        if self._lane is not None:
            found = await native.append(self._lane, self._store, self._handles, session, event, deltas)
        version = found if found is not native.WORKER else await self._worker.run(
            lambda: self._append(session, event, deltas)
        )
        self._commit_event_to_session(session, event)
        session.last_update_time = event.timestamp
        session._storage_update_marker = str(version)
        return event

    def _append(self, session: Session, event: Event, deltas: dict[str, dict[str, Any]]) -> int:
        app, user = session.app_name, session.user_id
        s = self._store.find_session(L.session_key(app, user, session.id))
        head = None if s is None else s.state.item(L.HEAD)
        if s is None or head is None:
            raise SessionNotFoundError(f"Session {session.id} not found.")
        expect = _expected_version(session, head.version, head.value["t"], lambda: s.history(last=1))
        data, key = event_record(event)
        puts = [(L.HEAD, {"t": event.timestamp}, expect, None), *session_puts(deltas)]
        try:  # the event, its session, app: and user: deltas and the new head: one atomic batch
            s._commit(SessionWrites([data], puts, extra=scoped_ops(self._store, app, user, deltas)), key)
        except ConflictError:
            raise StaleSessionError(_stale(session.id)) from None
        return expect + 1

    # -- app: and user: state ---------------------------------------------------------
    def _scoped_state(self, app: str, user: str) -> dict[str, Any]:
        """``app:`` and ``user:`` state of ``app`` with their prefixes, as ADK merges them."""
        return {**app_state(self._store, app), **user_state(self._store, app, user)}


def _by_update(sessions: list[Session]) -> ListSessionsResponse:
    """ADK's order: oldest update first, then user and id."""
    sessions.sort(key=lambda x: (x.last_update_time, x.user_id, x.id))
    return ListSessionsResponse(sessions=sessions)


def _page_prefix(app: str, user: str | None, token: str | None) -> str:
    """The id prefix a page lists, ``token`` checked to be one of its listing's."""
    prefix = L.app_prefix(app) if user is None else L.user_prefix(app, user)
    if token is not None and (type(token) is not str or not token.startswith(prefix)):
        raise InvalidInputError(
            f"page_token {short_repr(token)} is not one this listing returned; pass the next_page_token of "
            "the previous page of the same app_name and user_id (or None for the first page)"
        )
    return prefix


def _stale(session_id: str) -> str:
    """ADK's stale-writer message (callers match on it), naming the session and the fix."""
    return (
        f"The session has been modified in storage since it was loaded (session {session_id!r}, "
        "written by another writer). Please reload the session with get_session() before "
        "appending more events."
    )


def _expected_version(session: Session, stored: int, stored_time: float, newest: Callable[[], list[Any]]) -> int:
    """The head version ``session`` was read at; :class:`StaleSessionError` if it is behind.

    Sessions this service returned carry the exact version. A session without one (built
    by hand, or copied) passes when its ``last_update_time`` is not older than the stored
    one, or when its newest event is the stored newest event (a float round trip)."""
    marker = session._storage_update_marker
    if marker is not None and marker.isdigit():
        return int(marker)
    if stored_time > session.last_update_time:
        last = newest()
        mine = session.events[-1].id if session.events else None
        if (last[0].get("id") if last else None) != mine:
            raise StaleSessionError(_stale(session.id))
    return stored


def _events(s: SkSession, last: int | None, after: float | None) -> list[Any]:
    """The stored events ``num_recent_events``/``after_timestamp`` select, oldest first."""
    if last == 0:
        return []
    if after is None:
        return s.history(last=last)
    picked: list[Any] = []
    stop: int | None = None
    size = 4  # pages grow from small: the cost follows what is selected, not the history
    while last is None or len(picked) < last:
        want = size if last is None else min(size, last - len(picked))
        page = s.messages(last=want, stop=stop)
        for m in reversed(page):
            if m.value.get("timestamp", 0.0) < after:
                return picked[::-1]
            picked.append(m.value)
        if len(page) < want:
            break
        stop, size = page[0].seq, min(size * 2, _PAGE)
    return picked[::-1]
