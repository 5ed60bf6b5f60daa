"""Copying one partition from PostgreSQL into Redis (hydration), and dropping it from Redis.

Hydration installs a whole partition in ONE Redis batch: the partition's old
Redis keys expired, every live record and log of PostgreSQL loaded with its own
version, seq and timestamps, and the partition's marker created (``expect=None``,
so of two concurrent hydrations only one installs). It holds the partition's
PostgreSQL lock (:func:`.names.lock`) exclusively from reading PostgreSQL to
installing, so no write-through write of the partition commits in between (they
wait; see :mod:`.writes`) — and :data:`.names.SPANNING` in shared mode, which a write
spanning partitions (an ``Expire`` of a prefix shorter than a partition) holds
exclusively. The batch also checks the partition's fence
(:func:`.names.fence`) against the version read before PostgreSQL was read: a
drop in between (Redis' copy found out of step) bumped it, and the copy is not
installed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Protocol, runtime_checkable

from ...errors import ConflictError, StatekeelError
from ...protocol import (
    ANY, Backend, Delete, Entry, Expire, Load, LoadEntries, LogInfo, Op, OpResult, Put, Record, Touch, Trim,
)  # fmt: skip
from .names import SPANNING, fence, lock, marker, members

log = logging.getLogger("statekeel.tiered")

MARKER_CODEC = "tier-marker"
PAGE = 1000
LOCK_WAIT = 5.0
"""Seconds a copy waits for the partition's write-through writes to commit before giving up
(the read that started it is served from PostgreSQL either way)."""


def partition_copy(cold: Backend, part: str) -> list[Op]:
    """Load ops recreating ``part`` exactly as ``cold`` holds it (live data only)."""
    key, under = members(part)
    ops: list[Op] = []
    if key is not None:
        rec = cold.get(key)
        ops += [Load(rec)] if rec is not None else []
        ops += _log_copy(cold, key)
    if under is not None:
        ops += [Load(r) for r in _records(cold, under)]
        for log in _logs(cold, under):
            ops += _log_copy(cold, log)
    if isinstance(cold, KeepsEmptiedLogs):
        ops += [op for info in cold.emptied_logs(part, under) for op in _emptied_copy(info)]
    return ops


@runtime_checkable
class KeepsEmptiedLogs(Protocol):
    """A cold tier that lists the logs whose entries were all trimmed (PostgreSQL)."""

    def emptied_logs(self, name: str, prefix: str | None) -> list[LogInfo]:
        """See :meth:`statekeel.backends.postgres.PostgresBackend.emptied_logs`."""


def _emptied_copy(info: LogInfo) -> list[Op]:
    """A log whose entries were all trimmed (``session.clear()``): listings hide it, but its next
    append is ``last_seq + 1``. Its last entry loaded and trimmed again leaves Redis the same
    numbering — without it a write-behind append would start the log again at seq 1."""
    if info.last_seq < 1:
        return []  # nothing was ever numbered: both tiers start at 1
    last = Entry(info.log, info.last_seq, b"", "raw", info.created_at)
    return [LoadEntries(info.log, (last,), info.expires_at), Trim(info.log, info.last_seq + 1)]


def _records(cold: Backend, prefix: str) -> Iterator[Record]:
    after: str | None = None
    while page := cold.scan(prefix, after=after, limit=PAGE):
        yield from page
        after = page[-1].key


def _logs(cold: Backend, prefix: str) -> Iterator[str]:
    after: str | None = None
    while page := cold.scan_logs(prefix, after=after, limit=PAGE):
        yield from (i.log for i in page)
        after = page[-1].log


def _log_copy(cold: Backend, log: str) -> list[Op]:
    info = cold.log_info(log)
    entries = tuple(cold.read(log)) if info is not None else ()
    return [LoadEntries(log, entries, info.expires_at)] if info is not None and entries else []


def drop_ops(part: str, now: float) -> list[Op]:
    """Ops that remove ``part``'s data from Redis (the marker is the caller's business)."""
    key, under = members(part)
    ops: list[Op] = [Delete(key), Touch(key, expires_at=now)] if key is not None else []
    return ops + ([Expire(under, now)] if under is not None else [])


@runtime_checkable
class LocksPartitions(Protocol):
    """A cold tier with named locks: :class:`statekeel.backends.postgres.PostgresBackend`."""

    pool_max: int

    def apply_sharing(
        self, ops: Sequence[Op], locks: Sequence[str], *, now: float | None = None, exclusive: Sequence[str] = ()
    ) -> list[OpResult]:
        """See :meth:`statekeel.backends.postgres.PostgresBackend.apply_sharing`."""

    def exclusively(self, lock: str, *, wait: float, sharing: Sequence[str] = ()) -> AbstractContextManager[None]:
        """See :meth:`statekeel.backends.postgres.PostgresBackend.exclusively`."""


def hydrate(hot: Backend, cold: Backend, part: str) -> bool:
    """Copy ``part`` from ``cold`` into ``hot``; False when a concurrent write or hydration won
    (the caller reads again: the partition is then cached, or still not)."""
    held = (
        cold.exclusively(lock(part), wait=LOCK_WAIT, sharing=(SPANNING,))
        if isinstance(cold, LocksPartitions)
        else nullcontext()
    )
    with held:
        return _install(hot, cold, part)


def _install(hot: Backend, cold: Backend, part: str) -> bool:
    seen = hot.get(fence(part))
    copy = partition_copy(cold, part)
    now = time.time()
    ops: list[Op] = [
        Put(fence(part), b"", MARKER_CODEC, expect=seen.version if seen else None),
        Put(marker(part), b"", MARKER_CODEC, expect=None),
        *drop_ops(part, now),
        *copy,
    ]
    try:
        hot.apply(ops, now=now)
    except ConflictError:
        return False
    return True


def drop(hot: Backend, parts: list[str], now: float | None = None) -> None:
    """Forget ``parts`` in Redis (marker and data) and bump their fences."""
    now = time.time() if now is None else now
    ops: list[Op] = []
    for part in parts:
        ops += [Delete(marker(part)), Put(fence(part), b"", MARKER_CODEC, expect=ANY), *drop_ops(part, now)]
    if ops:
        hot.apply(ops, now=now)


QUIET = 0.02
"""Seconds without a caller reading PostgreSQL before a copy starts ..."""
QUIET_MOST = 1.0
"""... or this long after it was asked for, whichever comes first."""


class Pauses:
    """When callers read PostgreSQL in this process, so that copies start in the pauses.

    A copy costs several times the read that started it (reading the partition, then encoding
    every record and entry for Redis, which executes it on the other core). Started at once, it
    competed with the caller's next reads — an agent reads a session in a burst (the session, its
    history, its state) — for the interpreter and the cores: a cold read took up to 1.6× a plain
    PostgreSQL read. Waiting for a pause of :data:`QUIET` keeps it off the burst."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._busy = 0
        self._last = 0.0
        self._closed = False

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Around a caller's read of PostgreSQL."""
        with self._cond:
            self._busy += 1
        try:
            yield
        finally:
            with self._cond:
                self._busy -= 1
                self._last = time.monotonic()
                self._cond.notify_all()

    def wait(self) -> bool:
        """Until no caller has read PostgreSQL for :data:`QUIET` s since this call (the read
        that asked for the copy starts just after asking), at most :data:`QUIET_MOST` s; False
        if the store closed meanwhile (the copy is not made)."""
        asked = time.monotonic()
        deadline = asked + QUIET_MOST
        with self._cond:
            while not self._closed:
                now = time.monotonic()
                quiet_at = max(self._last, asked) + QUIET if self._busy == 0 else deadline
                if now >= min(quiet_at, deadline):
                    return True
                self._cond.wait(min(quiet_at, deadline) - now)
            return False

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class Hydrator:
    """Copies partitions into Redis off the caller's path: a read that misses is served from
    PostgreSQL at PostgreSQL's speed, and the partition is copied in the next pause of the
    process's reads (:class:`Pauses`), cached for the reads after it."""

    def __init__(self, hot: Backend, cold: Backend) -> None:
        self.hot, self.cold = hot, cold
        self.pauses = Pauses()
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="statekeel-hydrate")
        self._lock = threading.Lock()
        self._running: dict[str, Future[bool]] = {}

    def start(self, parts: list[str]) -> None:
        """Start hydrating each partition of ``parts`` not already on its way."""
        with self._lock:
            for part in parts:
                if part not in self._running:
                    try:
                        self._running[part] = self._pool.submit(self._one, part)
                    except RuntimeError:  # closed: the caller reads PostgreSQL, nothing to cache for
                        return

    def wait(self) -> None:
        """Until every hydration started so far has finished (tests, benchmarks)."""
        with self._lock:
            running = list(self._running.values())
        for future in running:
            future.exception()

    def stop(self) -> None:
        self.pauses.close()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _one(self, part: str) -> bool:
        try:
            return self.pauses.wait() and hydrate(self.hot, self.cold, part)
        except StatekeelError as exc:  # a tier is down: the next read starts it again
            log.warning("statekeel tiered: could not copy %r into Redis (%s)", part, exc)
            return False
        finally:
            with self._lock:
                self._running.pop(part, None)
