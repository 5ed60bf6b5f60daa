"""``StatekeelSession``: the OpenAI Agents SDK ``Session`` over any statekeel URL or store.

    from statekeel.integrations.openai_agents import StatekeelSession

    session = StatekeelSession.from_url("chat-42", "sqlite:///agent.db")
    result = await Runner.run(agent, "Hello", session=session)

One SDK session is one statekeel session; each item is one history message, stored
as the JSON the SDK gave. History entries have a sequence number, so the order is the
order of writes even when timestamps are equal, ``get_items(limit=N)`` reads only the
newest N entries, ``add_items`` is one atomic append (retried batches that carry item
ids are applied once: an idempotency key) and ``pop_item`` is one atomic pop. Every
call runs the sync store code on this session's worker thread, never on the event loop,
except ``add_items``/``get_items`` on Redis (and on PostgreSQL given an AsyncStore), which
await the store's native asyncio driver on the loop (no thread hop), and ``get_items`` on a
plain SQLite store, which reads up to 100 items on the loop when the store's connection is
free (a thread hop cost more than the read; a busy connection sends it to the worker). ``add_items`` keeps the
session handle between calls and lets the append's own precondition revalidate it (:mod:`._writer`).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from agents.memory.session_settings import SessionSettings, coerce_session_settings, resolve_session_limit

from ...aio import AsyncStore, _native
from ...aio._worker import Worker
from ...backends.sqlite import SQLiteBackend
from ...core import layout
from ...core.validate import check_name, check_optional_name, maybe_seconds
from ...errors import InvalidInputError
from ...features._duration import Duration
from ...features.sessions import Session as _Session
from ...protocol import Record
from ...protocol.aio import AsyncBackend
from ...store import Store
from ...store import open as open_store
from ._writer import Writer, settled

if TYPE_CHECKING:
    from agents.items import TResponseInputItem
    from agents.run_context import RunContextWrapper

__all__ = ["StatekeelSession", "TenantOf"]

TenantOf = Callable[["RunContextWrapper[Any]"], "str | None"]
"""Maps a run's context wrapper to the tenant whose data the call may see (None: the store itself)."""

_ID_FIELDS = ("id", "call_id")

_NOWAIT_MAX = 100
"""The largest ``get_items`` limit read on the event loop on SQLite (a fraction of a millisecond);
a longer read — the whole history — is worth the thread hop: the loop must not stall on it."""

COMPACTED_THROUGH = "openai-agents:compacted-through"
"""Session-state key: the newest history seq a compaction replaced (hidden, never deleted)."""


class StatekeelSession:
    """An SDK session whose items live in statekeel session ``session_id``.

    ``store`` is a :class:`statekeel.Store` or :class:`statekeel.aio.AsyncStore` the
    caller owns (left open by :meth:`close`); :meth:`from_url` opens one this session
    owns. ``tenant_of(wrapper)`` routes each call of a run to ``store.tenant(name)``
    (the SDK passes the run's context wrapper to every method). ``user`` and ``ttl``
    are given to the statekeel session when a write creates it.
    """

    session_settings: SessionSettings | None

    def __init__(
        self,
        session_id: str,
        store: Store | AsyncStore,
        *,
        session_settings: SessionSettings | dict[str, Any] | None = None,
        user: str | None = None,
        ttl: Duration | None = None,
        tenant_of: TenantOf | None = None,
        workers: int = 1,
    ) -> None:
        self.session_id = check_name(session_id, "a session id")
        self.session_settings = SessionSettings() if session_settings is None else coerce_session_settings(
            session_settings
        )  # the SDK's TypeError for bad settings, as its own sessions raise (its tests check it)
        self._user = check_optional_name(user, "user")
        maybe_seconds(ttl, "ttl")  # refused here, not at the first write
        self._ttl = ttl
        self._tenant_of = tenant_of
        self._native: AsyncBackend | None = None
        """The store's native asyncio backend (Redis, or an AsyncStore's; None: every call on the worker)."""
        self._owns_native = False
        self._loop: asyncio.AbstractEventLoop | None = None
        """The one event loop the native backend is used from (its connections belong to it)."""
        self._astore: AsyncStore | None = None
        """The AsyncStore given, whose tenant views carry a routed call's native backend."""
        if isinstance(store, AsyncStore):
            self._store, self._worker, self._owns_worker = store.sync, store._worker, False
            lane = store._lane
            self._native = lane.backend if lane is not None and lane.reads else None
            self._astore = store
        elif isinstance(store, Store):
            self._store, self._worker, self._owns_worker = store, Worker(workers), True
            self._native, self._owns_native = _own_native(store), True
        else:
            raise InvalidInputError(
                f"store must be a statekeel.Store or AsyncStore, got {type(store).__name__}; "
                "use StatekeelSession.from_url(session_id, url) to open one from a URL"
            )
        self._nowait = type(self._store.backend) is SQLiteBackend
        """Whether ``get_items`` may read on the loop when that waits for nothing (plain SQLite:
        no encryption or chain wrapper, whose reads open and check what the backend returns)."""
        self._tenants: dict[str, Store] = {}
        self._views: dict[str, AsyncStore] = {}
        """Each routed tenant's view of the AsyncStore given (what its native calls run on)."""
        self._routed: ContextVar[str | None] = ContextVar(f"statekeel-session-tenant-{id(self)}", default=None)
        self._owned: Store | None = None
        self._writer = Writer(self.session_id, self._open)

    @classmethod
    def from_url(cls, session_id: str, url: str, **options: Any) -> StatekeelSession:
        """A session on a store it opens (``statekeel.open(url)``) and closes with :meth:`close`.

        ``options`` go to :class:`StatekeelSession` (``user``, ``ttl``, ``session_settings``,
        ``tenant_of``, ``workers``); open options such as ``encryption=`` go in ``open=``."""
        store = open_store(url, **options.pop("open", {}))
        try:
            session = cls(session_id, store, **options)
        except BaseException:
            store.close()
            raise
        session._owned = store
        return session

    def close(self) -> None:
        """Stop this session's worker; close the store only if :meth:`from_url` opened it.

        Sync, like the SDK's ``SQLiteSession.close()``; it waits only for calls already made."""
        if self._owns_native and self._native is not None:
            _close_native(self._native)
        if self._owns_worker:
            self._worker.shutdown()
        if self._owned is not None:
            self._owned.close()

    def __repr__(self) -> str:
        return f"<StatekeelSession {self.session_id!r} on {self._store.url}>"

    # -- routing ------------------------------------------------------------------------
    def _route(self, wrapper: RunContextWrapper[Any] | None) -> str | None:
        """The tenant this call reads and writes (None: the store itself); runs on the loop.

        A call with a wrapper goes where ``tenant_of(wrapper)`` says, and is remembered for
        the rest of the caller's task: the SDK's compaction session calls ``get_items`` and
        the ``_atomic_replace_items`` hook without the wrapper, right after the run's
        ``add_items`` in the same task, and must reach the same tenant's history."""
        if self._tenant_of is None:
            return None
        if wrapper is None:
            return self._routed.get()
        name = self._tenant_of(wrapper)
        self._routed.set(name)
        return name

    def _target(self, tenant: str | None) -> Store:
        """The store a call routed to ``tenant`` uses (on the worker: opening a tenant handle
        may reach the backend)."""
        if tenant is None:
            return self._store
        if tenant not in self._tenants:
            self._tenants[tenant] = self._store.tenant(tenant)
        return self._tenants[tenant]

    def _native_here(self, tenant: str | None) -> tuple[AsyncBackend, Store] | None:
        """The native backend if this call may await it on its loop, and the store (a routed
        call's: its tenant's handle) it reads and writes through; None: the worker.

        A routed call runs natively on its tenant's view of an AsyncStore given to the session
        (``AsyncStore.tenant``: on PostgreSQL the tenant's own pool); given a sync store, it runs
        on the worker. Native calls stay on one event loop at a time — the first that made one,
        until it is closed (a later ``asyncio.run``): the driver's connections belong to a loop,
        and calls made from loops in other threads at once (the SDK's own concurrency test) take
        the worker."""
        native, store = self._native, self._store
        if tenant is not None:
            view = self._views.get(tenant)
            if view is None and self._astore is not None:  # kept, as _target keeps the sync handles
                view = self._views[tenant] = self._astore.tenant(tenant)
                self._tenants.setdefault(tenant, view.sync)  # one handle per tenant for both paths
            lane = None if view is None else view._lane
            if view is None or lane is None or not lane.reads:
                return None
            native, store = lane.backend, view.sync
        if native is None:
            return None
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            if self._loop is not None and not self._loop.is_closed():
                return None
            self._loop = loop
        return native, store

    def _open(self, target: Store) -> _Session:
        return target.session(self.session_id, user=self._user, ttl=self._ttl)

    # -- the Session protocol -----------------------------------------------------------
    async def get_items(
        self, limit: int | None = None, *, wrapper: RunContextWrapper[Any] | None = None
    ) -> list[TResponseInputItem]:
        """The latest ``limit`` items (default: ``session_settings.limit``, else all), oldest first.

        Costs O(limit): only the newest entries are read. ``limit=0`` gives ``[]``; a
        negative limit means all, as in the SDK's SQLiteSession."""
        n = _check_limit(resolve_session_limit(limit, self.session_settings))
        if n == 0:
            return []
        tenant = self._route(wrapper)
        here = self._native_here(tenant)
        if here is not None:
            await settled(self._worker)  # after the worker calls made before this one
            found = await _read_native(*here, self.session_id, n)
            if found is not None:
                return found
        elif tenant is None and self._nowait and n is not None and n <= _NOWAIT_MAX:
            await settled(self._worker)
            found = _read_nowait(self._store, self.session_id, n)
            if found is not None:
                return found
        return await self._worker.run(lambda: _read_items(self._target(tenant), self.session_id, n))

    async def add_items(
        self, items: list[TResponseInputItem], *, wrapper: RunContextWrapper[Any] | None = None
    ) -> None:
        """Append ``items`` in one atomic batch; a retried batch whose items carry ids is applied once."""
        batch = _check_items(items)
        if not batch:
            return
        key, tenant = _batch_key(batch), self._route(wrapper)
        here = self._native_here(tenant)
        if here is not None:
            await self._writer.append_native(*here, self._worker, tenant, batch, key)
            return
        await self._worker.run(lambda: self._writer.append(tenant, self._target(tenant), batch, key))

    async def pop_item(self, *, wrapper: RunContextWrapper[Any] | None = None) -> TResponseInputItem | None:
        """Remove and return the newest item atomically (None when there is none)."""
        tenant = self._route(wrapper)

        def pop() -> Any:
            s = self._target(tenant).find_session(self.session_id)
            if s is None or not _has_visible(s):
                return None
            message = s.pop()
            return None if message is None else message.value

        result: TResponseInputItem | None = await self._worker.run(pop)
        return result

    async def clear_session(self, *, wrapper: RunContextWrapper[Any] | None = None) -> None:
        """Drop every item (and the adapter's state) atomically; the session itself stays."""
        tenant = self._route(wrapper)

        def clear() -> None:
            s = self._target(tenant).find_session(self.session_id)
            if s is not None:
                s.clear()
            self._writer.forget(tenant)

        await self._worker.run(clear)

    # -- compaction (the SDK's OpenAIResponsesCompactionSession calls this hook) ----------
    async def _atomic_replace_items(self, items: list[TResponseInputItem]) -> bool:
        """Make ``items`` (a compacted summary) the whole visible history, keeping the old one.

        One atomic batch appends the summary and records that the entries up to the newest
        one present are compacted: ``get_items``/``pop_item`` no longer see them, but they
        stay in the statekeel session (``store.session(id).history()`` reads everything).
        The SDK gives this hook no wrapper: it goes to the tenant the run's calls in this task
        were routed to (:meth:`_route`)."""
        batch, tenant = _check_items(items), self._route(None)

        def replace() -> bool:
            s = self._open(self._target(tenant))
            newest = s.messages(last=1, include_hidden=True)
            with s.batch() as b:
                if batch:
                    b.append(*batch)
                b.put(COMPACTED_THROUGH, newest[0].seq if newest else 0)
            self._writer.forget(tenant)  # the cached handle's next seq is behind the summary
            return True

        return await self._worker.run(replace)


@functools.lru_cache(maxsize=256)
def _read_keys(session_id: str) -> tuple[str, str, str]:
    """What ``get_items`` reads with the tail: the session, its compaction mark, any restore
    view (cached: escaping the keys on every call was a tenth of a Redis read's Python)."""
    return (
        layout.session_meta_key(session_id),
        layout.state_key("session", session_id, COMPACTED_THROUGH),
        layout.session_view_key(session_id),
    )


def _through(store: Store, mark: Record | None) -> int:
    """The newest seq a compaction replaced (0: none)."""
    return 0 if mark is None else int(store.codec.decode(mark.data, mark.codec, mark.key))


def _read_items(store: Store, session_id: str, n: int | None) -> list[Any]:
    """The newest ``n`` visible items (all: None), oldest first.

    One :meth:`~statekeel.protocol.Backend.get_many_and_values` reads the session, its
    compaction mark, any restore view and the log's newest entries (two reads here, through the
    store's encryption, chain or tenant view; one round trip in :func:`_read_native`). The tail
    is only wrong when a compaction mark or a restore view exists (rare): then it is read again
    from after the mark, or — for a session restored to a checkpoint — through
    :meth:`Session.messages`, which applies its hidden ranges."""
    log = _history(session_id)
    (meta, mark, view), values = store.backend.get_many_and_values(
        _read_keys(session_id), log, limit=n, reverse=n is not None
    )
    if meta is None:
        return []
    through = _through(store, mark)
    if view is not None:
        s = _Session(store, session_id, meta, None)
        return [m.value for m in s.messages(last=n, start=through + 1)]
    if mark is not None:
        values = [(e.data, e.codec) for e in store.backend.read(log, start=through + 1, limit=n, reverse=n is not None)]
    return store.codec.decode_many(values, log)


def _read_nowait(store: Store, session_id: str, n: int | None) -> list[Any] | None:
    """:func:`_read_items` on the event loop, for a plain SQLite store, when it waits for nothing
    (:meth:`~statekeel.backends.sqlite.SQLiteBackend.get_many_and_values_nowait`): a thread hop
    costs more than reading 20 rows. None — the worker reads it — when the connection is busy,
    a row needs a closer look, or a compaction mark or restore view applies (rare)."""
    backend, log = store.backend, _history(session_id)
    assert isinstance(backend, SQLiteBackend)
    found = backend.get_many_and_values_nowait(_read_keys(session_id), log, limit=n, reverse=n is not None)
    if found is None:
        return None
    (meta, mark, view), values = found
    if meta is None:
        return []
    if mark is not None or view is not None:
        return None
    return store.codec.decode_many(values, log)


async def _read_native(backend: AsyncBackend, store: Store, session_id: str, n: int | None) -> list[Any] | None:
    """:func:`_read_items` on the native asyncio backend (one round trip on Redis). None for a
    restored session (its hidden ranges are applied by the sync code, on the worker)."""
    log = _history(session_id)
    (meta, mark, view), values = await backend.get_many_and_values(
        _read_keys(session_id), log, limit=n, reverse=n is not None
    )
    if view is not None:
        return None
    if meta is None:
        return []
    if mark is not None:
        entries = await backend.read(log, start=_through(store, mark) + 1, limit=n, reverse=n is not None)
        values = [(e.data, e.codec) for e in entries]
    return store.codec.decode_many(values, log)


_history = functools.lru_cache(maxsize=256)(layout.history_log)
"""The history log's name (cached, as :func:`_read_keys`)."""


def _own_native(store: Store) -> AsyncBackend | None:
    """A native asyncio backend for a sync store given to (or opened by) this session: Redis
    only. PostgreSQL's async pool runs tasks on its event loop that only an ``await`` on that
    loop can end, which the SDK's sync ``close()`` cannot do; pass an AsyncStore (whose
    ``aclose()`` ends them) to run PostgreSQL calls natively."""
    from ...backends.redis.backend import RedisBackend

    return _native.native_backend(store) if type(store.backend) is RedisBackend else None


def _close_native(backend: AsyncBackend) -> None:
    """Close the native backend this session opened: on the running loop if there is one
    (a task), else on a loop of its own (a client of a finished loop is dropped quietly)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(backend.aclose())
        return
    _CLOSING.add(task := loop.create_task(backend.aclose()))
    task.add_done_callback(_CLOSING.discard)


_CLOSING: set[asyncio.Task[None]] = set()
"""Close tasks still running (held so that they are not collected before they finish)."""


def _has_visible(s: _Session) -> bool:
    """Whether the newest entry is after the compaction mark (what pop_item may remove)."""
    through = s.state.get(COMPACTED_THROUGH)
    if through is None:
        return True
    newest = s.messages(last=1)
    return bool(newest) and newest[0].seq > through


def _check_limit(limit: Any) -> int | None:
    """``None`` (all), 0, or N > 0; negatives mean all (SQLiteSession's LIMIT semantics)."""
    if limit is None:
        return None
    if type(limit) is not int:
        raise InvalidInputError(f"limit must be an int or None, got {type(limit).__name__} {limit!r}")
    return None if limit < 0 else limit


def _check_items(items: Any) -> list[Any]:
    """The items as a list, or InvalidInputError before anything is written."""
    if not isinstance(items, (list, tuple)):
        raise InvalidInputError(f"add_items takes a list of items, got {type(items).__name__}")
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise InvalidInputError(
                f"item {i} is a {type(item).__name__}; the SDK's session items are dicts "
                "(use item.to_input_item() for a RunItem)"
            )
    return list(items)


def _batch_key(items: list[Any]) -> str | None:
    """An idempotency key for a batch holding items with ids (their retry is the same batch).

    Batches without any id (a user message alone) get none: the same text sent twice is
    two turns, not a retry."""
    if not any(isinstance(item.get(f), str) and item.get(f) for item in items for f in _ID_FIELDS):
        return None
    try:
        text = json.dumps(items, sort_keys=True, default=str)
    except (TypeError, ValueError):  # keys that are not str, an int of over 4,300 digits: the codec
        return None  # refuses them, with their path
    digest = hashlib.sha256(text.encode()).hexdigest()
    return f"openai-agents:{digest[:40]}"
