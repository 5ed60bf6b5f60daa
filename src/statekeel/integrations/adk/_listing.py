"""Listing ADK sessions: what a page reads, and reading it at once where reads are round trips.

ADK's ``list_sessions`` returns each session's merged state (app, user, session) without
events. A page of N sessions therefore reads: the ids (one scan of the session index —
not ``store.sessions()``, whose session records and history bounds ADK does not show),
then each session's state scope, each owner's ``user:`` state and the app's ``app:``
state. Those reads are independent: on backends where each is a network round trip
(PostgreSQL, Redis, DynamoDB, tiered) they run on a few threads at once, so a page costs
about N/8 round trips of latency instead of 2N; on SQLite, files and memory they run in
turn (local reads, where threads would only add hand-offs).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

from google.adk.sessions.session import Session
from google.adk.sessions.state import State

from ...core import layout
from ...features.state import StateView
from ...models import Item, to_datetime
from ...protocol import Record, keys
from ...store import Store
from . import _layout as L

__all__ = ["Fan", "Listing", "StateScan", "app_state", "ids_in", "ids_after", "ids_under", "listed", "prefixed", "stored_state", "user_state"]

T = TypeVar("T")

_THREADS = 8
_NETWORK = (".postgres.", ".redis.", ".dynamodb.", ".tiered.")
"""Backend modules whose every read is a round trip to a server."""


class Fan:
    """Runs a listing's independent reads at once on a network backend, else one by one."""

    def __init__(self, store: Store) -> None:
        module = type(store.storage).__module__ + "."
        remote = any(part in module for part in _NETWORK)
        self._pool = ThreadPoolExecutor(_THREADS, thread_name_prefix="statekeel-adk-list") if remote else None

    def map(self, calls: Sequence[Callable[[], T]]) -> list[T]:
        """The results of ``calls``, in their order (the first error is raised)."""
        if self._pool is None or len(calls) < 2:
            return [call() for call in calls]
        return list(self._pool.map(_call, calls))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)


def _call(fn: Callable[[], T]) -> T:
    return fn()


def ids_after(store: Store, prefix: str, after: str, limit: int) -> tuple[list[str], bool]:
    """Up to ``limit`` session ids starting with ``prefix`` after ``after``, in id order, and
    whether more may follow: one scan of that contiguous range of the session index."""
    return ids_in(store.backend.scan(layout.SESSION_INDEX_PREFIX, after=layout.session_index_key(after), limit=limit),
                  prefix, limit)  # fmt: skip


def ids_in(idx: list[Record], prefix: str, limit: int) -> tuple[list[str], bool]:
    """:func:`ids_after` of the index records scanned (the sync and the asyncio listing share it)."""
    ids = [keys.split(r.key)[-1] for r in idx]
    mine = [i for i in ids if i.startswith(prefix)]
    return mine, len(mine) == len(ids) == limit


def ids_under(store: Store, prefix: str, page: int) -> Iterator[list[str]]:
    """Every session id starting with ``prefix``, ``page`` at a time."""
    after = prefix
    while True:
        ids, more = ids_after(store, prefix, after, page)
        if ids:
            yield ids
        if not more:
            return
        after = ids[-1]


class Listing:
    """One page of a listing: what it reads — the ``app:`` state (once per listing), each owner's
    ``user:`` state not read yet, each session's state — and the sessions made of the results."""

    def __init__(self, app: str, ids: list[str], scoped: dict[str | None, dict[str, Any]]) -> None:
        self.app = app
        self.parsed = [(key, parts) for key in ids if (parts := L.split_session_key(key)) is not None]
        self.owners = sorted({owner for _, (_, owner, _) in self.parsed} - set(scoped))
        self.needs_app = None not in scoped
        self._scoped = scoped

    def sessions(self, results: list[Any]) -> list[Session]:
        """The sessions, from the reads' results in the order: app, owners, sessions. Ids that are not
        an ADK session's, or whose session is gone, are left out."""
        scoped, found = self._scoped, iter(results)
        if self.needs_app:
            scoped[None] = next(found)
        for owner in self.owners:
            scoped[owner] = next(found)
        out = []
        for (_, (_, owner, sid)), (head, state) in zip(self.parsed, found):
            if head is None:
                continue
            state.update(scoped[None])
            state.update(scoped[owner])
            out.append(Session(id=sid, app_name=self.app, user_id=owner, state=state, last_update_time=head.value["t"]))
        return out


def listed(
    store: Store, fan: Fan, app: str, ids: list[str], scoped: dict[str | None, dict[str, Any]]
) -> list[Session]:
    """ADK sessions ``ids`` of ``app`` with their merged state, no events (:class:`Listing`).
    ``scoped`` caches the ``app:`` (under None) and each owner's ``user:`` state across the pages
    of one listing."""
    page = Listing(app, ids, scoped)
    calls: list[Callable[[], Any]] = [partial(app_state, store, app)] if page.needs_app else []
    calls += [partial(user_state, store, app, owner) for owner in page.owners]
    calls += [partial(stored_state, store, key) for key, _ in page.parsed]
    return page.sessions(fan.map(calls))


def app_state(store: Store, app: str) -> dict[str, Any]:
    """``app:`` state of ``app``, keys with their prefix."""
    return {State.APP_PREFIX + k: v for k, v in prefixed(store.app, app).items()}


def user_state(store: Store, app: str, user: str) -> dict[str, Any]:
    """``user:`` state of ``user`` in ``app``, keys with their prefix."""
    return {State.USER_PREFIX + k: v for k, v in prefixed(store.user(user), app).items()}


def stored_state(store: Store, key: str) -> tuple[Item | None, dict[str, Any]]:
    """The adapter's head item and the rest of the session's state, in one scan of its scope
    (read-only: opening the session would create it). Reads the records straight from the
    backend: listings call it once per session, and only the head needs an :class:`Item`."""
    scan = StateScan(store, key)
    after: str | None = None
    while True:
        page = store.backend.scan(scan.prefix, after=after, limit=StateScan.PAGE)
        after = scan.take(page)
        if after is None:
            return scan.head, scan.state


class StateScan:
    """What :func:`stored_state` gathers from the pages of a session's state scope (the sync and
    the asyncio reads share it; only where the pages come from differs)."""

    PAGE = 500

    def __init__(self, store: Store, key: str) -> None:
        self.prefix = layout.scope_state_prefix("session", key)
        self._head_key = self.prefix + keys.escape(L.HEAD)
        self._decode = store.codec.decode
        self.head: Item | None = None
        self.state: dict[str, Any] = {}

    def take(self, page: list[Record]) -> str | None:
        """Take one page in; the key to scan after next, or None when it was the last page."""
        decode, cut = self._decode, len(self.prefix)
        for rec in page:
            if rec.key == self._head_key:
                value = decode(rec.data, rec.codec, rec.key)
                self.head = Item(L.HEAD, value, rec.version, to_datetime(rec.created_at),  # type: ignore[arg-type]
                                 to_datetime(rec.updated_at), to_datetime(rec.expires_at))  # type: ignore[arg-type]
            else:
                self.state[keys.unescape(rec.key[cut:])] = decode(rec.data, rec.codec, rec.key)
        return page[-1].key if len(page) == self.PAGE else None


def prefixed(view: StateView, app: str) -> dict[str, Any]:
    """The values of ``view`` under ``adk/<app>/``, keys without that prefix."""
    start = L.scoped_key(app, "")
    out: dict[str, Any] = {}
    after: str | None = None
    while True:
        page = view.items(start, after=after, limit=500)
        out.update((item.key[len(start):], item.value) for item in page)
        if page.next is None:
            return out
        after = page.next
