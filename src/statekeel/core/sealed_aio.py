"""The sealing of an encrypted store over a native asyncio backend (PostgreSQL, Redis): no thread hop.

:class:`AsyncSealedBackend` is :class:`~statekeel.core.sealed.SealedBackend`'s asyncio twin and
shares everything with it but the I/O: the same sealing and opening (the handle's own
``SealedBackend``, so both APIs learn the same positions), the same retry on a position another
writer moved, the same errors. What the sync wrapper reads on the way — the version of a record
or the next seq of a log this handle has not seen — is read here first, awaited
(:meth:`SealedBackend.needed`), and the batch is then sealed with every position given.

Data keys: the keyring keeps each partition's keys for 30 seconds. Sealing and opening run with
:data:`~statekeel.core.keyring.NO_IO` set, so a key not in that cache is not read from the keystore
on the event loop: :class:`~statekeel.core.keyring.KeyLookup` is raised instead, the key is read on
the store's worker thread (``offload``) — once per partition every 30 seconds, and when a partition
gets its first key — and the sealing or opening is done again.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, TypeVar

from ..errors import ConflictError
from ..protocol import Entry, LogInfo, Op, OpResult, Record
from ..protocol.aio import AsyncBackend
from ..protocol.checks import check_ops
from .keyring import NO_IO, KeyLookup, Keyring
from .sealed import ATTEMPTS, Positions, SealedBackend
from .sealed_runs import first_of

__all__ = ["AsyncSealedBackend", "Offload"]

T = TypeVar("T")


class Offload(Protocol):
    """Runs a blocking call on the store's worker thread and awaits what it returns."""

    def __call__(self, fn: Callable[[], T], /) -> Awaitable[T]: ...


class AsyncSealedBackend(AsyncBackend):
    """``inner`` (the store's native asyncio backend) with values sealed and opened by ``sealed``."""

    def __init__(self, inner: AsyncBackend, sealed: SealedBackend, keyring: Keyring, offload: Offload) -> None:
        self._inner = inner
        self._sealed = sealed
        self._keyring = keyring
        self._offload = offload
        self.url = inner.url
        self.batch_scope = inner.batch_scope

    async def _keyed(self, work: Callable[[], T]) -> T:
        """``work()`` (sealing or opening: no I/O of its own), its data keys looked up off the loop
        whenever the keyring would have read the keystore."""
        while True:
            token = NO_IO.set(True)
            try:
                return work()
            except KeyLookup as need:
                missing = need
            finally:
                NO_IO.reset(token)
            await self._offload(functools.partial(self._keyring.fetch, missing.partition, missing.version))

    # -- reads ---------------------------------------------------------------
    async def get(self, key: str, *, include_expired: bool = False) -> Record | None:
        rec = await self._inner.get(key, include_expired=include_expired)
        if rec is None:
            return None
        self._sealed.saw(rec)
        return await self._keyed(lambda: self._sealed.open_record(rec))

    async def get_many(self, keys: Sequence[str]) -> list[Record | None]:
        found = await self._inner.get_many(keys)
        return await self._keyed(lambda: self._sealed.opened_records(found))

    async def scan(self, prefix: str, *, after: str | None = None, limit: int = 100) -> list[Record]:
        page, sealed = await self._inner.scan(prefix, after=after, limit=limit), self._sealed
        for rec in page:
            sealed.saw(rec)
        return await self._keyed(lambda: [sealed.open_record(r) for r in page])

    async def scan_many(self, scans: Sequence[tuple[str, str | None, int]]) -> list[list[Record]]:
        pages, sealed = await self._inner.scan_many(scans), self._sealed
        for rec in (r for page in pages for r in page):
            sealed.saw(rec)
        return await self._keyed(lambda: [[sealed.open_record(r) for r in page] for page in pages])

    async def read(
        self, log: str, *, start: int = 1, stop: int | None = None, limit: int | None = None, reverse: bool = False
    ) -> list[Entry]:
        entries = await self._inner.read(log, start=start, stop=stop, limit=limit, reverse=reverse)
        opened = await self._keyed(lambda: self._sealed.opened(log, entries))
        return [Entry(log, e.seq, data, codec, e.created_at) for e, (data, codec) in zip(entries, opened)]

    async def read_values(self, log: str, *, limit: int | None = None, reverse: bool = False) -> list[tuple[bytes, str]]:
        return await self._opened_values(log, await self._inner.read_values(log, limit=limit, reverse=reverse), limit, reverse)

    async def get_many_and_values(
        self, keys: Sequence[str], log: str, *, limit: int | None = None, reverse: bool = False
    ) -> tuple[list[Record | None], list[tuple[bytes, str]]]:
        """One call beneath (one round trip on PostgreSQL and Redis), every record and value opened here."""
        found, values = await self._inner.get_many_and_values(keys, log, limit=limit, reverse=reverse)
        records = await self._keyed(lambda: self._sealed.opened_records(found))
        return records, await self._opened_values(log, values, limit, reverse)

    async def _opened_values(
        self, log: str, values: list[tuple[bytes, str]], limit: int | None, reverse: bool
    ) -> list[tuple[bytes, str]]:
        """:meth:`SealedBackend.opened_values`, its reads awaited: in bulk at the first seq known, else
        at the one the log's bounds give, else entry by entry."""
        sealed, n = self._sealed, len(values)
        if sealed.as_stored(log, values):
            return values
        found = await self._keyed(lambda: sealed.opened_run(log, values, sealed.first_known(log, n, reverse)))
        if found is None:
            first = first_of(await self.log_info(log), n, reverse)
            found = await self._keyed(lambda: sealed.opened_run(log, values, first))
        if found is None:
            entries = await self._inner.read(log, limit=limit, reverse=reverse)  # the seqs are sealed in
            found = await self._keyed(lambda: sealed.opened(log, entries))
        return found

    async def log_info(self, log: str) -> LogInfo | None:
        return self._sealed.saw_log(log, await self._inner.log_info(log))

    # -- writes --------------------------------------------------------------
    async def apply(self, ops: Sequence[Op], *, now: float | None = None) -> list[OpResult]:
        check_ops(ops, now)
        sealed = self._sealed
        for attempt in range(ATTEMPTS):
            fetched = await self._positions(ops)
            batch, resolved = await self._keyed(functools.partial(sealed.seal_batch, ops, fetched))
            try:
                results = await self._inner.apply(batch, now=now)
            except ConflictError as err:
                if not sealed.retries(err, resolved, attempt):
                    raise
                continue
            except BaseException:
                sealed.forget_batch(ops)  # it may or may not have been applied
                raise
            return sealed.learn(ops, results)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _positions(self, ops: Sequence[Op]) -> Positions:
        """Every position ``ops`` resolve: this handle's, and the others read (one round trip each)."""
        found, keys, logs = self._sealed.needed(ops)
        if keys:
            for key, rec in zip(keys, await self._inner.get_many(keys)):
                found.versions[key] = None if rec is None else rec.version
        for log in logs:  # an unseen log: once per session handle
            info = await self._inner.log_info(log)
            found.nexts[log] = 1 if info is None else info.last_seq + 1
        return found

    async def aclose(self) -> None:
        await self._inner.aclose()
