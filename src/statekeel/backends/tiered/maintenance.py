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
from ...protocol import ANY, Append, Backend, Delete, Expire, Op, Put
from . import batches
from .config import Settings
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
        """One pass: flush (write-behind), drop a dirty cache, evict idle partitions."""
        self._locked(self._pass, wait=False)

    def flush(self, *, wait: bool = True) -> int:
        """Replay every queued batch into PostgreSQL now; how many this call replayed.

        ``wait``: if another process holds the lease, wait (up to twice the lease)
        for it, so that everything queued before this call is in PostgreSQL on return.
        """
        return self._locked(lambda lease: self._flush(lease), wait=wait)

    def _flush(self, lease: Lease) -> int:
        done, self._flushed = flush_queue(self.hot, self.cold, lease)
        return done

    def _locked(self, work: Callable[[Lease], int], *, wait: bool) -> int:
        deadline = time.monotonic() + 2 * self.settings.lease
        with self._lock:
            lease = Lease(self.hot, self.settings.lease)
            while not lease.acquire():
                if not wait or time.monotonic() > deadline:
                    return 0
                time.sleep(0.01)
            try:
                self.queued = 0
                return work(lease)
            except LeaseHeld:
                return 0
            finally:
                lease.release()

    def _pass(self, lease: Lease) -> int:
        done = self._flush(lease) if self.behind else 0
        self._reset_if_dirty()
        if time.time() - self._last_evict >= min(self.settings.hot_ttl, 60.0):
            self._last_evict = time.time()
            self.evict(lease)
        return done

    def _reset_if_dirty(self) -> None:
        """PostgreSQL took writes while Redis was down: every cached partition may be stale."""
        flag = self.cold.get(DIRTY)
        if flag is None:
            return
        now = time.time()
        try:  # write-behind: not over batches queued since the flush (their partitions would be read back without them)
            self.hot.apply([*self._queue_fence(), Expire(MARKERS, now)], now=now)
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
                self.hot.apply(ops, now=now)
                gone += len(chunk)
                self._flushed += self.behind  # the fence's no-op entry needs no flushing
            except ConflictError:
                return gone  # a write came in (queue grew, or a marker moved): try again next pass
        return gone

    def _queue_fence(self) -> list[Op]:
        """Write-behind: fail the eviction if anything was queued since the flush (its partition
        would otherwise be read back from PostgreSQL before the queued batch reached it)."""
        if not self.behind:
            return []
        return [Append(QUEUE, ((noop_batch(), batches.CODEC),), at=self._flushed + 1)]


def _evict_ops(key: str, version: int, now: float) -> list[Op]:
    part = partition_of_marker(key)
    return [Delete(key, expect=version), Put(fence(part), b"", MARKER_CODEC, expect=ANY), *drop_ops(part, now)]
