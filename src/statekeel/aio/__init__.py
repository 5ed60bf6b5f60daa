"""The asyncio twin of statekeel's API, on every backend.

    import statekeel

    async with statekeel.open_async("postgresql://…") as store:
        s = await store.session("support-42", user="u-7", ttl="2h")
        await s.append({"role": "user", "content": "My order is late"})
        await s.history(last=20)
        await s.state.update("ticket", lambda t: {**t, "status": "open"})
        async with s.batch() as b:
            b.append(reply)
            b.put("turn", 3)

Every feature is written once, on the sync backend protocol; the twins here
run that same code on the store's own worker thread (one by default, so calls
on a store run in the order they were made) and never block the event loop.
Same arguments, same results, same errors. On PostgreSQL and Redis the hot paths
(session open, append, batch, heartbeat, history, state get/put/update) run on the
native asyncio driver with no thread hop, and on SQLite and files concurrent session
writes are committed together (:mod:`statekeel.aio._native`). Anything without an explicit twin
yet is reachable with ``await store.call(lambda st: ...)`` and, for context
managers, ``async with store.context(lambda st: ...)``. See ``docs/async.md``.
"""

from ._decisions import AsyncDecisionContext
from ._events import AsyncConsumer, AsyncEventStream
from ._memory import AsyncMemory
from ._notes import AsyncSessionNotes
from ._runs import AsyncRun
from ._session import AsyncSession, AsyncSessionBatch
from ._state import AsyncStateView
from ._store import AsyncStore, AsyncStoreOpener, open_async

__all__ = [
    "AsyncConsumer",
    "AsyncDecisionContext",
    "AsyncEventStream",
    "AsyncMemory",
    "AsyncRun",
    "AsyncSession",
    "AsyncSessionBatch",
    "AsyncSessionNotes",
    "AsyncStateView",
    "AsyncStore",
    "AsyncStoreOpener",
    "open_async",
]
