"""One attempt at a tamper-evident batch (see :mod:`statekeel.core.chained`): every value gets its
trailer (the batch's clock and its MAC), every append its ``at``, every unconditional put a
compare-and-set, and each head the batch changes is put in the same batch, compare-and-set on its
own version.

:class:`BatchPlan` plans for a :class:`Planner` — :class:`~statekeel.core.chained.ChainedBackend`,
named here by what the plan uses of it, so this module imports nothing of the backend's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Final, Protocol, cast

from ..errors import IntegrityError
from ..protocol import (ANY, KEEP, Append, Backend, Delete, Entry, Expire, Load, LoadEntries, Op, OpResult, Put, Record,
                        Rewrite, Touch, Trim, keys, op_target)
from . import layout
from .chain import (CLOCK, STEP, ZERO_TAG, BucketRef, ChainKey, EntryTagger, Head, LogHead, RecordHead, RecordTagger,
                    alive, bucket_index, split_trailer, trailer)
from .chain_ops import as_given, touches

__all__ = ["FORGET_AFTER", "SPILL", "BatchPlan", "Planner"]

Planned = tuple[int | None, Head, float | None]
"""A head record as a batch plans it: (its version, None when new; its head, a copy; when it was created)."""


class Planner(Protocol):
    """What a :class:`BatchPlan` uses of the chained backend it plans for."""

    _prefix: str
    _key: ChainKey
    _inner: Backend
    _heads: dict[str, Planned]
    _buckets: dict[tuple[str, int], Planned]
    _swept: dict[str, int]
    _log_spots: dict[str, tuple[str, str, EntryTagger] | None]
    _record_spots: dict[str, tuple[str, str, RecordTagger] | None]

    def _plain(self, key: str) -> bool: ...
    def _log_spot(self, log: str) -> tuple[str, str, EntryTagger] | None: ...
    def _record_spot(self, key: str) -> tuple[str, str, RecordTagger] | None: ...
    def _head_record(self, partition: str, bucket: int | None = None) -> tuple[str, RecordTagger]: ...
    def _head_for_write(self, partition: str) -> Planned: ...
    def _buckets_for_write(self, partition: str, version: int | None, root: Head, indices: Sequence[int]
                           ) -> dict[int, Planned]: ...  # fmt: skip


_HEAD_CODEC: Final = "json" + STEP
"""The stored codec of a head record."""

FORGET_AFTER: Final = 3600.0
"""Seconds after it expired that a log or record is dropped from its head when the head is written: a
reader whose clock runs behind the writer's by less than that still finds it expired, not unlisted."""

SPILL: Final = 32
"""Records a head lists itself: past that it moves them to its buckets (:class:`~statekeel.core.chain.Head`),
which double when they hold more than this many records each on average (or more than there are
buckets: the root and a bucket then grow alike, as the square root of the partition's records). A
record written goes back to the head's own list, so a turn that writes the same few records rewrites
the head alone; a flush, every few dozen new records, writes the buckets they fall in."""

_SWEEP_EVERY: Final = 32
"""A head is swept of what expired long ago when it lists this many more logs and records than after
its last sweep by this handle: a pass over a big head costs like encoding it, so it is paid once per
this many new members, not with every write (a head that does not grow is never swept again)."""


class BatchPlan:
    """One attempt at a batch: the sealed ops and the heads they leave."""

    def __init__(self, backend: Planner, clock: float) -> None:
        self.b = backend
        self.clock = clock
        self.stamp = CLOCK.pack(clock)
        """The trailer's first part (the clock, packed once: every value of the batch carries it)."""
        self.heads: dict[str, Planned] = {}
        """The heads this batch changes (every head it looks at, it changes), by partition."""
        self.buckets: dict[str, dict[int, Planned]] = {}
        """The buckets of those heads it looked at, by partition and index."""
        self.dirty: set[tuple[str, int]] = set()
        """(partition, index) of the buckets it changes."""
        self.order: list[tuple[str, int | None]] = []
        """The head records in the order they are put: per partition (sorted: writers lock them alike)
        its buckets, then its root (index None)."""

    def _head(self, target: str, part: str | None = None) -> Head:
        part = keys.partition(target) if part is None else part
        planned = self.heads.get(part)
        if planned is None:
            planned = self.heads[part] = self.b._head_for_write(part)
        return planned[1]

    def _lookup(self, key: str, where: str, part: str | None = None) -> tuple[Head, RecordHead | None]:
        """The head of the record ``key`` (named ``where``) and what it lists of it: listed in the head
        itself (written recently), or in its bucket (read, or cached, for it)."""
        part = keys.partition(key) if part is None else part
        head = self._head(key, part)
        known = head.records.get(where)
        if known is not None or not head.bits:
            return head, known
        return head, self._bucket(part, head, bucket_index(where, head.bits)).records.get(where)

    def _bucket(self, part: str, root: Head, i: int) -> Head:
        planned = self.buckets.get(part)
        if planned is None or i not in planned:
            planned = self._load_buckets(part, root, (i,))
        return planned[i][1]

    def _load_buckets(self, part: str, root: Head, indices: Iterable[int]) -> dict[int, Planned]:
        """Buckets of ``part``'s head, loaded for this batch (a copy each: changed, they are marked dirty)."""
        planned = self.buckets.setdefault(part, {})
        want = [i for i in indices if i not in planned]
        if want:
            planned.update(self.b._buckets_for_write(part, self.heads[part][0], root, want))
        return planned

    def _where(self, key: str) -> str:
        return self.b._prefix + key

    def seal(self, op: Op) -> Op:
        kind = type(op)  # the ops of a turn first, by exact type (an isinstance chain costs per op), their
        if kind is Append:  # spots looked up here (each call costs several times more after I/O)
            append, spots = cast(Append, op), self.b._log_spots
            spot = spots[append.log] if append.log in spots else self.b._log_spot(append.log)
            return op if spot is None else self._append(append, *spot)
        if kind is Put:
            put, rspots = cast(Put, op), self.b._record_spots
            rspot = rspots[put.key] if put.key in rspots else self.b._record_spot(put.key)
            return op if rspot is None else self._put(put, *rspot)
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
            self._delete(op.key)
        elif isinstance(op, Touch) and op.expires_at is not KEEP:
            name = self._where(op.key)
            head, record = self._lookup(op.key, name)
            if record is not None and touches(op, record, self.clock):
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

    def _delete(self, key: str) -> None:
        where = self._where(key)
        head, _ = self._lookup(key, where)
        head.records.pop(where, None)
        if head.bits:  # its bucket may list it too (written before the head's last flush)
            part, i = keys.partition(key), bucket_index(where, head.bits)
            if self._bucket(part, head, i).records.pop(where, None) is not None:
                self.dirty.add((part, i))

    def _put(self, op: Put, part: str, where: str, tag_of: RecordTagger) -> Put:
        clock = self.clock
        planned = self.heads.get(part)  # self._lookup(op.key, where, part), inline: every turn puts
        if planned is None:
            planned = self.heads[part] = self.b._head_for_write(part)
        head = planned[1]
        records = head.records
        known = records.get(where)
        if known is None and head.bits:
            known = self._bucket(part, head, bucket_index(where, head.bits)).records.get(where)
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
        planned = self.heads.get(part)  # self._head(op.log, part), inline: every turn appends
        if planned is None:
            planned = self.heads[part] = self.b._head_for_write(part)
        logs, clock, stamp = planned[1].logs, self.clock, self.stamp
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
        where = self._where(rec.key)
        tag = self.b._key.record_tag(where, rec.version, rec.codec, rec.data, rec.created_at, rec.updated_at)
        self._head(rec.key).records[where] = RecordHead(rec.version, tag, rec.created_at, rec.expires_at)
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
        head, where = self._head(op.prefix, part), self._where(op.prefix)
        listed: list[tuple[int | None, dict[str, RecordHead]]] = [(None, head.records)]
        if head.bits:
            listed += [(i, b[1].records) for i, b in self._load_buckets(part, head, head.buckets).items()]
        for i, records in listed:
            for name, record in list(records.items()):
                if name.startswith(where):
                    records[name] = record._replace(expires=op.expires_at)
                    if i is not None:
                        self.dirty.add((part, i))
        for name, log in list(head.logs.items()):
            if name.startswith(where):
                head.logs[name] = log._replace(expires=op.expires_at)
        return op

    def head_puts(self) -> list[Op]:
        out: list[Op] = []
        self.order = []
        for part in sorted(self.heads) if len(self.heads) > 1 else self.heads:
            version, head, created = self.heads[part]
            if len(head.records) > SPILL:
                self._flush(part, head)
            for i in sorted(i for p, i in self.dirty if p == part) if self.dirty else ():
                bv, bucket, bcreated = self.buckets[part][i]
                put, tag, expires = self._head_put(*self.b._head_record(part, i), bv, bucket, bcreated)
                head.buckets[i] = BucketRef((bv or 0) + 1, tag, len(bucket.records), expires)
                out.append(put)
                self.order.append((part, i))
            out.append(self._head_put(*self.b._head_record(part), version, head, created)[0])
            self.order.append((part, None))
        return out

    def _head_put(
        self, key: str, tag_of: RecordTagger, version: int | None, head: Head, created: float | None
    ) -> tuple[Put, bytes, float | None]:
        """The put of one head record — ``head``, swept of what expired long ago now and then — with its
        MAC and its expiry."""
        swept, clock, members = self.b._swept, self.clock, len(head.records) + len(head.logs)
        if members > swept.get(key, 0) + _SWEEP_EVERY:
            head.drop_expired(clock - FORGET_AFTER)
            if len(swept) >= 4096:  # a writer names the same few heads
                swept.clear()
            swept[key] = len(head.records) + len(head.logs)
        data = head.encode()
        tag, expires = tag_of((version or 0) + 1, "json", data, clock if created is None else created, clock), head.last_expiry()
        return Put(key, data + self.stamp + tag, _HEAD_CODEC, version, expires), tag, expires

    def _flush(self, part: str, root: Head) -> None:
        """Moves the records a head lists itself to its buckets (past :data:`SPILL` of them), and doubles
        its buckets once they hold too many (then every bucket is rewritten: rare, and paid once per doubling)."""
        planned = self.buckets.get(part, {})
        total = len(root.records) + sum(r.size for i, r in root.buckets.items() if i not in planned) + sum(
            len(b[1].records) for b in planned.values())  # fmt: skip
        bits = max(root.bits, 1)
        while total > (1 << bits) * max(SPILL, 1 << bits):
            bits += 1
        if bits == root.bits:
            for name, record in root.records.items():
                i = bucket_index(name, bits)
                self._bucket(part, root, i).records[name] = record
                self.dirty.add((part, i))
            root.records = {}
            return
        loaded = self._load_buckets(part, root, root.buckets).values() if root.bits else ()
        listed = root.records_with(bucket for _, bucket, _ in loaded)
        spread: dict[int, dict[str, RecordHead]] = {}
        forget = self.clock - FORGET_AFTER  # every bucket is rewritten: swept of what expired long ago too
        for name, record in listed.items():
            if record.expires is None or record.expires >= forget:
                spread.setdefault(bucket_index(name, bits), {})[name] = record
        planned = self.buckets.setdefault(part, {})
        for i in set(spread) | set(planned):
            version, _, created = planned.get(i, (None, None, None))
            if version is None and i not in spread:
                planned.pop(i, None)  # never written, and nothing to list
            else:
                planned[i] = (version, Head(records=spread.get(i, {})), created)
                self.dirty.add((part, i))
        root.records, root.bits = {}, bits

    def finish(self, ops: Sequence[Op], results: Sequence[OpResult]) -> list[OpResult]:
        """The batch was applied: the heads it left remembered, the results as the caller's ops give them."""
        self.remember(results[len(ops):])
        out: list[OpResult] = []
        for op, r in zip(ops, results):  # as_given(op, r), the turn's two kinds inline
            kind = type(op)
            if kind is Append:
                out.append(r)
            elif kind is Put and type(r) is Record:
                put = cast(Put, op)
                out.append(Record(r.key, put.data, put.codec, r.version, r.created_at, r.updated_at, r.expires_at))
            else:
                out.append(as_given(op, r))
        return out

    def remember(self, results: Sequence[OpResult]) -> None:
        cached = self.b._buckets
        for (part, i), result in zip(self.order, results):
            if not isinstance(result, Record):
                continue
            if i is None:
                self.b._heads[part] = (result.version, self.heads[part][1], result.created_at)
            else:
                if len(cached) >= 4096:  # a writer names the same few heads
                    cached.clear()
                cached[(part, i)] = (result.version, self.buckets[part][i][1], result.created_at)

