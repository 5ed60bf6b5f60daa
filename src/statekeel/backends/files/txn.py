"""One ``apply`` batch of the files backend, planned in memory before any write.

The batch runs the reference semantics of :mod:`statekeel.backends.memory` on
an overlay of the records and logs it touches (read from disk on first use);
nothing is written until every op has run, and a conflict raises before that.
:meth:`Txn.actions` then turns the overlay into the file changes that
:func:`.journal.commit` makes durable all at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from ...errors import CorruptionError
from ...protocol.batch import check_batch
from ...protocol import (
    ANY,
    KEEP,
    Append,
    Delete,
    Expire,
    Load,
    LoadEntries,
    Op,
    OpResult,
    Put,
    Record,
    Rewrite,
    Touch,
    Trim,
    refreshable,
)
from .._dispatch import handlers
from .format import Line, LogHeader, header_text, line_text, record_text
from .io import Action
from .logs import LogLines
from .tree import HEADER, LOG, RECORD, SIDECAR, KeyPath

__all__ = ["LogState", "Txn", "alive"]


def alive(expires_at: float | None, now: float) -> bool:
    return expires_at is None or expires_at > now


@dataclass
class LogState:
    """A log as the batch sees it: effective header values plus pending lines."""

    kp: KeyPath
    head: LogHeader
    lines: LogLines
    on_disk: bool
    """Its header file exists on disk."""
    fresh: bool = False
    """Created (or re-created over an expired log) by this batch: old lines are void."""
    pending: list[Line] = field(default_factory=list)
    """Entries this batch appends."""
    keep_from: int | None = None
    """Rewrite the file from this offset of the old one (compaction, re-creation)."""
    rewrites: dict[int, tuple[bytes, str]] = field(default_factory=dict)
    """New (data, codec) of old entries, by seq (forces a rewrite of the file)."""
    header_dirty: bool = False
    deleted: bool = False

    @property
    def empty(self) -> bool:
        return self.head.last_seq < self.head.first_seq


@dataclass(frozen=True)
class Disk:
    """What a batch reads from the store; the backend supplies it."""

    path: Callable[[str], KeyPath]
    record: Callable[[KeyPath], Record | None]
    """The stored record, expired or not."""
    log: Callable[[KeyPath], LogState | None]
    """The log with a header on disk, expired or not."""
    lines: Callable[[KeyPath], LogLines]
    keys: Callable[[str, str], Iterable[str]]
    """Keys with a RECORD or LOG file under a prefix."""
    exists: Callable[[str], bool]
    """Whether a path relative to the store root exists."""


class Txn:
    """Runs ops like the memory backend does, on an overlay; then lists file actions."""

    def __init__(self, disk: Disk, now: float) -> None:
        self.disk = disk
        self.now = now
        self.records: dict[str, Record | None] = {}
        self.on_disk: dict[str, bool] = {}
        self.dirty: set[str] = set()
        self.logs: dict[str, LogState | None] = {}

    def close(self) -> None:
        for lg in self.logs.values():
            if lg is not None:
                lg.lines.close()

    # -- overlay --------------------------------------------------------------
    def record(self, key: str) -> Record | None:
        """The stored record, expired or not."""
        if key not in self.records:
            rec = self.disk.record(self.disk.path(key))
            self.records[key], self.on_disk[key] = rec, rec is not None
        return self.records[key]

    def _set(self, key: str, rec: Record | None) -> None:
        self.record(key)
        self.records[key] = rec
        self.dirty.add(key)

    def log(self, key: str) -> LogState | None:
        """The log's state (expired or not); None if it has no header."""
        if key not in self.logs:
            self.logs[key] = self.disk.log(self.disk.path(key))
        lg = self.logs[key]
        return None if lg is None or lg.deleted else lg

    def _new_log(self, key: str, first: int, created_at: float) -> LogState:
        """Start ``key`` afresh (numbering from ``first``), voiding an expired one."""
        prev = self.logs.get(key)
        kp = self.disk.path(key)
        lines = prev.lines if prev is not None else self.disk.lines(kp)
        head = LogHeader(key, first, first - 1, created_at, 0.0, None)
        lg = LogState(kp, head, lines, prev is not None and prev.on_disk, fresh=True)
        lg.keep_from, lg.header_dirty = lines.tail().end, True
        self.logs[key] = lg
        return lg

    # -- the batch ---------------------------------------------------------------
    def run(self, ops: list[Op]) -> list[OpResult]:
        steps = handlers(_APPLY, ops, "the file:// backend")
        self._check(ops)
        return [step(self, op) for step, op in zip(steps, ops)]

    def _check(self, ops: list[Op]) -> None:
        clearing = {op.key for op in ops if isinstance(op, Delete) and op.expect is ANY}

        def current(key: str) -> int | None:
            try:
                rec = self.record(key)
            except CorruptionError:
                if key in clearing:  # an unconditional delete clears a damaged record
                    return None
                raise
            return rec.version if rec is not None and alive(rec.expires_at, self.now) else None

        def next_seq(key: str) -> int:  # as _append numbers it
            lg = self.log(key)
            return 1 if lg is None or not alive(lg.head.expires_at, self.now) else lg.head.last_seq + 1

        check_batch(ops, self.now, current, lambda prefix: self._keys_under(prefix, RECORD, []), next_seq)

    def _put(self, op: Put) -> Record:
        old = self.record(op.key)
        if old is not None and not alive(old.expires_at, self.now):
            old = None
        expires = (old.expires_at if old else None) if op.expires_at is KEEP else op.expires_at
        assert not isinstance(expires, type(KEEP))
        rec = Record(
            op.key, op.data, op.codec,
            old.version + 1 if old else 1,
            old.created_at if old else self.now,
            self.now, expires,
        )
        self._set(op.key, rec)
        return rec

    def _delete(self, op: Delete) -> bool:
        return self.delete(op.key)

    def delete(self, key: str) -> bool:
        try:
            rec = self.record(key)
        except CorruptionError:  # deleting is how a damaged record is cleared: let it go
            self.records[key], self.on_disk[key] = None, True
            self.dirty.add(key)
            return True
        if rec is None:
            return False
        self._set(key, None)
        return alive(rec.expires_at, self.now)

    def _append(self, op: Append) -> int:
        lg = self.log(op.log)
        if lg is None or not alive(lg.head.expires_at, self.now):
            lg = self._new_log(op.log, 1, self.now)
        first = lg.head.last_seq + 1
        n = len(op.items)
        for i, (data, codec) in enumerate(op.items):
            lg.pending.append(Line(first + i, self.now, codec, data, n - 1 - i))
        lg.head.last_seq += n
        lg.head.updated_at = self.now
        if op.expires_at is not KEEP and op.expires_at != lg.head.expires_at:
            lg.head.expires_at = op.expires_at
            lg.header_dirty = True
        return first

    def _touch(self, op: Touch) -> bool:
        rec = self.record(op.key)
        if op.refresh is not None and not refreshable(rec, op.refresh, self.now):
            return False  # a TTL refresh: only the version read, still expiring
        if rec is not None and alive(rec.expires_at, self.now):
            exp = rec.expires_at if op.expires_at is KEEP else op.expires_at
            assert not isinstance(exp, type(KEEP))
            self._set(op.key, replace(rec, updated_at=self.now, expires_at=exp))
            return True
        lg = self.log(op.key)
        if lg is None or not alive(lg.head.expires_at, self.now) or lg.empty:
            return False
        lg.head.updated_at = self.now
        if op.expires_at is not KEEP:
            lg.head.expires_at = op.expires_at
        lg.header_dirty = True
        return True

    def _keys_under(self, prefix: str, kind: str, known: Iterable[str]) -> list[str]:
        found = set(self.disk.keys(prefix, kind))
        found.update(k for k in known if k.startswith(prefix))
        return sorted(found)

    def _expire(self, op: Expire) -> int:
        count = 0
        for key in self._keys_under(op.prefix, RECORD, list(self.records)):
            rec = self.record(key)
            if rec is not None and alive(rec.expires_at, self.now):
                self._set(key, replace(rec, expires_at=op.expires_at))
                count += 1
        for key in self._keys_under(op.prefix, HEADER, [k for k, v in self.logs.items() if v is not None]):
            lg = self.log(key)
            if lg is not None and alive(lg.head.expires_at, self.now):
                lg.head.expires_at = op.expires_at
                lg.header_dirty = True
                count += 1
        return count

    def _load(self, op: Load) -> Record:
        self._set(op.record.key, op.record)
        return op.record

    def _load_entries(self, op: LoadEntries) -> int:
        lg = self.log(op.log)
        if lg is None or not alive(lg.head.expires_at, self.now):
            if not op.entries:
                return 0
            first = op.entries[0]
            lg = self._new_log(op.log, first.seq, first.created_at)
        written = 0
        for e in op.entries:
            if e.seq > lg.head.last_seq:
                lg.pending.append(Line(e.seq, e.created_at, e.codec, e.data, 0))
                lg.head.last_seq = e.seq
                lg.head.updated_at = max(lg.head.updated_at, e.created_at)
                written += 1
        lg.head.expires_at = op.expires_at
        lg.header_dirty = True
        return written

    def _trim(self, op: Trim) -> int:
        lg = self.log(op.log)
        if lg is None:
            return 0
        old_first = lg.head.first_seq
        new_first = max(old_first, min(op.before, lg.head.last_seq + 1))
        if new_first == old_first:
            return 0
        dropped = sum(1 for ln in lg.pending if old_first <= ln.seq < new_first)
        if not lg.fresh:
            end = lg.lines.tail().end
            lo = max(lg.keep_from or 0, lg.lines.offset_of(old_first, end))
            cut = lg.lines.offset_of(new_first, end)
            dropped += lg.lines.read_bytes(lo, cut).count(b"\n") if cut > lo else 0
            if cut * 2 >= end and cut > (lg.keep_from or 0):  # mostly dead: compact
                lg.keep_from = cut
                lg.pending = [ln for ln in lg.pending if ln.seq >= new_first]
        lg.head.first_seq = new_first
        lg.header_dirty = True
        return dropped

    def _rewrite(self, op: Rewrite) -> bool:
        lg = self.log(op.log)
        if lg is None or not alive(lg.head.expires_at, self.now) or lg.empty or op.seq < lg.head.first_seq:
            return False
        for i, ln in enumerate(lg.pending):
            if ln.seq == op.seq:
                lg.pending[i] = Line(ln.seq, ln.created_at, op.codec, op.data, ln.more)
                return True
        if lg.fresh or not lg.lines.entries(op.seq, op.seq + 1):
            return False
        lg.rewrites[op.seq] = (op.data, op.codec)
        if lg.keep_from is None:
            lg.keep_from = 0
        return True

    def purge(self, limit: int) -> int:
        """Delete up to ``limit`` expired records and logs (``purge_expired``); how many."""
        records: list[str] = []
        for key in self.disk.keys("", RECORD):
            if len(records) >= limit:
                break
            rec = self.record(key)
            if rec is not None and not alive(rec.expires_at, self.now):
                records.append(key)
        logs: list[str] = []
        for key in self.disk.keys("", HEADER):
            if len(logs) >= limit - len(records):
                break
            lg = self.log(key)
            if lg is not None and not alive(lg.head.expires_at, self.now):
                logs.append(key)
        for key in records:
            self.delete(key)
        for key in logs:
            self.drop_log(key)
        return len(records) + len(logs)

    def drop_log(self, key: str) -> None:
        """Remove a log entirely (purge)."""
        lg = self.log(key)
        if lg is not None:
            lg.deleted = True

    # -- the file changes ------------------------------------------------------
    def actions(self) -> list[Action]:
        out: list[Action] = []
        sidecars: dict[str, str] = {}
        for key in sorted(self.dirty):
            kp = self.disk.path(key)
            rec = self.records[key]
            if rec is not None:
                out.append(Action("write", kp.file(RECORD), record_text(rec)))
                self._sidecars(kp, sidecars)
            elif self.on_disk[key]:
                out.append(Action("delete", kp.file(RECORD)))
        for key in sorted(self.logs):
            lg = self.logs[key]
            if lg is not None:
                out.extend(self._log_actions(lg, sidecars))
        out.extend(Action("write", path, text) for path, text in sidecars.items())
        return out

    def _log_actions(self, lg: LogState, sidecars: dict[str, str]) -> list[Action]:
        kp = lg.kp
        if lg.deleted:
            return [Action("delete", kp.file(LOG)), Action("delete", kp.file(HEADER))] if lg.on_disk else []
        out: list[Action] = []
        text = "".join(line_text(kp.key, ln.seq, ln.created_at, ln.codec, ln.data, ln.more) for ln in lg.pending)
        end = lg.lines.tail().end
        if lg.keep_from is not None:
            out.append(Action("write", kp.file(LOG), self._kept(lg, end) + text))
        elif text:
            out.append(Action("append", kp.file(LOG), text, end))
        if lg.header_dirty:
            out.append(Action("write", kp.file(HEADER), header_text(lg.head)))
        if out:
            self._sidecars(kp, sidecars)
        return out

    @staticmethod
    def _kept(lg: LogState, end: int) -> str:
        """The old lines a rewritten file keeps, with any rewrites applied."""
        start = lg.keep_from or 0
        if start >= end:
            return ""
        if not lg.rewrites:
            return lg.lines.read_bytes(start, end).decode("utf-8")
        parts = []
        for _, ln in lg.lines.forward(start, end):
            ln.verify(lg.kp.key)  # re-sealing a damaged line would hide the damage
            data, codec = lg.rewrites.get(ln.seq, (ln.data, ln.codec))
            parts.append(line_text(lg.kp.key, ln.seq, ln.created_at, codec, data, ln.more))
        return "".join(parts)

    def _sidecars(self, kp: KeyPath, planned: dict[str, str]) -> None:
        for folder, stem, component in kp.hashed:
            path = f"{folder}/{stem}{SIDECAR}"
            if path not in planned and not self.disk.exists(path):
                planned[path] = component


_APPLY: dict[type[Op], Callable[[Txn, Any], OpResult]] = {
    Put: Txn._put,
    Delete: Txn._delete,
    Append: Txn._append,
    Touch: Txn._touch,
    Expire: Txn._expire,
    Trim: Txn._trim,
    Load: Txn._load,
    LoadEntries: Txn._load_entries,
    Rewrite: Txn._rewrite,
}
"""The handler of each op type: one row per op."""
