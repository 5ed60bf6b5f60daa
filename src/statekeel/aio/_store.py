"""AsyncStore and open_async: the asyncio twin of Store and open."""

from __future__ import annotations

import asyncio
import functools
from collections import Counter
from collections.abc import AsyncIterator, Callable, Generator
from contextlib import AbstractContextManager, asynccontextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any, AsyncContextManager, NoReturn, TypeVar

from ..errors import UsageError
from ..features.retention import Retention
from ..features._duration import Duration
from ..features.state import Scope, parse_scope
from ..core.sealed import SealedBackend
from ..protocol import Backend, keys
from ..store import Store
from ..store import open as open_sync
from . import _native
from ._events import AsyncEventStream
from ._memory import AsyncMemory
from ._generated import _StoreForwards
from ._runs import AsyncRun
from ._session import AsyncSession
from ._state import AsyncStateView
from ._worker import Worker, check_threads, running_loop

__all__ = ["AsyncStore", "AsyncStoreOpener", "open_async"]

T = TypeVar("T")


class AsyncStore(_StoreForwards):
    """The asyncio twin of :class:`~statekeel.Store`: the same API, awaited.

    Get one with ``store = await statekeel.open_async(url)`` (or ``async with
    statekeel.open_async(url) as store:``), or wrap a sync store opened earlier
    with ``AsyncStore(store)``. Calls run the sync code on the store's own
    worker thread; with ``workers=1`` (the default) they run one at a time in
    the order they were made. ``workers=N`` lets N calls run at once.

    On PostgreSQL and Redis (encrypted, tamper-evident and tenant handles too) the
    hot paths — session open, append, heartbeat, batch, history, count, info and
    state get/put/delete/update — run on the native asyncio driver instead, with no
    thread hop (:mod:`statekeel.aio._native`): different sessions run
    concurrently, and the calls through one session handle in call order.

    The plain methods (``sessions``, ``decisions``, ``erase``, ...) are generated
    into ``_StoreForwards``; what is written here wraps or manages something.
    """

    def __init__(self, store: Store, *, workers: int = 1) -> None:
        self._store = store
        self._worker = Worker(workers)
        self._owns_worker = True
        self._drivers = _native.Drivers()
        self._lane = _native.lane_for(store, self._worker, self._drivers)

    @classmethod
    def _sharing(cls, store: Store, parent: AsyncStore) -> AsyncStore:
        """A handle on ``store`` (a tenant's view) that uses ``parent``'s worker and asyncio
        drivers (and owns neither)."""
        view = cls.__new__(cls)
        view._store, view._worker, view._owns_worker, view._drivers = store, parent._worker, False, parent._drivers
        view._lane = _native.lane_for(store, view._worker, view._drivers)
        return view

    def __repr__(self) -> str:
        return f"<AsyncStore {self.url}>"

    @property
    def sync(self) -> Store:
        """The sync :class:`Store` underneath (use it only off the event loop)."""
        return self._store

    @property
    def url(self) -> str:
        """The backend URL, password removed."""
        return self._store.url

    @property
    def storage(self) -> Backend:
        """The backend beneath encryption and the chain (see :attr:`Store.storage`); sync: use it off the loop."""
        return self._store.storage

    @property
    def sealing(self) -> SealedBackend | None:
        """The encryption layer of an encrypted store (see :attr:`Store.sealing`)."""
        return self._store.sealing

    @property
    def stats(self) -> Counter[str]:
        """Counters such as ``cas_retries``, shared with :attr:`sync`."""
        return self._store.stats

    # -- the generic way in ---------------------------------------------------
    async def call(self, fn: Callable[[Store], T]) -> T:
        """Run ``fn(sync_store)`` on the store's worker and return its result.

        Reaches any sync feature from async code, e.g.
        ``await store.call(lambda st: st.run("r").step("fetch", fetch))``. ``fn``
        runs on a worker thread: it must not wait for other calls of this store.
        """
        return await self._worker.run(lambda: fn(self._store))

    def context(self, make: Callable[[Store], AbstractContextManager[T]]) -> AsyncContextManager[T]:
        """A sync context manager of a feature, entered and exited on the worker.

        ``async with store.context(lambda st: st.session("s").decide(...)) as d:``
        — the block itself runs on the event loop between the two.
        """
        return _on_worker(self._worker, lambda: make(self._store))

    # -- sessions ------------------------------------------------------------
    async def session(
        self, session_id: str, *, user: str | None = None, ttl: Duration | None = None,
        lease: Duration | None = None, retention: Retention | None = None,
    ) -> AsyncSession:
        """Get or create session ``session_id``; ``ttl`` makes it expire after inactivity;
        ``lease`` makes this handle its only writer (fenced); ``retention``: see :meth:`Store.session`."""
        lane = None if self._lane is None else self._lane.reader
        if lane is None or lease is not None or retention is not None:
            s = await self._worker.run(
                lambda: self._store.session(session_id, user=user, ttl=ttl, lease=lease, retention=retention)
            )
        else:
            async with lane.turn():
                s = await _native.open_session(lane.backend, self._store, session_id, user, ttl)
        return AsyncSession(s, self._worker, self._lane)

    async def find_session(self, session_id: str) -> AsyncSession | None:
        """An existing session without creating it, reopening it or changing its status (None if absent)."""
        lane = None if self._lane is None else self._lane.reader
        if lane is None:
            s = await self._worker.run(lambda: self._store.find_session(session_id))
        else:
            async with lane.turn():
                s = await _native.find(lane.backend, self._store, session_id)
        return None if s is None else AsyncSession(s, self._worker, self._lane)

    # -- state ---------------------------------------------------------------
    def scope(self, scope: str | Scope) -> AsyncStateView:
        """State of ``'app'``, ``'user:<id>'``, ``'session:<id>'`` or ``'temp'`` (no await)."""
        parsed = parse_scope(scope)  # bad scopes fail here, not at the first await
        native = self._lane if parsed.kind in ("app", "user") else None  # resolving those does no I/O
        return AsyncStateView(self._worker, parsed, lambda: self._store.scope(parsed), native)

    @property
    def app(self) -> AsyncStateView:
        """State shared by the whole application."""
        return self.scope("app")

    def user(self, user_id: str) -> AsyncStateView:
        """State of one user, shared by all their sessions."""
        return self.scope(Scope("user", user_id))

    @property
    def temp(self) -> AsyncStateView:
        """Scratch state of this process only; never written to the backend."""
        return self.scope("temp")

    # -- runs ------------------------------------------------------------------
    def run(self, run_id: str, *, max_attempts: int = 3, lease: Duration | None = None) -> AsyncRun:
        """A resumable run (no await; it loads at its first call): ``async with store.run(id) as run:``;
        ``lease`` makes it the run's only writer (fenced; taken at its first call)."""
        keys.escape(run_id)  # a bad id fails here, not at the first await
        return AsyncRun(
            self._worker, run_id, lambda: self._store.run(run_id, max_attempts=max_attempts, lease=lease)
        )

    # -- events --------------------------------------------------------------
    def events(self, stream: str) -> AsyncEventStream:
        """The append-only event stream ``stream`` (no await; its methods are awaited)."""
        return AsyncEventStream(self._store.events(stream), self._worker, self._lane)

    # -- long-term memory --------------------------------------------------------
    def memory(
        self, namespace: tuple[str, ...], *, embedder: Any = "default", dedup: bool = True,
        similarity: float | None = None,
    ) -> AsyncMemory:
        """Long-term memories of ``namespace`` (no await; its methods are awaited). See ``Store.memory``."""
        return AsyncMemory(
            self._store.memory(namespace, embedder=embedder, dedup=dedup, similarity=similarity), self._worker
        )

    # -- tenants ---------------------------------------------------------------
    def tenant(self, name: str) -> AsyncStore:
        """A handle that sees and writes only tenant ``name``'s data (same connection and worker;
        on PostgreSQL and Redis its hot paths run on the event loop as the store's do)."""
        return AsyncStore._sharing(self._store.tenant(name), self)

    # -- housekeeping --------------------------------------------------------
    async def aclose(self) -> None:
        """Finish the calls already made, then close the store. Idempotent."""
        if self._worker.closed:
            return
        if not self._owns_worker:  # a tenant view: the store it came from owns the connection
            await self._worker.run(self._store.close)
            return
        self._worker.closed = True
        await self._drivers.aclose()
        await asyncio.to_thread(self._shutdown)

    def _shutdown(self) -> None:
        self._worker.shutdown()
        self._store.close()

    async def __aenter__(self) -> AsyncStore:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    if not TYPE_CHECKING:  # at runtime only, so that type checkers flag the misuse instead

        def __enter__(self) -> NoReturn:
            raise UsageError("an AsyncStore is closed with `async with` or `await store.aclose()`, not `with`")

        def __exit__(self, *exc: object) -> None:
            return None


@asynccontextmanager
async def _on_worker(worker: Worker, make: Callable[[], AbstractContextManager[T]]) -> AsyncIterator[T]:
    cm = await worker.run(make)
    value = await worker.run(cm.__enter__)
    try:
        yield value
    except BaseException as exc:
        if not await worker.run(lambda: cm.__exit__(type(exc), exc, exc.__traceback__)):
            raise
    else:
        await worker.run(lambda: cm.__exit__(None, None, None))


class _NotAwaitedError(UsageError, AttributeError):
    """An attribute of the opener was used as if it were the store."""


class AsyncStoreOpener:
    """What :func:`open_async` returns: await it, or use it with ``async with``."""

    def __init__(self, url: str | None, workers: int, options: dict[str, Any]) -> None:
        self._url = url
        self._workers = workers
        self._options = options
        self._store: AsyncStore | None = None

    async def _open(self) -> AsyncStore:
        loop = running_loop()
        opening = loop.run_in_executor(None, functools.partial(open_sync, self._url, **self._options))
        try:
            store = await asyncio.shield(opening)
        except asyncio.CancelledError:  # close the store that opening still produces
            opening.add_done_callback(_close_opened)
            raise
        try:
            return AsyncStore(store, workers=self._workers)
        except BaseException:
            store.close()
            raise

    def __await__(self) -> Generator[Any, None, AsyncStore]:
        return self._open().__await__()

    async def __aenter__(self) -> AsyncStore:
        self._store = await self._open()
        return self._store

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._store is not None:
            await self._store.aclose()

    if not TYPE_CHECKING:  # at runtime only, so that type checkers flag the misuse instead

        def __enter__(self) -> NoReturn:
            raise UsageError(
                "statekeel.open_async() is used with `async with statekeel.open_async(url) as store:`; "
                "in sync code use `with statekeel.open(url) as store:`"
            )

        def __exit__(self, *exc: object) -> None:
            return None

        def __getattr__(self, name: str) -> NoReturn:
            if name.startswith("_"):
                raise AttributeError(name)
            raise _NotAwaitedError(
                f"statekeel.open_async() returns an awaitable, not the store, so it has no {name!r}: "
                "write `store = await statekeel.open_async(url)` inside async code, or "
                "`store = statekeel.open(url)` in sync code"
            )


def _close_opened(future: asyncio.Future[Store]) -> None:
    if not future.cancelled() and future.exception() is None:
        future.result().close()


def open_async(url: str | None = None, *, workers: int = 1, **options: Any) -> AsyncStoreOpener:
    """Open a store for asyncio code: ``store = await statekeel.open_async(url)``.

    Takes the options of :func:`statekeel.open`; ``workers`` is how many calls
    may run at once (1 = one at a time, in call order). Also usable as
    ``async with statekeel.open_async(url) as store:``, which closes it.
    """
    return AsyncStoreOpener(url, check_threads(workers), options)
