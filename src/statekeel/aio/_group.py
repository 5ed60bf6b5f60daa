"""Group commit for the stores that keep a thread (SQLite, files): one transaction, one fsync,
for the session writes that concurrent coroutines make at the same time.

With the worker alone, 32 conversations appending at once on a SQLite store
commit 32 transactions one after the other, each waiting for its own fsync.
Here the hot writes (append, batch, heartbeat, session state put/delete) are
planned on the event loop by the same pure code as the sync API
(:mod:`statekeel.aio._native`), and :class:`GroupBackend` queues their op
lists: whatever is queued when the worker is free is applied as one
:meth:`Backend.apply` — all of it durable with one commit.

Each caller keeps its own outcome: if the combined batch is refused (one of its
compare-and-sets conflicts, a value the backend rejects), nothing of it was
written — it is atomic — and the batches are applied again one by one, so each
caller gets exactly the result or error its batch alone would give. An error
that may have been applied (:attr:`StatekeelError.maybe_applied`: the disk or
the connection failed mid-commit) is never retried: every caller of the group
gets it, as a caller of the plain apply would.

Reads still run on the worker, one hop each, through the same sync calls.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence

from ..protocol import Backend, Entry, LogInfo, Op, OpResult, Record
from ..protocol.aio import AsyncBackend
from ..protocol.checks import check_ops
from ..protocol.group import commit_together
from ._worker import Worker

__all__ = ["GroupBackend"]

_Queued = tuple[list[Op], "asyncio.Future[list[OpResult]]"]


class GroupBackend(AsyncBackend):
    """A sync backend driven from the event loop through the store's worker; concurrent
    applies are committed together (see the module docstring)."""

    def __init__(self, backend: Backend, worker: Worker, stats: Counter[str]) -> None:
        self.url = backend.url
        self._stats = stats
        """The store's counters: ``group_commits`` (applies run) and ``group_batches`` (batches in them)."""
        self.batch_scope = backend.batch_scope
        self._backend = backend
        self._worker = worker
        self._queue: list[_Queued] = []
        self._flusher: asyncio.Task[None] | None = None

    async def get(self, key: str, *, include_expired: bool = False) -> Record | None:
        return await self._worker.run(lambda: self._backend.get(key, include_expired=include_expired))

    async def get_many(self, keys: Sequence[str]) -> list[Record | None]:
        return await self._worker.run(lambda: self._backend.get_many(keys))

    async def scan(self, prefix: str, *, after: str | None = None, limit: int = 100) -> list[Record]:
        return await self._worker.run(lambda: self._backend.scan(prefix, after=after, limit=limit))

    async def read(
        self, log: str, *, start: int = 1, stop: int | None = None, limit: int | None = None, reverse: bool = False
    ) -> list[Entry]:
        return await self._worker.run(
            lambda: self._backend.read(log, start=start, stop=stop, limit=limit, reverse=reverse)
        )

    async def read_values(
        self, log: str, *, limit: int | None = None, reverse: bool = False
    ) -> list[tuple[bytes, str]]:
        return await self._worker.run(lambda: self._backend.read_values(log, limit=limit, reverse=reverse))

    async def log_info(self, log: str) -> LogInfo | None:
        return await self._worker.run(lambda: self._backend.log_info(log))

    async def apply(self, ops: Sequence[Op], *, now: float | None = None) -> list[OpResult]:
        check_ops(ops, now)  # here, not in the merged batch: a bad op must not fail its neighbours
        if now is not None or not ops:  # a batch with its own clock is not merged with others
            return await self._worker.run(lambda: self._backend.apply(ops, now=now))
        await self._worker.settled()  # refuse when closed
        entry: _Queued = (list(ops), asyncio.get_running_loop().create_future())
        self._queue.append(entry)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush())
        try:
            return await entry[1]
        except asyncio.CancelledError:
            if entry in self._queue:  # not taken yet: it never runs, as on the worker
                self._queue.remove(entry)
            raise

    async def _flush(self) -> None:
        """Commit what is queued, as one group, until the queue is empty."""
        while self._queue:
            group, self._queue = self._queue, []
            self._stats["group_commits"] += 1
            self._stats["group_batches"] += len(group)
            try:
                outcomes = await self._worker.run(
                    lambda: commit_together(self._backend.apply, [ops for ops, _ in group]), tracked=False
                )
            except BaseException as exc:  # the worker refused (closed) or this task was cancelled
                outcomes = [exc for _ in group]
            for (_, future), outcome in zip(group, outcomes):
                if future.done():
                    continue  # its caller was cancelled: the result is dropped
                if isinstance(outcome, asyncio.CancelledError):
                    future.cancel()
                elif isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)

    async def aclose(self) -> None:
        """Nothing of its own to release: the store closes the backend and the worker."""
