"""AsyncStateView: the asyncio twin of :class:`~statekeel.StateView`."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, NoReturn

from ..errors import InvalidInputError, UsageError
from ..features._duration import Duration
from ..features.state import MISSING, Scope, StateView
from ..models import Item
from ._generated import _StateViewForwards
from ._worker import Worker

__all__ = ["AsyncStateView"]


class AsyncStateView(_StateViewForwards):
    """Versioned key-value state of one scope; every method of StateView, awaited.

    Get it from ``store.app``, ``store.user(id)``, ``store.scope(...)``,
    ``store.temp`` or ``session.state``. The underlying :class:`StateView` is
    resolved on the store's worker at the first call (``scope('session:<id>')``
    opens the session then, as the sync API does when asked). The plain methods
    (``get``, ``put``, ``items``, ...) are generated into ``_StateViewForwards``.
    """

    def __init__(self, worker: Worker, scope: Scope, view: StateView | Callable[[], StateView]) -> None:
        self._worker = worker
        self.scope = scope
        """The scope: ``app``, ``user:<id>``, ``session:<id>`` or ``temp``."""
        self._view = view if isinstance(view, StateView) else None
        self._make = view if not isinstance(view, StateView) else None

    def __repr__(self) -> str:
        return f"<AsyncStateView {self.scope}>"

    def _resolve(self) -> StateView:  # runs on the worker
        if self._view is None:
            assert self._make is not None
            self._view = self._make()
        return self._view

    # -- reads ---------------------------------------------------------------
    async def contains(self, key: str) -> bool:
        """``key in state`` of the sync API: True if ``key`` holds a live value."""
        return await self._worker.run(lambda: key in self._resolve())

    async def keys(self, prefix: str = "") -> AsyncIterator[str]:
        """Every key, following pages as needed: ``async for key in state.keys():``."""
        async for key in self._worker.iterate(lambda: self._resolve().keys(prefix)):
            yield key

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
        return await self._worker.run(
            lambda: self._resolve().update(key, fn, default=default, ttl=ttl, max_attempts=max_attempts)
        )

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
