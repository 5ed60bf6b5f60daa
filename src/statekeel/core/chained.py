"""The chained backend: a tamper-evident store's ``Core.backend`` (see :mod:`statekeel.core.chain`).

Writes: each batch is planned against the heads of the partitions it touches
(cached; read once when unknown): every value gets its trailer, every append
its ``at``, every unconditional put a compare-and-set, and each changed head is
written in the same batch, compare-and-set on its own version. When another
process moved a head meanwhile, the backend refuses the batch (nothing written);
the heads are read again and the batch planned again.

Reads verify against the partition's head, read with the data: a record's MAC,
its version (an older one restored disagrees), its presence (a deleted one is
still in the head); a log's chain, its seqs without gaps, its last seq and tag
(a deleted tail); every ``created_at`` against the authenticated clock. Any
disagreement raises :class:`~statekeel.errors.IntegrityError` naming where.

Below it sits the encryption (:class:`~statekeel.core.sealed.SealedBackend`)
when the store is encrypted too: the chain covers the plaintext, so
re-encryption leaves it intact.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Final, TypeVar

from ..errors import ConflictError, IntegrityError
from ..protocol import (ANY, KEEP, Append, Backend, Delete, Entry, Expire, Load, LoadEntries, LogInfo,
                        MigrationStatus, Op, OpResult, Put, Record, Rewrite, Touch, Trim, keys, op_target)
from ..protocol.checks import check_ops
from ..protocol.jitter import JITTER
from . import layout
from .anchor import Anchor, read_anchor
from .chain_ops import HeadLookup, as_given, resolved, touches
from .keyring import NO_IO
from .chain import (STEP, ZERO_TAG, ChainKey, EntryTagger, Head, LogHead, RecordHead, RecordTagger, kept,
                    split_trailer, trailer)
from .sealed import SealedBackend
from .chain_reads import (against_head, check_entries, check_log_info, check_record, check_scan, consistent, open_value,
                          unchained)

__all__ = ["BatchPlan", "ChainedBackend"]

T = TypeVar("T")
U = TypeVar("U")

_PATIENCE: Final = 60.0
"""Seconds a batch keeps being planned again while other writers of its partition move the head
(writers of one partition take turns on its head); then the conflict is raised."""


class ChainedBackend(Backend):
    """``inner`` with every log hash-chained and every record version MACed, checked on reads."""

    def __init__(self, inner: Backend, key: ChainKey, *, context_prefix: str = "") -> None:
        self._inner = inner
        self.url = inner.url
        self.batch_scope = inner.batch_scope
        self._key = key
        self._prefix = context_prefix
        self._heads: dict[str, tuple[int | None, Head, float | None]] = {}
        """partition -> (head record version, head, head created_at): hints for writers."""
        self._floors: dict[str, tuple[int, float | None]] | None = None
        self._plains: dict[str, bool] = {}
        self._log_spots: dict[str, tuple[str, str, EntryTagger] | None] = {}
        self._record_spots: dict[str, tuple[str, str, RecordTagger] | None] = {}
        self._head_records: dict[str, tuple[str, RecordTagger]] = {}
        self._verified: dict[str, tuple[tuple[str, int, str, float], bytes, Head]] = {}
        """partition -> the head record last verified (its fields and bytes) and its decoded head."""
        self.anchor: Anchor | None = None
        """Where ``statekeel verify --anchor`` keeps the heads outside the store (whole-store handles only)."""
        self._store_floors: Callable[[], dict[str, tuple[int, float | None]]] | None = None
        """A tenant's view: the store's anchored versions, which its reads check too."""

    @property
    def storage(self) -> Backend:
        """The backend underneath (the sealing of an encrypted store, or the store itself)."""
        return self._inner

    def over(self, inner: Backend, context_prefix: str) -> ChainedBackend:
        """The same chain (and encryption beneath it) over another backend (a tenant's view, keys
        under ``context_prefix``)."""
        below = self._inner.over(inner, context_prefix) if isinstance(self._inner, SealedBackend) else inner
        view = ChainedBackend(below, self._key, context_prefix=self._prefix + context_prefix)
        view._store_floors = self._anchored  # its partitions are anchored with the store's (full names)
        return view

    def unanchored(self) -> ChainedBackend:
        """This chain without the anchor check on each head it reads: ``statekeel verify`` walks the
        store with it and compares the heads with the anchor once (a rolled-back store is then
        reported once, not once per record of every partition behind)."""
        view = ChainedBackend(self._inner, self._key, context_prefix=self._prefix)
        view._store_floors = dict
        return view

    def anchored_heads(self) -> dict[str, tuple[int, float | None]]:
        """The anchored (version, expiry) of each partition this handle sees, named as it names them
        ({} without an anchor); IntegrityError when the anchor does not verify."""
        n = len(self._prefix)
        return {p[n:]: v for p, v in self._anchored().items() if p.startswith(self._prefix)}

    def _anchored(self) -> dict[str, tuple[int, float | None]]:
        """Each partition's head version (and expiry) when the store was anchored, read once per handle;
        {} without an anchor. An anchor that does not verify refuses every read."""
        if self._store_floors is not None:
            return self._store_floors()
        if self._floors is None:
            self._floors = {} if self.anchor is None else read_anchor(self._key, self.anchor)
        return self._floors

    @property
    def key(self) -> ChainKey:
        """The MAC key (``statekeel verify`` checks heads and anchors with it)."""
        return self._key

    def _plain(self, key: str) -> bool:
        """Whether ``key`` is outside the chain (memoised: every op of every batch asks)."""
        plain = self._plains.get(key)
        if plain is None:
            if len(self._plains) >= 4096:
                self._plains.clear()
            plain = self._plains[key] = layout.stored_in_clear(self._prefix + key) or layout.is_chain_head(key)
        return plain

    def _log_spot(self, log: str) -> tuple[str, str, EntryTagger] | None:
        """``(partition, full name, tagger)`` of a chained log; None when it is outside the chain
        (memoised: a writer names the same few logs batch after batch)."""
        return self._spot(self._log_spots, log, self._key.entry_tagger)

    def _record_spot(self, key: str) -> tuple[str, str, RecordTagger] | None:
        """``(partition, full key, tagger)`` of a chained record; None when it is outside the chain (memoised)."""
        return self._spot(self._record_spots, key, self._key.record_tagger)

    def _spot(self, spots: dict[str, tuple[str, str, U] | None], key: str, tagger: Callable[[str], U]
              ) -> tuple[str, str, U] | None:  # fmt: skip
        try:
            return spots[key]
        except KeyError:
            if len(spots) >= 4096:
                spots.clear()
            where = self._prefix + key
            spot = spots[key] = None if self._plain(key) else (keys.partition(key), where, tagger(where))
            return spot

    # -- heads -----------------------------------------------------------------
    def head_of(self, rec: Record | None, partition: str) -> Head:
        """The head of ``partition`` from its stored record (verified), or an empty one."""
        version, head, created = self._load_head(partition, rec)
        self._heads[partition] = (version, head, created)
        return head

    def _load_head(self, partition: str, rec: Record | None) -> tuple[int | None, Head, float | None]:
        floor = self._anchored().get(self._prefix + partition)
        if floor is not None and (rec is None or rec.version < floor[0]) and (floor[1] is None or floor[1] > time.time()):
            have = "gone" if rec is None else f"at version {rec.version}"
            raise IntegrityError(f"the chain head of {self._prefix + partition!r} is {have}, older than the anchored "
                                 f"version {floor[0]}: the store (or this partition) was rolled back")  # fmt: skip
        if rec is None:
            return None, Head(), None
        seen = self._verified.get(partition)  # the same bytes as the head verified last: the same answer
        if seen is not None and seen[0] == (rec.key, rec.version, rec.codec, rec.created_at) and seen[1] == rec.data:
            return rec.version, seen[2], rec.created_at
        where = self._prefix + rec.key
        value, codec = open_value(self._key, rec, where)
        head = Head.decode(value, where)  # never changed in place: writers plan on a copy
        if len(self._verified) >= 4096:  # a reader names the same few partitions
            self._verified.clear()
        self._verified[partition] = ((rec.key, rec.version, rec.codec, rec.created_at), rec.data, head)
        return rec.version, head, rec.created_at

    def _head_record(self, partition: str) -> tuple[str, RecordTagger]:
        """The key of ``partition``'s head record and its tagger (memoised: a writer puts the same
        few heads batch after batch)."""
        return kept(self._head_records, partition, self._new_head_record)

    def _new_head_record(self, partition: str) -> tuple[str, RecordTagger]:
        key = layout.chain_head_key(partition)
        return key, self._key.record_tagger(self._prefix + key)

    def _head_for_write(self, partition: str) -> tuple[int | None, Head, float | None]:
        found = self._heads.get(partition)
        if found is None:
            if NO_IO.get():
                raise HeadLookup(partition)
            found = self._heads[partition] = self._load_head(partition, self._inner.get(layout.chain_head_key(partition)))
        version, head, created = found
        return version, head.copy(), created

    # -- reads -----------------------------------------------------------------
    def get(self, key: str, *, include_expired: bool = False) -> Record | None:
        return consistent(lambda: self._get(key, include_expired))

    def _get(self, key: str, include_expired: bool) -> Record | None:
        if self._plain(key):
            return self._inner.get(key, include_expired=include_expired)
        part = keys.partition(key)
        if include_expired:
            rec, hrec = self._inner.get(key, include_expired=True), self._inner.get(layout.chain_head_key(part))
        else:
            rec, hrec = self._inner.get_many([key, layout.chain_head_key(part)])
        return check_record(self._key, self._prefix, key, rec, self.head_of(hrec, part), include_expired)

    def get_many(self, keys_: Sequence[str]) -> list[Record | None]:
        return consistent(lambda: self._get_many(keys_))

    def _get_many(self, keys_: Sequence[str]) -> list[Record | None]:
        parts = sorted({keys.partition(k) for k in keys_ if not self._plain(k)})
        found = self._inner.get_many([*keys_, *(layout.chain_head_key(p) for p in parts)])
        heads = {p: self.head_of(r, p) for p, r in zip(parts, found[len(keys_):])}
        return [rec if self._plain(k) else check_record(self._key, self._prefix, k, rec, heads[keys.partition(k)])
                for k, rec in zip(keys_, found[: len(keys_)])]  # fmt: skip

    def scan(self, prefix: str, *, after: str | None = None, limit: int = 100) -> list[Record]:
        return consistent(lambda: self._scan(prefix, after, limit))

    def _scan(self, prefix: str, after: str | None, limit: int) -> list[Record]:
        page: list[Record] = []
        cursor, done = after, False
        while len(page) < limit and not done:  # heads and the marker are the chain's: skip them, fill the page
            want = limit - len(page)
            raw = self._inner.scan(prefix, after=cursor, limit=want)
            done = len(raw) < want
            page += unchained(raw)
            cursor = raw[-1].key if raw else cursor
        parts = sorted({keys.partition(r.key) for r in page if not self._plain(r.key)})
        heads = {p: self.head_of(r, p) for p, r in zip(parts, self._inner.get_many(
            [layout.chain_head_key(p) for p in parts]))}  # fmt: skip
        return check_scan(self._key, self._prefix, self._plain, heads, page, (prefix, after, limit))

    def read(
        self, log: str, *, start: int = 1, stop: int | None = None, limit: int | None = None, reverse: bool = False
    ) -> list[Entry]:
        return [Entry(log, *e) for e in self._checked(log, start, stop, limit, reverse)]

    def read_values(self, log: str, *, limit: int | None = None, reverse: bool = False) -> list[tuple[bytes, str]]:
        return [(value, codec) for _, value, codec, _ in self._checked(log, 1, None, limit, reverse)]

    def _checked(
        self, log: str, start: int, stop: int | None, limit: int | None, reverse: bool
    ) -> list[tuple[int, bytes, str, float]]:
        return self._against_head(log, lambda known: check_entries(
            self._key, self._prefix, self._inner, log, known, start=start, stop=stop, limit=limit, reverse=reverse))

    def log_info(self, log: str) -> LogInfo | None:
        return self._against_head(log, lambda known: check_log_info(self._prefix + log, self._inner.log_info(log), known))

    def _against_head(self, log: str, check: Callable[[LogHead | None], T]) -> T:
        return against_head(self._inner, lambda rec, part: self.head_of(rec, part).logs.get(self._prefix + log),
                            self._prefix, log, check)  # fmt: skip

    def scan_logs(self, prefix: str, *, after: str | None = None, limit: int = 100) -> list[LogInfo]:
        return self._inner.scan_logs(prefix, after=after, limit=limit)

    # -- writes ----------------------------------------------------------------
    def apply(self, ops: Sequence[Op], *, now: float | None = None) -> list[OpResult]:
        check_ops(ops, now)
        deadline = None
        for attempt in itertools.count():
            plan, batch = self.planned(ops, now)
            try:
                results = self._inner.apply(batch, now=plan.clock)
            except BaseException as exc:
                pause, deadline = self.refused(plan, ops, exc, deadline, attempt)
                if pause is None:
                    raise
                time.sleep(pause)
                continue
            return plan.finish(ops, results)
        raise AssertionError("unreachable")  # pragma: no cover

    def planned(self, ops: Sequence[Op], now: float | None) -> tuple[BatchPlan, list[Op]]:
        """One attempt at ``ops``: its plan, and the batch to apply beneath (the ops sealed, then the
        heads they change). With :data:`~statekeel.core.keyring.NO_IO` set, a head not cached raises
        :class:`HeadLookup` instead of being read."""
        plan = BatchPlan(self, time.time() if now is None else now)
        sealed = [plan.seal(op) for op in ops]
        return plan, [*sealed, *plan.head_puts()]

    def refused(
        self, plan: BatchPlan, ops: Sequence[Op], exc: BaseException, deadline: float | None, attempt: int
    ) -> tuple[float | None, float]:
        """After the batch beneath raised ``exc``: the pause before planning it again (None: raise
        ``exc``) and the deadline of those retries (set at the first refusal)."""
        for part in plan.heads:  # moved by another writer, or maybe applied: read them again
            self._heads.pop(part, None)
        ours = isinstance(exc, ConflictError) and (layout.is_chain_head(exc.key) or exc.key in resolved(ops, self._plain))
        deadline = time.monotonic() + _PATIENCE if deadline is None else deadline
        if ours and time.monotonic() < deadline:
            return JITTER.uniform(0, 0.001 * min(attempt, 20)), deadline  # contenders spread out
        return None, deadline

    # -- the rest is the backend's ------------------------------------------------
    def purge_expired(self, *, limit: int = 1000) -> int:
        return self._inner.purge_expired(limit=limit)

    def migrate(self, *, check: bool = False) -> MigrationStatus:
        return self._inner.migrate(check=check)

    def close(self) -> None:
        self._inner.close()


_HEAD_CODEC: Final = "json" + STEP
"""The stored codec of a head record."""


class BatchPlan:
    """One attempt at a batch: the sealed ops and the heads they leave."""

    def __init__(self, backend: ChainedBackend, clock: float) -> None:
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
            if op.refresh is None and (log := head.logs.get(name)) is not None:
                head.logs[name] = log._replace(expires=op.expires_at)
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
            version, created = known.version + 1, known.created
        else:
            current, version, created = None, 1, clock
        tag = tag_of(version, op.codec, op.data, created, clock)
        expires = op.expires_at
        kept = expires if expires is not KEEP else None if known is None else known.expires
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

