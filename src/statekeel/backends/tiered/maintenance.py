"""What runs beside the writes: flushing the write-behind queue, evicting idle partitions
from Redis, and dropping the whole Redis cache after PostgreSQL took writes Redis missed.

Every process runs a :class:`Maintenance` thread (period ``flush_interval``; a
write-behind write wakes it early after ``flush_every`` batches); the Redis
lease makes one of them do the work at a time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from ...errors import ConflictError, StatekeelError
from ...protocol import ANY, Append, Backend, Delete, Expire, Op, Put, Record
from . import batches
from .config import Settings
from .divergence import reached
from .flusher import Lease, LeaseHeld, flush_queue, noop_batch
from .hydrate import MARKER_CODEC, drop_ops
from .names import DIRTY, MARKERS, QUEUE, fence, partition_of_marker

log = logging.getLogger("statekeel.tiered")

EVICT_BATCH = 100


class Maintenance:
    """Flushes, evicts and resets the hot tier; one per :class:`~.backend.TieredBackend`."""

    def __init__(self, hot: Backend, cold: Backend, settings: Settings) -> None:
        self.hot, self.cold, self.settings = hot, cold, settings
        self.behind = settings.mode == "write-behind"
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_evict = time.time()
        self._flushed = 0
        """The queue seq PostgreSQL held everything up to after this process's last flush."""
        self.queued = 0
        """Batches this process queued since its last flush."""
        self._dirty = False
        """A write could not flag the cache dirty in PostgreSQL: the next pass does."""

    # -- the thread ------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="statekeel-tiered", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._closed.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(30)

    def queued_one(self) -> None:
        """A write-behind batch was queued: wake the flusher after ``flush_every`` of them."""
        self.queued += 1
        if self.queued >= self.settings.flush_every:
            self._wake.set()

    def flag_dirty(self) -> None:
        """PostgreSQL took a write Redis missed: flag the cache in PostgreSQL to be dropped. If
        PostgreSQL fails now, the write is committed all the same: the next pass writes the flag."""
        try:
            self.cold.apply([Put(DIRTY, b"true", "json")])
        except StatekeelError as exc:
            log.warning("statekeel tiered: could not flag Redis' cache as stale yet, will retry (%s)", exc)
            self._dirty = True

    def _run(self) -> None:
        while not self._closed.is_set():
            self._wake.wait(self.settings.flush_interval)
            self._wake.clear()
            if self._closed.is_set():
                return
            try:
                self.tick()
            except StatekeelError as exc:  # a tier is down: the next tick tries again
                log.warning("statekeel tiered: maintenance skipped (%s)", exc)
            except Exception:  # noqa: BLE001 - a bug must not kill the flusher thread silently
                log.exception("statekeel tiered: maintenance failed")

    # -- the work --------------------------------------------------------------
    def tick(self) -> None:
        """One pass: the dirty flag a write could not write, then under the lease: flush
        (write-behind), drop a dirty cache, evict idle partitions."""
        self.flag_missed()
        self._locked(self._pass)

    def flag_missed(self) -> None:
        """Write the dirty flag a write could not write (:meth:`flag_dirty`); raises if PostgreSQL fails again."""
        if self._dirty:
            self._dirty = False
            try:
                self.cold.apply([Put(DIRTY, b"true", "json")])
            except StatekeelError:
                self._dirty = True
                raise

    def flush(self) -> int:
        """Replay what is queued into PostgreSQL now, unless another process holds the flusher
        lease; how many batches this call replayed (closing: best effort)."""
        return self._locked(self._flush) or 0

    def catch_up(self) -> int | None:
        """Until everything queued before this call is in PostgreSQL: replayed by this call (how
        many batches it replayed), or by the process holding the flusher lease (0). None if that
        process made no progress for twice the lease (it may be stuck): the caller must not go on."""
        target, progress, deadline = self._queue_end(), ("", -1), 0.0
        while (done := self._locked(self._flush)) is None:
            if target is None:
                return 0
            seen, there = reached(self.hot, self.cold, target)
            if there:
                return 0
            if seen != progress:  # the holder is replaying: give it another two lease lengths
                progress, deadline = seen, time.monotonic() + 2 * self.settings.lease
            elif time.monotonic() > deadline:
                return None
            time.sleep(0.02)
            now = self._queue_end()
            if now is None or now[0] != target[0]:
                target = now  # Redis lost the queue (and its batches): what counts is the new one's
        return done

    def _queue_end(self) -> tuple[str, int] | None:
        """The queue's epoch and last seq (None: no queue)."""
        info = self.hot.log_info(QUEUE)
        return (repr(info.created_at), info.last_seq) if info is not None else None

    def _flush(self, lease: Lease, *, follow: bool = False) -> int:
        done, self._flushed, reconciled = flush_queue(self.hot, self.cold, lease, follow=follow)
        if reconciled:  # Redis' queue had diverged: its cache lacks batches PostgreSQL has, drop it now
            more, self._flushed, _ = flush_queue(self.hot, self.cold, lease, follow=True)
            done += more
            self._reset_if_dirty(lease)
        return done

    def _locked(self, work: Callable[[Lease], int]) -> int | None:
        """``work`` under the flusher lease; None if another process holds it (or took it over)."""
        with self._lock:
            lease = Lease(self.hot, self.settings.lease)
            if not lease.acquire():
                return None
            try:
                self.queued = 0
                return work(lease)
            except LeaseHeld:
                return None
            finally:
                lease.release()

    def _pass(self, lease: Lease) -> int:
        """Flush, drop a dirty cache, evict. Both of the last need the queue empty (their batch
        fails if anything was queued since the flush), so when either is due the flush follows
        the queue to its end instead of stopping where it stood when the flush began."""
        flag = self.cold.get(DIRTY)
        evicting = time.time() - self._last_evict >= min(self.settings.hot_ttl, 60.0)
        done = self._flush(lease, follow=flag is not None or evicting) if self.behind else 0
        if flag is not None:
            self._reset_if_dirty(lease, flag)
        if evicting:
            self._last_evict = time.time()
            self.evict(lease)
        return done

    def _reset_if_dirty(self, lease: Lease | None = None, flag: Record | None = None) -> None:
        """PostgreSQL took writes while Redis was down: every cached partition may be stale.
        ``lease``: the batch renews it too (see :meth:`_queue_fence`); ``flag``: the dirty
        flag as the caller read it."""
        flag = self.cold.get(DIRTY) if flag is None else flag
        if flag is None:
            return
        now = time.time()
        ops = [*self._queue_fence(), Expire(MARKERS, now)]
        try:  # write-behind: not over batches queued since the flush (their partitions would be read back without them)
            if lease is None:
                self.hot.apply(ops, now=now)
            else:
                lease.guarded(ops, now)
        except ConflictError:
            return  # the next pass flushes them first
        self._flushed += self.behind  # the fence's no-op entry needs no flushing
        log.warning("statekeel tiered: Redis missed writes while it was down; its cache was dropped")
        try:
            self.cold.apply([Delete(DIRTY, expect=flag.version)])
        except ConflictError:
            pass  # flagged again meanwhile: the next pass drops the cache once more

    def evict(self, lease: Lease) -> int:
        """Drop partitions not written for ``hot_ttl`` seconds from Redis; how many went."""
        cutoff = time.time() - self.settings.hot_ttl
        idle = [r for r in self.hot.scan(MARKERS, limit=10_000) if r.updated_at < cutoff]
        gone = 0
        for i in range(0, len(idle), EVICT_BATCH):
            lease.renew()
            chunk = idle[i : i + EVICT_BATCH]
            now = time.time()
            ops: list[Op] = [*self._queue_fence(), *(o for r in chunk for o in _evict_ops(r.key, r.version, now))]
            try:
                lease.guarded(ops, now)
                gone += len(chunk)
                self._flushed += self.behind  # the fence's no-op entry needs no flushing
            except ConflictError:
                return gone  # a write came in (queue grew, or a marker moved): try again next pass
        return gone

    def _queue_fence(self) -> list[Op]:
        """Write-behind: fail the eviction if anything was queued since the flush (its partition
        would otherwise be read back from PostgreSQL before the queued batch reached it). The batch
        also renews the lease (:meth:`.Lease.guarded`): a Redis wipe since the flush fails it too."""
        if not self.behind:
            return []
        return [Append(QUEUE, ((noop_batch(), batches.CODEC),), at=self._flushed + 1)]


def _evict_ops(key: str, version: int, now: float) -> list[Op]:
    part = partition_of_marker(key)
    return [Delete(key, expect=version), Put(fence(part), b"", MARKER_CODEC, expect=ANY), *drop_ops(part, now)]
