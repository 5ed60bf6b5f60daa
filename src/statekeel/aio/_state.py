"""AsyncStateView: the asyncio twin of :class:`~statekeel.StateView`."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, NoReturn

from ..core.session_write import SessionWrites
from ..core.validate import check_expect, check_int
from ..errors import ConflictError, ExpiredError, InvalidInputError, NotFoundError, UsageError
from ..features._duration import Duration, maybe_seconds
from ..features.sessions import SessionState
from ..features.state import MISSING, Scope, StateView
from ..models import Item, Page, to_datetime
from ..protocol import ANY, Delete, Expect, Record
from . import _native
from ._generated import _StateViewForwards
from ._worker import Worker
from ..protocol.jitter import backoff

__all__ = ["AsyncStateView"]


class AsyncStateView(_StateViewForwards):
    """Versioned key-value state of one scope; every method of StateView, awaited.

    Get it from ``store.app``, ``store.user(id)``, ``store.scope(...)``,
    ``store.temp`` or ``session.state``. The underlying :class:`StateView` is
    resolved on the store's worker at the first call (``scope('session:<id>')``
    opens the session then, as the sync API does when asked). The plain methods
    (``get``, ``put``, ``items``, ...) are generated into ``_StateViewForwards``.
    """

    def __init__(
        self, worker: Worker, scope: Scope, view: StateView | Callable[[], StateView],
        lane: _native.Lane | None = None,
    ) -> None:  # fmt: skip
        self._worker = worker
        self._lane = lane
        """Set when the hot calls run natively: only for views whose resolving does no I/O."""
        self.scope = scope
        """The scope: ``app``, ``user:<id>``, ``session:<id>`` or ``temp``."""
        self._view = view if isinstance(view, StateView) else None
        self._make = view if not isinstance(view, StateView) else None

    def __repr__(self) -> str:
        return f"<AsyncStateView {self.scope}>"

    @property
    def _reader(self) -> _native.Lane | None:
        """The lane when reading calls run natively too (not on a group-commit lane)."""
        return None if self._lane is None else self._lane.reader

    def _resolve(self) -> StateView:  # runs on the worker
        if self._view is None:
            assert self._make is not None
            self._view = self._make()
        return self._view

    # -- reads ---------------------------------------------------------------
    async def item(self, key: str) -> Item | None:
        """The value with its version and timestamps, or None."""
        lane = self._reader
        if lane is None:
            return await self._worker.run(lambda: self._resolve().item(key))
        async with lane.turn():
            return await self._item(lane, self._resolve(), key)

    async def get(self, key: str, default: Any = None) -> Any:
        """The value at ``key``, or ``default`` when missing or expired."""
        lane = self._reader
        if lane is None:
            return await self._worker.run(lambda: self._resolve().get(key, default))
        async with lane.turn():
            found = await self._item(lane, self._resolve(), key)
        return default if found is None else found.value

    async def contains(self, key: str) -> bool:
        """``key in state`` of the sync API: True if ``key`` holds a live value."""
        if self._reader is None or not isinstance(key, str):
            return await self._worker.run(lambda: key in self._resolve())
        return await self.item(key) is not None

    async def require(self, key: str) -> Item:
        """The item at ``key``; :class:`NotFoundError` or :class:`ExpiredError` if absent."""
        lane = self._reader
        if lane is None:
            return await self._worker.run(lambda: self._resolve().require(key))
        view = self._resolve()
        async with lane.turn():
            rec = await lane.backend.get(view._full_key(key), include_expired=True)
        if rec is None:
            raise NotFoundError(f"no {key!r} in {self.scope}; write it first or use get(key, default)")
        if rec.expires_at is not None and rec.expires_at <= time.time():
            raise ExpiredError(
                f"{key!r} in {self.scope} expired at {to_datetime(rec.expires_at)}; write it again "
                "or give it a longer ttl"
            )
        return view._item(rec)

    @staticmethod
    async def _item(lane: _native.Lane, view: StateView, key: str) -> Item | None:
        rec = await lane.backend.get(view._full_key(key))
        return view._item(rec) if rec else None

    # -- writes ----------------------------------------------------------------
    async def put(self, key: str, value: Any, *, expect: Expect = ANY, ttl: Duration | None = None) -> Item:
        """Store ``value``. ``expect=None``: only if absent; ``expect=N``: only if at version N."""
        if self._lane is None:
            return await self._worker.run(lambda: self._resolve().put(key, value, expect=expect, ttl=ttl))
        async with self._lane.turn():
            return await self._put(self._lane, self._resolve(), key, value, expect, ttl)

    async def _put(
        self, lane: _native.Lane, view: StateView, key: str, value: Any, expect: Expect, ttl: Duration | None
    ) -> Item:
        """:meth:`StateView.put` (or, in a session, :meth:`SessionState.put`), its apply awaited."""
        if isinstance(view, SessionState):
            sc = view._session
            if not _native.plain(sc):
                return await lane.worker.run(lambda: view.put(key, value, expect=expect, ttl=ttl))
            writes = SessionWrites(puts=[(key, value, check_expect(expect), maybe_seconds(ttl, "ttl"))])
            return view._item((await _native.commit(lane.backend, sc, writes)).records[0])
        rec = (await lane.backend.apply(view.put_op(key, value, expect=expect, ttl=ttl)))[0]
        assert isinstance(rec, Record)
        return Item(
            key, value, rec.version, to_datetime(rec.created_at),  # type: ignore[arg-type]
            to_datetime(rec.updated_at), to_datetime(rec.expires_at),  # type: ignore[arg-type]
        )

    async def delete(self, key: str, *, expect: Expect = ANY) -> bool:
        """Remove ``key``; True if it existed."""
        lane = self._lane
        if lane is None:
            return await self._worker.run(lambda: self._resolve().delete(key, expect=expect))
        view = self._resolve()
        async with lane.turn():
            if isinstance(view, SessionState):
                sc = view._session
                if not _native.plain(sc):
                    return await lane.worker.run(lambda: view.delete(key, expect=expect))
                writes = SessionWrites(deletes=[(key, check_expect(expect))])
                return (await _native.commit(lane.backend, sc, writes)).deleted[0]
            return bool((await lane.backend.apply([Delete(view._full_key(key), check_expect(expect))]))[0])

    async def keys(self, prefix: str = "") -> AsyncIterator[str]:
        """Every key, following pages as needed: ``async for key in state.keys():``."""
        if self._reader is None:
            async for key in self._worker.iterate(lambda: self._resolve().keys(prefix)):
                yield key
            return
        async for item in self._every(prefix):
            yield item.key

    async def items(self, prefix: str = "", *, after: str | None = None, limit: int = 100) -> Page[Item]:
        """A page of items whose key starts with ``prefix``, in key order."""
        lane = self._reader
        if lane is None:
            return await self._worker.run(lambda: self._resolve().items(prefix, after=after, limit=limit))
        view = self._resolve()
        full, cursor = view._scan_of(prefix, after, limit)  # the sync code's checks: no I/O
        async with lane.turn():
            recs = await lane.backend.scan(full, after=cursor, limit=limit)
        return view._page(recs, limit)

    async def to_dict(self) -> dict[str, Any]:
        """All live values of this scope."""
        if self._reader is None:
            return await self._worker.run(lambda: self._resolve().to_dict())
        return {i.key: i.value async for i in self._every("")}

    async def _every(self, prefix: str) -> AsyncIterator[Item]:
        """Every item under ``prefix``, a native page of 500 at a time (as the sync ``keys``)."""
        after: str | None = None
        while True:
            page = await self.items(prefix, after=after, limit=500)
            for item in page:
                yield item
            if page.next is None:
                return
            after = page.next

    async def update(
        self,
        key: str,
        fn: Callable[[Any], Any],
        *,
        default: Any = MISSING,
        ttl: Duration | None = None,
        max_attempts: int = 10_000,
    ) -> Item:
        """Re-read, apply ``fn`` and compare-and-set, retrying on conflict.

        ``fn`` is a plain (not async) function without side effects; it runs on
        the store's worker thread and may be called several times.
        """
        if inspect.iscoroutinefunction(fn):
            raise InvalidInputError(
                "update() takes a plain function (it may run several times on a worker thread); "
                "await what you need first, then pass a function of the current value"
            )
        lane = self._reader
        if lane is None:
            return await self._worker.run(
                lambda: self._resolve().update(key, fn, default=default, ttl=ttl, max_attempts=max_attempts)
            )
        async with lane.turn():
            return await self._update(lane, key, fn, default, ttl, max_attempts)

    async def _update(
        self, lane: _native.Lane, key: str, fn: Callable[[Any], Any], default: Any, ttl: Duration | None,
        max_attempts: int,
    ) -> Item:  # fmt: skip
        """:meth:`StateView.update`, awaited: the same checks, compare-and-set and backoff."""
        view = self._resolve()
        if not callable(fn):
            raise InvalidInputError(f"update() needs a function old value -> new value, got {type(fn).__name__}")
        check_int(max_attempts, "max_attempts", minimum=1)
        maybe_seconds(ttl, "ttl")
        full = view._full_key(key)
        for attempt in range(max_attempts):
            cur = await self._item(lane, view, key)
            if cur is None and default is MISSING:
                raise NotFoundError(f"no {key!r} in {self.scope} to update; pass default=")
            new = fn(default if cur is None else cur.value)
            try:
                return await self._put(lane, view, key, new, None if cur is None else cur.version, ttl)
            except ConflictError:
                view._store.stats["cas_retries"] += 1
                await asyncio.sleep(backoff(attempt))
        raise ConflictError(full, None, None)

    # -- sync spellings that cannot be awaited (runtime only: type checkers flag them)
    if not TYPE_CHECKING:

        def __getitem__(self, key: str) -> NoReturn:
            raise UsageError(
                "state[key] cannot be awaited; use `await state.require(key)` (an Item) "
                "or `await state.get(key)`"
            )

        def __setitem__(self, key: str, value: Any) -> NoReturn:
            raise UsageError("state[key] = value cannot be awaited; use `await state.put(key, value)`")

        def __delitem__(self, key: str) -> NoReturn:
            raise UsageError("del state[key] cannot be awaited; use `await state.delete(key)`")

        def __contains__(self, key: object) -> NoReturn:
            raise UsageError("`key in state` cannot be awaited; use `await state.contains(key)`")
