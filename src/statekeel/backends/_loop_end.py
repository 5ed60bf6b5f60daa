"""One native asyncio client per event loop, closed when that loop's run ends.

A pool or client of a native asyncio backend belongs to the loop that opened it:
an :class:`AsyncStore` used from several loops — one ``asyncio.run`` after another,
or at the same time from threads each running its own loop — keeps one per loop
(:class:`PerLoop`), so the loops never take each other's connections.

``asyncio.run`` ends by cancelling every task of its loop; each loop's entry has a
task that waits for that cancellation and then closes the entry's client. So a
store that was never closed leaves neither open connections nor — on PostgreSQL —
a pool worker that swallowed its cancellation while connecting and would keep
``asyncio.run`` waiting forever (psycopg_pool catches ``CancelledError`` around a
connection attempt to keep its books right). The task is held here: asyncio keeps
only weak references to tasks, and a guard collected while pending would close
nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

__all__ = ["PerLoop"]

T = TypeVar("T")


class PerLoop(Generic[T]):
    """Each running loop's ``T`` (made by ``make`` on the loop's first call), closed by ``close``."""

    def __init__(self, make: Callable[[], T], close: Callable[[T], Awaitable[object]], name: str) -> None:
        self._make = make
        self._close = close
        self._name = name
        self._entries: dict[asyncio.AbstractEventLoop, tuple[T, asyncio.Task[None]]] = {}

    def get(self) -> T:
        """The running loop's ``T``, made (and guarded) on first use."""
        loop = asyncio.get_running_loop()
        entry = self._entries.get(loop)
        if entry is None:
            for other in list(self._entries):  # a copy: threads running other loops add theirs meanwhile
                if other.is_closed():  # closed without asyncio.run's cancellation: its clients are dead
                    self._entries.pop(other, None)
            item = self._make()
            entry = self._entries[loop] = (item, loop.create_task(self._guard(loop, item), name=self._name))
        return entry[0]

    def current(self) -> T | None:
        """The running loop's ``T`` if it has one (nothing is made)."""
        entry = self._entries.get(asyncio.get_running_loop())
        return None if entry is None else entry[0]

    async def _guard(self, loop: asyncio.AbstractEventLoop, item: T) -> None:
        try:
            await loop.create_future()  # until cancelled: the loop's run is ending, or aclose()
        except asyncio.CancelledError:
            if (found := self._entries.get(loop)) is not None and found[0] is item:
                self._entries.pop(loop, None)
            try:
                await self._close(item)
            except Exception:  # noqa: BLE001 - the loop's run is ending: nothing is left to tell
                pass
            raise
        # (a loop closed without cancelling its tasks never resumes this: the coroutine is just
        # collected with it, and a client of a closed loop has nothing left to close on it)

    async def aclose(self) -> None:
        """Close the running loop's ``T`` now; ask every other running loop to close its own (a
        client is closed on its loop); forget those of loops that no longer run."""
        here = asyncio.get_running_loop()
        entries, self._entries = self._entries, {}
        for loop, (item, guard) in entries.items():
            if loop is here:
                guard.cancel()
                await asyncio.wait([guard])  # it closes the item (and raises nothing here)
            elif not loop.is_closed():
                try:
                    loop.call_soon_threadsafe(guard.cancel)
                except RuntimeError:  # closed meanwhile
                    pass
