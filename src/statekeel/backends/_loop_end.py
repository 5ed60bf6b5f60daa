"""Closing a native asyncio client when its event loop's run ends.

A pool or client of a native asyncio backend belongs to the loop that opened it.
``asyncio.run`` ends by cancelling every task of its loop; a task made here waits
for that cancellation and then closes what it guards, so a store that was never
closed leaves neither open connections nor — on PostgreSQL — a pool worker that
swallowed its cancellation while connecting and would keep ``asyncio.run``
waiting forever (psycopg_pool catches ``CancelledError`` around a connection
attempt to keep its books right).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

__all__ = ["close_at_loop_end", "stop_guard"]


def close_at_loop_end(close: Callable[[], Awaitable[object]], name: str) -> asyncio.Task[None]:
    """A task of the running loop that awaits ``close()`` once it is cancelled (keep a reference)."""

    async def guard() -> None:
        try:
            await asyncio.get_running_loop().create_future()  # until cancelled
        finally:
            try:
                await close()
            except Exception:  # noqa: BLE001 - the loop's run is ending: nothing is left to tell
                pass

    return asyncio.get_running_loop().create_task(guard(), name=name)


def stop_guard(task: asyncio.Task[None] | None) -> None:
    """Cancel ``task`` (it then closes what it guards) if it belongs to the running loop; a task of
    another loop is left to that loop."""
    if task is not None and task.get_loop() is asyncio.get_running_loop():
        task.cancel()
