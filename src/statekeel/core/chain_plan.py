"""One attempt at a tamper-evident batch (see :mod:`statekeel.core.chained`): every value gets its
trailer (the batch's clock and its MAC), every append its ``at``, every unconditional put a
compare-and-set, and each head the batch changes is put in the same batch, compare-and-set on its
own version.

:class:`BatchPlan` plans for a :class:`Planner` — :class:`~statekeel.core.chained.ChainedBackend`,
named here by what the plan uses of it, so this module imports nothing of the backend's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Final, Protocol

from ..errors import IntegrityError
from ..protocol import (ANY, KEEP, Append, Backend, Delete, Entry, Expire, Load, LoadEntries, Op, OpResult, Put, Record,
                        Rewrite, Touch, Trim, keys, op_target)
from . import layout
from .chain import (STEP, ZERO_TAG, ChainKey, EntryTagger, Head, LogHead, RecordHead, RecordTagger, alive,
                    split_trailer, trailer)
from .chain_ops import as_given, touches

__all__ = ["FORGET_AFTER", "BatchPlan", "Planner"]


class Planner(Protocol):
    """What a :class:`BatchPlan` uses of the chained backend it plans for."""

    _prefix: str
    _key: ChainKey
    _inner: Backend
    _heads: dict[str, tuple[int | None, Head, float | None]]
    _swept: dict[str, int]

    def _plain(self, key: str) -> bool: ...
    def _log_spot(self, log: str) -> tuple[str, str, EntryTagger] | None: ...
    def _record_spot(self, key: str) -> tuple[str, str, RecordTagger] | None: ...
    def _head_record(self, partition: str) -> tuple[str, RecordTagger]: ...
    def _head_for_write(self, partition: str) -> tuple[int | None, Head, float | None]: ...


_HEAD_CODEC: Final = "json" + STEP
"""The stored codec of a head record."""

FORGET_AFTER: Final = 3600.0
"""Seconds after it expired that a log or record is dropped from its head when the head is written: a
reader whose clock runs behind the writer's by less than that still finds it expired, not unlisted."""

_SWEEP_EVERY: Final = 32
"""A head is swept of what expired long ago when it lists this many more logs and records than after
its last sweep by this handle: a pass over a big head costs like encoding it, so it is paid once per
this many new members, not with every write (a head that does not grow is never swept again)."""


class BatchPlan:
    """One attempt at a batch: the sealed ops and the heads they leave."""

    def __init__(self, backend: Planner, clock: float) -> None:
        self.b = backend
        self.clock = clock
        self.stamp = trailer(clock, b"")
        """The trailer's first part (the clock, packed once: every value of the batch carries it)."""
        self.heads: dict[str, tuple[int | None, Head, float | None]] = {}
        """The heads this batch changes (every head it looks at, it changes), by partition."""
        self.order: list[str] = []
        """The partitions in the order their heads are put (sorted: writers lock them alike)."""

    def _head(self, target: str, part: str | None = None) -> Head:
        part = keys.partition(target) if part is None else part
        planned = self.heads.get(part)
        if planned is None:
            planned = self.heads[part] = self.b._head_for_write(part)
        return planned[1]

    def _where(self, key: str) -> str:
        return self.b._prefix + key

    def seal(self, op: Op) -> Op:
        kind = type(op)  # the ops of a turn first, by exact type (an isinstance chain costs per op)
        if kind is Append:
            assert isinstance(op, Append)
            spot = self.b._log_spot(op.log)
            return op if spot is None else self._append(op, *spot)
        if kind is Put:
            assert isinstance(op, Put)
            rspot = self.b._record_spot(op.key)
            return op if rspot is None else self._put(op, *rspot)
        if isinstance(op, Expire):
            return self._expire(op)
        if self.b._plain(op_target(op)):
            return op
        if isinstance(op, Put):
            where = self._where(op.key)
            return self._put(op, keys.partition(op.key), where, self.b._key.record_tagger(where))
        if isinstance(op, Append):
            where = self._where(op.log)
            return self._append(op, keys.partition(op.log), where, self.b._key.entry_tagger(where))
        if isinstance(op, Delete):
            self._head(op.key).records.pop(self._where(op.key), None)
        elif isinstance(op, Touch) and op.expires_at is not KEEP:
            head, name = self._head(op.key), self._where(op.key)
            if (record := head.records.get(name)) is not None and touches(op, record, self.clock):
                head.records[name] = record._replace(expires=op.expires_at)
            if op.refresh is None and (log := head.logs.get(name)) is not None and alive(log.expires, self.clock):
                head.logs[name] = log._replace(expires=op.expires_at)  # an expired log is not brought back
        elif isinstance(op, Trim):
            self._trim(op)
        elif isinstance(op, Rewrite):
            return self._rewrite(op)
        elif isinstance(op, Load):
            return Load(self._load(op.record))
        elif isinstance(op, LoadEntries):
            return self._load_entries(op)
        return op

    def _put(self, op: Put, part: str, where: str, tag_of: RecordTagger) -> Put:
        records, clock = self._head(op.key, part).records, self.clock
        known = records.get(where)
        if known is not None and (known.expires is None or known.expires > clock):
            current: int | None = known.version
            version, created, live = known.version + 1, known.created, known.expires
        else:  # none, or expired: the put starts a new record, which keeps no expiry (as every backend does)
            current, version, created, live = None, 1, clock, None
        tag = tag_of(version, op.codec, op.data, created, clock)
        expires = op.expires_at
        kept = live if expires is KEEP else expires
        records[where] = RecordHead(version, tag, created, kept)
        expect = current if op.expect is ANY else op.expect
        return Put(op.key, op.data + self.stamp + tag, op.codec + STEP, expect, expires)

    def _append(self, op: Append, part: str, where: str, tag_of: EntryTagger) -> Append:
        logs, clock, stamp = self._head(op.log, part).logs, self.clock, self.stamp
        known = logs.get(where)
        if known is not None and not (known.expires is None or known.expires > clock):
            known = None  # an expired log starts again at 1
        first = seq = 1 if known is None else known.last + 1
        prev = ZERO_TAG if known is None else known.tag
        items = []
        for data, codec in op.items:
            prev = tag_of(seq, codec, data, clock, prev)
            items.append((data + stamp + prev, codec + STEP))
            seq += 1
        expires = op.expires_at
        if items:
            kept = expires if expires is not KEEP else None if known is None else known.expires
            logs[where] = (LogHead(first, ZERO_TAG, seq - 1, prev, kept) if known is None
                           else LogHead(known.first, known.before, seq - 1, prev, kept))  # fmt: skip
        return Append(op.log, tuple(items), expires, first if op.at is None else op.at)

    def _trim(self, op: Trim) -> None:
        logs = self._head(op.log).logs
        known = logs.get(self._where(op.log))
        if known is None:
            return
        first = max(known.first, min(op.before, known.last + 1))
        if first > known.first:
            before = known.tag if first - 1 == known.last else self._tag_of(op.log, first - 1)
            logs[self._where(op.log)] = known._replace(first=first, before=before)

    def _stored(self, log: str, seq: int) -> tuple[Entry, bytes, float, bytes] | None:
        """Entry ``seq`` of ``log`` as stored beneath the chain, with its value, clock and tag."""
        found = self.b._inner.read(log, start=seq, stop=seq + 1)
        return (found[0], *split_trailer(found[0].data, self._where(log))) if found else None

    def _tag_of(self, log: str, seq: int) -> bytes:
        stored = self._stored(log, seq)
        if stored is None:
            raise IntegrityError(f"entry {seq} of log {self._where(log)!r} is missing beneath the chain")
        return stored[3]

    def _rewrite(self, op: Rewrite) -> Rewrite:
        """Re-encoding the same value keeps its place in the chain; anything else would change history."""
        stored = self._stored(op.log, op.seq)
        if stored is None:
            return op  # nothing to rewrite: the backend reports False
        entry, value, clock, tag = stored
        if value != op.data or entry.codec != op.codec + STEP:
            raise IntegrityError(f"entry {op.seq} of {self._where(op.log)!r} is chained: a rewrite may re-encode "
                                 "it (key rotation) but not change its value")  # fmt: skip
        return replace(op, data=op.data + trailer(clock, tag), codec=op.codec + STEP)

    def _load(self, rec: Record) -> Record:
        tag = self.b._key.record_tag(self._where(rec.key), rec.version, rec.codec, rec.data, rec.created_at,
                                     rec.updated_at)  # fmt: skip
        self._head(rec.key).records[self._where(rec.key)] = RecordHead(rec.version, tag, rec.created_at, rec.expires_at)
        return replace(rec, data=rec.data + trailer(rec.updated_at, tag), codec=rec.codec + STEP)

    def _load_entries(self, op: LoadEntries) -> LoadEntries:
        head = self._head(op.log)
        known = head.logs.get(self._where(op.log))
        out: list[Entry] = []
        for e in op.entries:
            if known is not None and e.seq <= known.last:
                continue  # the backend skips it too (re-running a copy)
            prev = known.tag if known else ZERO_TAG
            tag = self.b._key.entry_tag(self._where(op.log), e.seq, e.codec, e.data, e.created_at, prev)
            out.append(replace(e, data=e.data + trailer(e.created_at, tag), codec=e.codec + STEP))
            known = (LogHead(e.seq, ZERO_TAG, e.seq, tag, op.expires_at) if known is None
                     else known._replace(last=e.seq, tag=tag))  # fmt: skip
            head.logs[self._where(op.log)] = known
        return replace(op, entries=tuple(out))

    def _expire(self, op: Expire) -> Expire:
        """What the heads list expires with the data. A partition the prefix ends now is left
        alone (its head goes with it); otherwise the head of the partition the prefix falls in
        records the new expiry (a prefix spanning partitions reaches their heads too, unread)."""
        part = keys.partition(op.prefix)
        ending = op.expires_at is not None and op.expires_at <= self.clock
        inside = op.prefix.startswith(part + "/") and all(part.split("/"))
        if ending and layout.chain_head_key(part).startswith(op.prefix) or not inside or self.b._plain(op.prefix):
            return op
        head, where = self._head(op.prefix), self._where(op.prefix)
        for name, record in list(head.records.items()):
            if name.startswith(where):
                head.records[name] = record._replace(expires=op.expires_at)
        for name, log in list(head.logs.items()):
            if name.startswith(where):
                head.logs[name] = log._replace(expires=op.expires_at)
        return op

    def head_puts(self) -> list[Op]:
        out: list[Op] = []
        heads, clock = self.heads, self.clock
        self.order = sorted(heads) if len(heads) > 1 else list(heads)
        for part in self.order:
            version, head, created = heads[part]
            swept = self.b._swept
            if len(head.records) + len(head.logs) > swept.get(part, 0) + _SWEEP_EVERY:
                head.drop_expired(clock - FORGET_AFTER)
                if len(swept) >= 4096:  # a writer names the same few partitions
                    swept.clear()
                swept[part] = len(head.records) + len(head.logs)
            key, tag_of = self.b._head_record(part)
            data = head.encode()
            tag = tag_of((version or 0) + 1, "json", data, clock if created is None else created, clock)
            out.append(Put(key, data + self.stamp + tag, _HEAD_CODEC, version, head.last_expiry()))
        return out

    def finish(self, ops: Sequence[Op], results: Sequence[OpResult]) -> list[OpResult]:
        """The batch was applied: the heads it left remembered, the results as the caller's ops give them."""
        self.remember(results[len(ops):])
        return [as_given(op, r) for op, r in zip(ops, results)]

    def remember(self, results: Sequence[OpResult]) -> None:
        for part, result in zip(self.order, results):
            _, head, created = self.heads[part]
            if isinstance(result, Record):
                self.b._heads[part] = (result.version, head, result.created_at)

