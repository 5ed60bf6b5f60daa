"""``memory://`` — the reference backend: plain dicts behind one lock.

Nothing survives the process. Every other backend must behave exactly like
this one; the conformance suite checks that they do. Like every backend it
keeps a checksum beside each record and entry (:mod:`statekeel.protocol.integrity`)
and verifies it on every read: nothing can damage bytes here, but the reference
walks the same path as the stores where something can.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import ConflictError
from ..protocol import (
    ANY,
    KEEP,
    Append,
    Backend,
    Delete,
    Entry,
    Expire,
    LogInfo,
    MigrationStatus,
    Op,
    Put,
    Record,
    Touch,
    Trim,
    Load,
    LoadEntries,
    Rewrite,
    refreshable,
)
from ..protocol.batch import check_batch
from ..protocol.checks import check_ops
from ..protocol.integrity import entry_sum, record_sum, verify_entry, verify_record
from ..protocol.keys import prefix_end
from ..protocol import OpResult
from ._closed import closed
from ._dispatch import handlers
from ._url import ParsedURL


@dataclass
class _Log:
    entries: dict[int, Entry] = field(default_factory=dict)
    sums: dict[int, int] = field(default_factory=dict)
    """Checksum of each entry, by seq."""
    first_seq: int = 1
    last_seq: int = 0
    created_at: float = 0.0
    updated_at: float = 0.0
    expires_at: float | None = None


def _alive(expires_at: float | None, now: float) -> bool:
    return expires_at is None or expires_at > now


class _Data:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.records: dict[str, Record] = {}
        self.sums: dict[str, int] = {}
        self.sorted: list[str] = []
        self.logs: dict[str, _Log] = {}


# memory://NAME is shared by every handle of this process that opens NAME;
# plain memory:// is private to its handle.
_NAMED: dict[str, _Data] = {}
_NAMED_LOCK = threading.Lock()


class MemoryBackend(Backend):
    """Dicts and a lock. Thread-safe; not shared between processes."""

    def __init__(self, url: ParsedURL | None = None, *, migrate: bool = True) -> None:
        self.url = url.redacted if url else "memory://"
        if url is not None:
            url.refuse_unknown(())  # memory:// takes no option: a misspelt one must not be ignored
        name = url.netloc + url.path if url else ""
        if name:
            with _NAMED_LOCK:
                data = _NAMED.setdefault(name, _Data())
        else:
            data = _Data()
        self._lock = data.lock
        self._records = data.records
        self._sums = data.sums
        self._sorted = data.sorted
        self._logs = data.logs

    # -- reads ---------------------------------------------------------------
    def get(self, key: str, *, include_expired: bool = False) -> Record | None:
        with self._lock:
            rec = self._records.get(key)
            stored = self._sums.get(key)
        if rec is None or not (include_expired or _alive(rec.expires_at, time.time())):
            return None
        verify_record(key, rec.codec, rec.data, rec.version, stored)
        return rec

    def scan(self, prefix: str, *, after: str | None = None, limit: int = 100) -> list[Record]:
        now = time.time()
        out: list[Record] = []
        with self._lock:
            lo = max(prefix, after + "\x00") if after is not None else prefix
            i = bisect.bisect_left(self._sorted, lo)
            end = prefix_end(prefix)
            while i < len(self._sorted) and len(out) < limit:
                key = self._sorted[i]
                if key >= end or not key.startswith(prefix):
                    break
                rec = self._records[key]
                if _alive(rec.expires_at, now):
                    verify_record(key, rec.codec, rec.data, rec.version, self._sums.get(key))
                    out.append(rec)
                i += 1
        return out

    def _live_log(self, log: str) -> _Log | None:
        lg = self._logs.get(log)
        if lg is None or not _alive(lg.expires_at, time.time()) or lg.last_seq < lg.first_seq:
            return None
        return lg

    def read(
        self,
        log: str,
        *,
        start: int = 1,
        stop: int | None = None,
        limit: int | None = None,
        reverse: bool = False,
    ) -> list[Entry]:
        with self._lock:
            lg = self._live_log(log)
            if lg is None:
                return []
            lo = max(start, lg.first_seq)
            hi = lg.last_seq + 1 if stop is None else min(stop, lg.last_seq + 1)
            if limit is not None:
                if reverse:
                    lo = max(lo, hi - limit)
                else:
                    hi = min(hi, lo + limit)
            found = [lg.entries[s] for s in range(lo, hi) if s in lg.entries]
            for e in found:
                verify_entry(log, e.seq, e.codec, e.data, lg.sums.get(e.seq))
            return found

    def log_info(self, log: str) -> LogInfo | None:
        with self._lock:
            lg = self._live_log(log)
            if lg is None:
                return None
            return LogInfo(log, lg.first_seq, lg.last_seq, lg.created_at, lg.updated_at, lg.expires_at)

    def scan_logs(self, prefix: str, *, after: str | None = None, limit: int = 100) -> list[LogInfo]:
        with self._lock:
            names = sorted(n for n in self._logs if n.startswith(prefix) and (after is None or n > after))
            found = [self.log_info(n) for n in names]
        return [i for i in found if i is not None][: max(limit, 0)]

    # -- writes --------------------------------------------------------------
    def apply(self, ops: Sequence[Op], *, now: float | None = None) -> list[OpResult]:
        check_ops(ops, now)
        steps = handlers(_APPLY, ops, "the memory:// backend")
        with self._lock:
            now = time.time() if now is None else now
            self._check(ops, now)
            return [step(self, op, now) for step, op in zip(steps, ops)]

    def _check(self, ops: Sequence[Op], now: float) -> None:
        def current(key: str) -> int | None:
            rec = self._records.get(key)
            return rec.version if rec is not None and _alive(rec.expires_at, now) else None

        def next_seq(log: str) -> int:  # as _append numbers it
            lg = self._logs.get(log)
            return 1 if lg is None or not _alive(lg.expires_at, now) else lg.last_seq + 1

        check_batch(ops, now, current, lambda prefix: [k for k in self._sorted if k.startswith(prefix)], next_seq)

    def _rewrite(self, op: Rewrite, now: float) -> bool:
        lg = self._live_log(op.log)
        old = lg.entries.get(op.seq) if lg else None
        if lg is None or old is None:
            return False
        lg.entries[op.seq] = replace(old, data=op.data, codec=op.codec)
        lg.sums[op.seq] = entry_sum(op.log, op.codec, op.data, op.seq)
        return True

    def _load(self, op: Load, now: float) -> Record:
        rec = op.record
        if rec.key not in self._records:
            bisect.insort(self._sorted, rec.key)
        self._records[rec.key] = rec
        self._sums[rec.key] = record_sum(rec.key, rec.codec, rec.data, rec.version)
        return rec

    def _load_entries(self, op: LoadEntries, now: float) -> int:
        lg = self._logs.get(op.log)
        if lg is None or not _alive(lg.expires_at, now):
            if not op.entries:
                return 0
            first = op.entries[0]
            lg = self._logs[op.log] = _Log(
                first_seq=first.seq, last_seq=first.seq - 1, created_at=first.created_at
            )
        written = 0
        for e in op.entries:
            if e.seq > lg.last_seq:
                lg.entries[e.seq] = Entry(op.log, e.seq, e.data, e.codec, e.created_at)
                lg.sums[e.seq] = entry_sum(op.log, e.codec, e.data, e.seq)
                lg.last_seq = e.seq
                lg.updated_at = max(lg.updated_at, e.created_at)
                written += 1
        lg.expires_at = op.expires_at
        return written

    def _put(self, op: Put, now: float) -> Record:
        old = self._records.get(op.key)
        if old is not None and not _alive(old.expires_at, now):
            old = None
        expires = (old.expires_at if old else None) if op.expires_at is KEEP else op.expires_at
        assert not isinstance(expires, type(KEEP))
        rec = Record(
            op.key,
            op.data,
            op.codec,
            old.version + 1 if old else 1,
            old.created_at if old else now,
            now,
            expires,
        )
        if op.key not in self._records:
            bisect.insort(self._sorted, op.key)
        self._records[op.key] = rec
        self._sums[op.key] = record_sum(op.key, op.codec, op.data, rec.version)
        return rec

    def _delete(self, op: Delete, now: float) -> bool:
        return self._remove(op.key, now)

    def _remove(self, key: str, now: float) -> bool:
        rec = self._records.pop(key, None)
        self._sums.pop(key, None)
        if rec is None:
            return False
        del self._sorted[bisect.bisect_left(self._sorted, key)]
        return _alive(rec.expires_at, now)

    def _append(self, op: Append, now: float) -> int:
        lg = self._logs.get(op.log)
        if lg is None or not _alive(lg.expires_at, now):
            lg = self._logs[op.log] = _Log(created_at=now)
        first = lg.last_seq + 1
        for i, (data, codec) in enumerate(op.items):
            lg.entries[first + i] = Entry(op.log, first + i, data, codec, now)
            lg.sums[first + i] = entry_sum(op.log, codec, data, first + i)
        lg.last_seq += len(op.items)
        lg.updated_at = now
        if op.expires_at is not KEEP:
            lg.expires_at = op.expires_at
        return first

    def _touch(self, op: Touch, now: float) -> bool:
        rec = self._records.get(op.key)
        if op.refresh is not None and not refreshable(rec, op.refresh, now):
            return False  # a TTL refresh: only the version read, still expiring
        if rec is not None and _alive(rec.expires_at, now):
            exp = rec.expires_at if op.expires_at is KEEP else op.expires_at
            assert not isinstance(exp, type(KEEP))
            self._records[op.key] = replace(rec, updated_at=now, expires_at=exp)
            return True
        lg = self._live_log(op.key)
        if lg is None:
            return False
        lg.updated_at = now
        if op.expires_at is not KEEP:
            lg.expires_at = op.expires_at
        return True

    def _expire(self, op: Expire, now: float) -> int:
        count = 0
        for key, rec in list(self._records.items()):
            if key.startswith(op.prefix) and _alive(rec.expires_at, now):
                self._records[key] = replace(rec, expires_at=op.expires_at)
                count += 1
        for name, lg in self._logs.items():
            if name.startswith(op.prefix) and _alive(lg.expires_at, now):
                lg.expires_at = op.expires_at
                count += 1
        return count

    def _trim(self, op: Trim, now: float) -> int:
        lg = self._logs.get(op.log)
        if lg is None:
            return 0
        dropped = 0
        while lg.first_seq < min(op.before, lg.last_seq + 1):
            lg.sums.pop(lg.first_seq, None)
            if lg.entries.pop(lg.first_seq, None) is not None:
                dropped += 1
            lg.first_seq += 1
        return dropped

    # -- housekeeping --------------------------------------------------------
    def purge_expired(self, *, limit: int = 1000) -> int:
        now = time.time()
        with self._lock:
            dead = [k for k, r in self._records.items() if not _alive(r.expires_at, now)][:limit]
            for key in dead:
                self._remove(key, now)
            logs = [n for n, lg in self._logs.items() if not _alive(lg.expires_at, now)]
            logs = logs[: max(0, limit - len(dead))]
            for name in logs:
                del self._logs[name]
        return len(dead) + len(logs)

    def migrate(self, *, check: bool = False) -> MigrationStatus:
        return MigrationStatus(current=1, target=1)

    def close(self) -> None:
        """The data stays (other handles of the same name still see it); this handle refuses
        every later call with StoreClosedError. Idempotent."""
        self._lock = closed(self.url)


_APPLY: dict[type[Op], Callable[[MemoryBackend, Any, float], OpResult]] = {
    Put: MemoryBackend._put,
    Delete: MemoryBackend._delete,
    Append: MemoryBackend._append,
    Touch: MemoryBackend._touch,
    Expire: MemoryBackend._expire,
    Trim: MemoryBackend._trim,
    Load: MemoryBackend._load,
    LoadEntries: MemoryBackend._load_entries,
    Rewrite: MemoryBackend._rewrite,
}
"""The handler of each op type: one row per op."""
