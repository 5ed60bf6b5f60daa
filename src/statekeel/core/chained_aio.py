"""A tamper-evident store over a native asyncio backend (PostgreSQL, Redis): no thread hop.

:class:`AsyncChainedBackend` is :class:`~statekeel.core.chained.ChainedBackend`'s asyncio twin
and its sync half does all but the I/O: the same plan (trailers, MACs, each changed head
compare-and-set in the same batch), the same cached heads, the same retries when another writer
moved a head, the same checks on reads (:mod:`statekeel.core.chain_reads`) and the same errors.
Planning runs with :data:`~statekeel.core.keyring.NO_IO` set: a head not cached raises
:class:`~statekeel.core.chain_ops.HeadLookup`, is read here awaited, and the batch is planned
again. Beneath it sits the store's native backend, or :class:`~statekeel.core.sealed_aio.
AsyncSealedBackend` when the store is encrypted too.

Rare ops (trims, rewrites, loads of a copy) read stored entries while they are planned: such a
batch, and reading the anchor of an anchored store, run on the store's worker thread. A scan runs
here (its page, then its partitions' heads, checked by :func:`~statekeel.core.chain_reads.check_scan`).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, TypeVar

from ..errors import IntegrityError
from ..protocol import (
    Append,
    Delete,
    Entry,
    Expire,
    LogInfo,
    Op,
    OpResult,
    Put,
    Record,
    Touch,
    keys,
)
from ..protocol.aio import AsyncBackend
from ..protocol.checks import check_ops
from . import layout
from .chain import Head, LogHead
from .chain_ops import HeadLookup, HeadMoved
from .chain_plan import BatchPlan
from .chain_reads import (MOVED, READS, UNREAD, EntryWindow, Unread, check_log_info, check_record, check_records,
                          check_scan, moved_from, unchained)
from .chain_views import HeadRead
from .chained import ChainedBackend
from .keyring import NO_IO
from .sealed_aio import Offload

__all__ = ["AsyncChainedBackend", "Offload"]

T = TypeVar("T")

_ON_THE_LOOP: Final = frozenset({Put, Append, Delete, Touch, Expire})
"""Ops whose planning reads nothing but heads: a batch of others is applied on the worker."""


class AsyncChainedBackend(AsyncBackend):
    """``inner`` (asyncio) with every value chained and checked by ``chained`` (its sync twin)."""

    def __init__(self, inner: AsyncBackend, chained: ChainedBackend, offload: Offload) -> None:
        self._inner = inner
        self._c = chained
        self._offload = offload
        self._anchor_read = chained.anchor is None
        self.url = inner.url
        self.batch_scope = inner.batch_scope

    async def _ready(self) -> ChainedBackend:
        """The sync half, with the anchor of an anchored store read (on the worker, once)."""
        if not self._anchor_read:
            await self._offload(self._c.anchored_heads)
            self._anchor_read = True
        return self._c

    # -- reads ---------------------------------------------------------------
    async def get(self, key: str, *, include_expired: bool = False) -> Record | None:
        return await _consistent(lambda: self._get(key, include_expired))

    async def _get(self, key: str, include_expired: bool) -> Record | None:
        c, inner = await self._ready(), self._inner
        if c._plain(key):
            return await inner.get(key, include_expired=include_expired)
        if not include_expired:
            return (await self._get_many([key]))[0][0]
        rec = await inner.get(key, include_expired=True)
        heads = (await self._read_heads(c, [key]))[1].views()
        return check_record(c.key, c._prefix, key, rec, heads[keys.partition(key)], include_expired)

    async def _read_heads(
        self, c: ChainedBackend, names: Sequence[str], log: str | None = None, every: bool = False,
        extra: Sequence[str] = (),
    ) -> tuple[list[Record | None], HeadRead]:
        """:func:`~statekeel.core.chain_views.read_heads`, awaited."""
        r = HeadRead(c, names, log, every)
        found = await self._inner.get_many([*extra, *r.first()])
        more = r.take(found[len(extra):])
        if more:
            r.take_more(await self._inner.get_many(more))
        return found[: len(extra)], r

    async def get_many(self, keys_: Sequence[str]) -> list[Record | None]:
        return (await _consistent(lambda: self._get_many(keys_)))[0]

    async def _get_many(
        self, keys_: Sequence[str], log: str | None = None
    ) -> tuple[list[Record | None], dict[str, Record | None]]:
        c = await self._ready()
        found, heads = await self._read_heads(c, keys_, log, extra=keys_)
        return check_records(c.key, c._prefix, c._plain, keys_, found, heads.views()), heads.read

    async def get_many_and_values(
        self, keys_: Sequence[str], log: str, *, limit: int | None = None, reverse: bool = False
    ) -> tuple[list[Record | None], list[tuple[bytes, str]]]:
        """As :meth:`ChainedBackend.get_many_and_values`: two round trips, the log's head read with the records."""
        async def read() -> tuple[list[Record | None], list[tuple[bytes, str]]]:
            records, heads = await self._get_many(keys_, log)
            checked = await self._checked(log, 1, None, limit, reverse, heads[keys.partition(log)])
            return records, [(value, codec) for _, value, codec, _ in checked]

        return await _consistent(read)

    async def scan(self, prefix: str, *, after: str | None = None, limit: int = 100) -> list[Record]:
        return await _consistent(lambda: self._scan(prefix, after, limit))

    async def _scan(self, prefix: str, after: str | None, limit: int) -> list[Record]:
        c, inner = await self._ready(), self._inner
        page: list[Record] = []
        cursor, done = after, False
        while len(page) < limit and not done:  # as ChainedBackend._scan: the chain's own records skipped
            want = limit - len(page)
            raw = await inner.scan(prefix, after=cursor, limit=want)
            done = len(raw) < want
            page += unchained(raw)
            cursor = raw[-1].key if raw else cursor
        heads = (await self._read_heads(c, [r.key for r in page], every=True))[1].views()
        return check_scan(c.key, c._prefix, c._plain, heads, page, (prefix, after, limit))

    async def read(
        self, log: str, *, start: int = 1, stop: int | None = None, limit: int | None = None, reverse: bool = False
    ) -> list[Entry]:
        return [Entry(log, *e) for e in await self._checked(log, start, stop, limit, reverse)]

    async def read_values(self, log: str, *, limit: int | None = None, reverse: bool = False) -> list[tuple[bytes, str]]:
        return [(value, codec) for _, value, codec, _ in await self._checked(log, 1, None, limit, reverse)]

    async def _checked(
        self, log: str, start: int, stop: int | None, limit: int | None, reverse: bool,
        before: Record | None | Unread = UNREAD,
    ) -> list[tuple[int, bytes, str, float]]:
        async def check(known: LogHead | None) -> list[tuple[int, bytes, str, float]]:
            w = EntryWindow(known, start, stop, limit, reverse)
            found = await self._inner.read(log, start=w.start, stop=w.stop, limit=w.limit, reverse=w.reverse) \
                if w.reads else []  # fmt: skip
            return w.checked(self._c.key, self._c._prefix + log, found)

        return await self._against_head(log, check, before)

    async def log_info(self, log: str) -> LogInfo | None:
        async def check(known: LogHead | None) -> LogInfo | None:
            return check_log_info(self._c._prefix + log, await self._inner.log_info(log), known)

        return await self._against_head(log, check)

    async def _against_head(
        self, log: str, check: Callable[[LogHead | None], Awaitable[T]], before: Record | None | Unread = UNREAD
    ) -> T:
        """:func:`~statekeel.core.chain_reads.against_head`, awaited: a disagreement is believed only
        when the head was not moved while the log was read."""
        c = await self._ready()
        part = keys.partition(log)
        head_key = layout.chain_head_key(part)
        for _ in range(MOVED):
            if before is Unread.UNREAD:
                before = await self._inner.get(head_key)
            try:
                return await check(c.head_of(before, part).logs.get(c._prefix + log))
            except IntegrityError:
                after = await self._inner.get(head_key)
                if moved_from(before) == moved_from(after):
                    raise
                before = after
        raise IntegrityError(f"the chain head of {c._prefix + part!r} kept moving while the log was read "
                             f"({MOVED} times); the writers are too busy for a checked read — try again")  # fmt: skip

    # -- writes --------------------------------------------------------------
    async def apply(self, ops: Sequence[Op], *, now: float | None = None) -> list[OpResult]:
        c = await self._ready()
        if any(type(op) not in _ON_THE_LOOP for op in ops):
            return await self._offload(functools.partial(c.apply, ops, now=now))
        check_ops(ops, now)
        deadline = None
        for attempt in itertools.count():
            plan, batch = await self._planned(c, ops, now)
            try:
                results = await self._inner.apply(batch, now=plan.clock)
            except BaseException as exc:
                pause, deadline = c.refused(plan, ops, exc, deadline, attempt)
                if pause is None:
                    raise
                await asyncio.sleep(pause)
                continue
            return plan.finish(ops, results)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _planned(self, c: ChainedBackend, ops: Sequence[Op], now: float | None) -> tuple[BatchPlan, list[Op]]:
        """:meth:`ChainedBackend.planned` with every head it needs read here, awaited."""
        while True:
            token = NO_IO.set(True)
            try:
                return c.planned(ops, now)
            except HeadLookup as need:
                part, buckets = need.partition, need.buckets
            finally:
                NO_IO.reset(token)
            if not buckets:
                c.head_of(await self._inner.get(layout.chain_head_key(part)), part)
                continue
            version, root, _ = c._heads[part]  # the root the plan asked them of (cached before its buckets are)
            wanted = [*(layout.chain_bucket_key(part, i) for i in buckets), layout.chain_head_key(part)]
            try:
                await _consistent(lambda: self._take_buckets(c, part, version, root, buckets, wanted))
            except HeadMoved:
                continue  # the root moved since it was cached: planned again on the new one

    async def _take_buckets(
        self, c: ChainedBackend, part: str, version: int | None, root: Head, buckets: Sequence[int], wanted: list[str]
    ) -> None:
        c.take_buckets(part, version, root, buckets, await self._inner.get_many(wanted))

    async def aclose(self) -> None:
        await self._inner.aclose()


async def _consistent(read: Callable[[], Awaitable[T]]) -> T:
    """:func:`~statekeel.core.chain_reads.consistent`, awaited: a record and its head are two reads."""
    for attempt in range(READS):
        try:
            return await read()
        except IntegrityError:
            if attempt == READS - 1:
                raise
            await asyncio.sleep(0.002 * (attempt + 1))
    raise AssertionError("unreachable")  # pragma: no cover
