"""``add_items`` through a kept session handle that the append itself revalidates.

Opening a statekeel session reads its record (and its log's bounds) before the write; for the
SDK's one-write-per-call sessions that read was a third of a turn (two of three round trips on
Redis). The handle is therefore kept, and what the read used to prove — the session still
exists as this handle knows it — is proved by the write instead: the append carries ``at=``,
the seq its first item must get (:class:`~statekeel.protocol.Append`), learnt from the
handle's previous append. A session deleted, expired, or appended to by another writer
meanwhile refuses that batch with :class:`~statekeel.errors.ConflictError` and nothing is
written; the handle is dropped and the write is redone on a freshly opened one
(``store.session(id)``: get or create), whose first append goes where the log ends — exactly
what every call did before handles were kept. So a stale handle never writes (no history
without its session record): a deleted session comes back only as a new session holding only
the new items, as with the SDK's own sessions. Like any kept ``store.session()`` handle, it
does not set a session that another process marked completed or crashed active again until
it is reopened.

On a native asyncio backend (Redis; PostgreSQL through an AsyncStore) the happy path is
awaited on the event loop (no thread hop); anything else — opening, a conflict, a handle with
a pending reactivation — runs the sync path on the worker.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ...aio import _native
from ...aio._worker import CLOSED, Worker
from ...core import layout
from ...core.session_write import Committed, SessionWrites
from ...errors import ConflictError, ExpiredError, UsageError
from ...features.idempotency import DEFAULT_WINDOW
from ...features.sessions import Session as SkSession
from ...protocol import KEEP, Append, Op, Put
from ...protocol.aio import AsyncBackend
from ...store import Store

__all__ = ["Handle", "Writer", "settled"]

_RETRIES = 10


@dataclass
class Handle:
    """An open statekeel session and the seq its next append must get (its precondition;
    None right after opening: the first append goes where the log ends, as every append
    did before handles were kept, and tells the seq that follows it)."""

    session: SkSession
    next: int | None = None

    def appended(self, done: Committed, count: int) -> None:
        """Note where the batch just committed went: the next append must follow it."""
        first = done.extra[0]
        self.next = first + count if isinstance(first, int) and not isinstance(first, bool) else None


class Writer:
    """Appends SDK item batches to session ``session_id`` of each routed store.

    ``open_session(store)`` opens (gets or creates) the statekeel session; handles are
    kept per tenant (None: the store itself) and dropped by :meth:`forget`.
    """

    def __init__(self, session_id: str, open_session: Callable[[Store], SkSession]) -> None:
        self._id = session_id
        self._open_session = open_session
        self._handles: dict[str | None, Handle] = {}

    def forget(self, tenant: str | None) -> None:
        """Drop the handle of ``tenant`` (the next write opens the session again)."""
        self._handles.pop(tenant, None)

    def _open(self, tenant: str | None, target: Store) -> Handle:
        handle = self._handles[tenant] = Handle(self._open_session(target))
        return handle

    # -- the sync path (on the worker) ----------------------------------------------------
    def append(self, tenant: str | None, target: Store, batch: list[Any], key: str | None) -> None:
        """Append ``batch`` in one atomic batch (once per ``key``), reopening on a conflict."""
        for _ in range(_RETRIES):
            handle = self._handles.get(tenant) or self._open(tenant, target)
            try:
                done = handle.session._sc.commit(_writes(handle, batch, key))
            except (ConflictError, ExpiredError):
                self.forget(tenant)
                if key is not None and target.backend.get(layout.idempotency_key(self._id, key)) is not None:
                    return  # a retry of a batch already applied: nothing written, as asked
                continue  # the session moved on (another writer, a deletion): open it again
            handle.appended(done, len(batch))
            return
        raise ConflictError(layout.history_log(self._id), None, None)

    # -- the native path (on the event loop) ----------------------------------------------
    async def append_native(
        self, backend: AsyncBackend, target: Store, worker: Worker, tenant: str | None, batch: list[Any],
        key: str | None,
    ) -> None:  # fmt: skip
        """:meth:`append` with the I/O awaited when a plain handle is cached; else on the worker.
        ``backend``: ``target``'s native backend (a routed call's: its tenant's view)."""
        await settled(worker)  # after the worker calls made before this one
        handle = self._handles.get(tenant)
        if handle is not None and handle.next is not None and _native.plain(handle.session._sc):
            try:
                done = await _native.commit(backend, handle.session._sc, _writes(handle, batch, key))
            except (ConflictError, ExpiredError):
                self.forget(tenant)  # the sync path finds out why, reopens and writes (or not)
            else:
                handle.appended(done, len(batch))
                return
        await worker.run(lambda: self.append(tenant, target, batch, key))


async def settled(worker: Worker) -> None:
    """:meth:`Worker.settled` for calls on this loop: wait for the worker call made last, unless
    another thread's event loop made it (its future cannot be awaited here; calls from other
    threads are not ordered with this one anyway)."""
    if worker.closed:
        raise UsageError(CLOSED)
    last = worker._shared.last
    if last is not None and not last.done() and last.get_loop() is asyncio.get_running_loop():
        await asyncio.wait([last])


def _writes(handle: Handle, batch: list[Any], key: str | None) -> SessionWrites:
    """The batch as session writes: the append at ``handle.next`` (and the create-only
    idempotency record of ``key``, the layout :mod:`statekeel.features.idempotency` uses)."""
    sc = handle.session._sc
    codec, log, at = sc.core.codec, sc.keys.history, handle.next
    items = tuple(codec.encode(m, f"session[{sc.id!r}].append messages[{i}]", log) for i, m in enumerate(batch))
    ops: list[Op] = []
    if key is not None:
        rkey = layout.idempotency_key(sc.id, key)
        data, name = codec.encode({"messages": len(batch)}, f"idempotency key {key!r}", rkey)
        ops.append(Put(rkey, data, name, None, time.time() + DEFAULT_WINDOW))

    def extra(expires: float | None) -> list[Op]:
        return [Append(log, items, KEEP if sc.ttl is None else expires, at), *ops]

    return SessionWrites(extra=extra, heartbeat=False)  # the append is the heartbeat
