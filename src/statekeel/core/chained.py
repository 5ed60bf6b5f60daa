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

import hmac
import itertools
import time
from collections.abc import Callable, Sequence
from typing import Final, TypeVar

from ..errors import ConflictError, IntegrityError
from ..protocol import Backend, Entry, LogInfo, MigrationStatus, Op, OpResult, Record, keys
from ..protocol.checks import Checked, check_ops
from ..protocol.jitter import JITTER
from . import layout
from .anchor import Anchor, read_anchor
from .chain import ChainKey, EntryTagger, Head, LogHead, RecordTagger, alive
from .chain_ops import HeadLookup, HeadMoved, resolved
from .chain_plan import BatchPlan
from .chain_reads import (UNREAD, Unread, against_head, check_entries, check_log_info, check_record, check_records,
                          check_scan, consistent, moved_from, open_value, unchained)
from .chain_views import read_heads
from .keyring import NO_IO
from .sealed import SealedBackend

__all__ = ["ChainedBackend"]

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
        self._head_records: dict[tuple[str, int | None], tuple[str, RecordTagger]] = {}
        self._buckets: dict[tuple[str, int], tuple[int | None, Head, float | None]] = {}
        """(partition, index) -> (version, bucket, created_at) of a head's bucket: hints for writers."""
        self._swept: dict[str, int] = {}
        """head record key -> how many logs and records it listed after this handle last swept it of
        what expired long ago (:meth:`.BatchPlan.head_puts` sweeps again once it has grown past that)."""
        self._verified: dict[str, tuple[tuple[int, str, float], bytes, Head]] = {}
        """head record key -> that record as last verified (its fields and bytes) and its decoded head."""
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
        return rec.version, self._opened(rec), rec.created_at

    def _opened(self, rec: Record) -> Head:
        """The head in a head record, its MAC verified (remembered: mostly the same bytes as last time)."""
        seen = self._verified.get(rec.key)
        if seen is not None and seen[0] == (rec.version, rec.codec, rec.created_at) and seen[1] == rec.data:
            return seen[2]
        where = self._prefix + rec.key
        value, _ = open_value(self._key, rec, where)
        head = Head.decode(value, where)  # never changed in place: writers plan on a copy
        if len(self._verified) >= 4096:  # a reader names the same few partitions
            self._verified.clear()
        self._verified[rec.key] = ((rec.version, rec.codec, rec.created_at), rec.data, head)
        return head

    def bucket_of(self, rec: Record | None, partition: str, index: int, root: Head) -> Head:
        """Bucket ``index`` of ``partition``'s head from its stored record, checked against the root
        ``root`` (its version and MAC), or an empty one when the root lists none there (or it expired)."""
        return self._load_bucket(rec, partition, index, root)[1]

    def _load_bucket(
        self, rec: Record | None, partition: str, index: int, root: Head
    ) -> tuple[int | None, Head, float | None]:
        ref = root.buckets.get(index)
        where = self._prefix + layout.chain_bucket_key(partition, index)
        if ref is None or not alive(ref.expires, time.time()):
            if rec is not None and alive(rec.expires_at, time.time()):
                raise IntegrityError(f"the chain head bucket {where!r} is not in its partition's root head (or "
                                     "expired there): planted, or its expiry changed beneath the API")  # fmt: skip
            return None, Head(), None
        if rec is None:
            raise IntegrityError(f"the chain head bucket {where!r} is missing: its partition's root head has "
                                 f"version {ref.version}, so it was deleted beneath the API")  # fmt: skip
        head = self._opened(rec)
        if rec.version != ref.version or not hmac.compare_digest(rec.data[-len(ref.tag):], ref.tag):
            raise IntegrityError(f"the chain head bucket {where!r} is version {rec.version} but its partition's root "
                                 f"head has version {ref.version}: an older bucket was restored")  # fmt: skip
        return rec.version, head, rec.created_at

    def _buckets_for_write(
        self, partition: str, version: int | None, root: Head, indices: Sequence[int]
    ) -> dict[int, tuple[int | None, Head, float | None]]:
        """Buckets ``indices`` of ``partition``'s head (``root``, at ``version``) to plan a write on: copies,
        cached or read (with :data:`~statekeel.core.keyring.NO_IO` set, the ones to read raise
        :class:`HeadLookup`). When the root was moved since it was cached, raises :class:`HeadMoved`."""
        out: dict[int, tuple[int | None, Head, float | None]] = {}
        missing = []
        for i in indices:
            ref, cached = root.buckets.get(i), self._buckets.get((partition, i))
            if ref is None or not alive(ref.expires, time.time()):
                out[i] = (None, Head(), None)
            elif cached is not None and cached[0] == ref.version:
                out[i] = (cached[0], cached[1].copy(), cached[2])
            else:
                missing.append(i)
        if missing:
            if NO_IO.get():
                raise HeadLookup(partition, missing)
            wanted = [*(layout.chain_bucket_key(partition, i) for i in missing), layout.chain_head_key(partition)]
            consistent(lambda: self.take_buckets(partition, version, root, missing, self._inner.get_many(wanted)))
            for i in missing:
                bv, bucket, created = self._buckets[(partition, i)]
                out[i] = (bv, bucket.copy(), created)
        return out

    def take_buckets(
        self, partition: str, version: int | None, root: Head, indices: Sequence[int], found: Sequence[Record | None]
    ) -> None:
        """Keeps buckets ``indices`` of ``partition``'s head for writers: ``found`` is them, then the root's
        record, read together. A root moved since ``root`` (at ``version``) was cached is dropped from the
        cache and :class:`HeadMoved` raised (the batch is planned again); otherwise each bucket must agree
        with it (IntegrityError)."""
        if moved_from(found[-1]) != version:
            self._heads.pop(partition, None)
            raise HeadMoved(partition)
        for i, rec in zip(indices, found):
            self.remember_bucket(rec, partition, i, root)

    def remember_bucket(self, rec: Record | None, partition: str, index: int, root: Head) -> None:
        """Keeps bucket ``index`` of ``partition``'s head, read as ``rec`` and checked against ``root``, for writers."""
        if len(self._buckets) >= 4096:
            self._buckets.clear()
        self._buckets[(partition, index)] = self._load_bucket(rec, partition, index, root)

    def _head_record(self, partition: str, bucket: int | None = None) -> tuple[str, RecordTagger]:
        """The key of ``partition``'s head record (or of its bucket ``bucket``) and its tagger (memoised: a
        writer puts the same few heads batch after batch)."""
        found = self._head_records.get((partition, bucket))
        if found is None:
            if len(self._head_records) >= 4096:
                self._head_records.clear()
            name = layout.chain_head_key(partition) if bucket is None else layout.chain_bucket_key(partition, bucket)
            found = self._head_records[partition, bucket] = (name, self._key.record_tagger(self._prefix + name))
        return found

    def _head_for_write(self, partition: str) -> tuple[int | None, Head, float | None]:
        found = self._heads.get(partition)
        if found is None:
            if NO_IO.get():
                raise HeadLookup(partition)
            found = self._heads[partition] = self._load_head(partition, self._inner.get(layout.chain_head_key(partition)))
        version, head, created = found
        return version, head.copy(), created

    def listed(self, partition: str) -> Head:
        """``partition``'s head as stored now, verified, with the records its buckets list as its own
        (``statekeel verify`` and the tests look at it whole)."""
        def read() -> Head:
            return read_heads(self, self._inner.get_many, [partition + "/"], every=True)[1].views()[partition]

        return consistent(read)

    # -- reads -----------------------------------------------------------------
    def get(self, key: str, *, include_expired: bool = False) -> Record | None:
        return consistent(lambda: self._get(key, include_expired))

    def _get(self, key: str, include_expired: bool) -> Record | None:
        if self._plain(key):
            return self._inner.get(key, include_expired=include_expired)
        if not include_expired:
            return self._get_many([key])[0][0]
        rec = self._inner.get(key, include_expired=True)
        heads = read_heads(self, self._inner.get_many, [key])[1].views()
        return check_record(self._key, self._prefix, key, rec, heads[keys.partition(key)], include_expired)

    def get_many(self, keys_: Sequence[str]) -> list[Record | None]:
        return consistent(lambda: self._get_many(keys_)[0])

    def _get_many(
        self, keys_: Sequence[str], log: str | None = None
    ) -> tuple[list[Record | None], dict[str, Record | None]]:
        """The records of ``keys_``, checked, and the head records read with them by partition (``log``'s too)."""
        found, heads = read_heads(self, self._inner.get_many, keys_, log, extra=keys_)
        return check_records(self._key, self._prefix, self._plain, keys_, found, heads.views()), heads.read

    def get_many_and_values(
        self, keys_: Sequence[str], log: str, *, limit: int | None = None, reverse: bool = False
    ) -> tuple[list[Record | None], list[tuple[bytes, str]]]:
        """The records and the log's values in two round trips, not three: the log's head is read with the
        records, and is the first head read of the log's check (:func:`.against_head`)."""
        def read() -> tuple[list[Record | None], list[tuple[bytes, str]]]:
            records, heads = self._get_many(keys_, log)
            checked = self._checked(log, 1, None, limit, reverse, heads[keys.partition(log)])
            return records, [(value, codec) for _, value, codec, _ in checked]

        return consistent(read)

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
        heads = read_heads(self, self._inner.get_many, [r.key for r in page], every=True)[1].views()
        return check_scan(self._key, self._prefix, self._plain, heads, page, (prefix, after, limit))

    def read(
        self, log: str, *, start: int = 1, stop: int | None = None, limit: int | None = None, reverse: bool = False
    ) -> list[Entry]:
        return [Entry(log, *e) for e in self._checked(log, start, stop, limit, reverse)]

    def read_values(self, log: str, *, limit: int | None = None, reverse: bool = False) -> list[tuple[bytes, str]]:
        return [(value, codec) for _, value, codec, _ in self._checked(log, 1, None, limit, reverse)]

    def _checked(
        self, log: str, start: int, stop: int | None, limit: int | None, reverse: bool,
        before: Record | None | Unread = UNREAD,
    ) -> list[tuple[int, bytes, str, float]]:
        return self._against_head(log, lambda known: check_entries(
            self._key, self._prefix, self._inner, log, known, start=start, stop=stop, limit=limit, reverse=reverse),
            before)  # fmt: skip

    def log_info(self, log: str) -> LogInfo | None:
        return self._against_head(log, lambda known: check_log_info(self._prefix + log, self._inner.log_info(log), known))

    def _against_head(self, log: str, check: Callable[[LogHead | None], T], before: Record | None | Unread = UNREAD) -> T:
        return against_head(self._inner, lambda rec, part: self.head_of(rec, part).logs.get(self._prefix + log),
                            self._prefix, log, check, before)  # fmt: skip

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
        while True:
            plan = BatchPlan(self, time.time() if now is None else now)
            try:
                batch = Checked()  # the backend need not check them again
                for op in ops:
                    batch.append(plan.seal(op))
                batch += plan.head_puts()
                return plan, batch
            except HeadMoved:
                continue  # a head another writer moved since it was cached: planned again on the new one

    def refused(
        self, plan: BatchPlan, ops: Sequence[Op], exc: BaseException, deadline: float | None, attempt: int
    ) -> tuple[float | None, float]:
        """After the batch beneath raised ``exc``: the pause before planning it again (None: raise
        ``exc``) and the deadline of those retries (set at the first refusal)."""
        for part in plan.heads:  # moved by another writer, or maybe applied: read them again
            self._heads.pop(part, None)
            for i in plan.buckets.get(part, ()):
                self._buckets.pop((part, i), None)
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
