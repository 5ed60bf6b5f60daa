"""A tenant's view on a native asyncio backend: :class:`~.tenant.TenantBackend`'s twin.

``AsyncStore.tenant("acme")`` on PostgreSQL or Redis runs its hot paths on the
event loop like the store itself (:mod:`statekeel.aio._native`): this view maps
every key to and from the tenant's space exactly as the sync view does — it
uses that view's own mapping — around the driver's asyncio backend. On
PostgreSQL the driver beneath is the tenant's own (its pool connects as the
tenant: row-level security applies to every row it reads or writes, as for the
sync view); on Redis it is the store's. It gives out neither the backend beneath
nor the store's address, and closes nothing: the driver belongs to the
:class:`~statekeel.aio.AsyncStore` the view came from.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..protocol import Entry, LogInfo, Op, OpResult, Record
from ..protocol.aio import AsyncBackend
from .tenant import TenantBackend

__all__ = ["AsyncTenantBackend"]


class AsyncTenantBackend(AsyncBackend):
    """The keys of ``view``'s tenant only, read and written through ``inner`` (the asyncio
    backend beside the backend ``view`` wraps)."""

    def __init__(self, inner: AsyncBackend, view: TenantBackend) -> None:
        self._inner = inner
        self._view = view
        self.url = view.url
        self.batch_scope = view.batch_scope

    async def get(self, key: str, *, include_expired: bool = False) -> Record | None:
        v = self._view
        return v._rec(await self._inner.get(v._in(key), include_expired=include_expired))

    async def get_many(self, keys: Sequence[str]) -> list[Record | None]:
        v = self._view
        return [v._rec(r) for r in await self._inner.get_many([v._in(k) for k in keys])]

    async def scan(self, prefix: str, *, after: str | None = None, limit: int = 100) -> list[Record]:
        v = self._view
        found = await self._inner.scan(v._in(prefix), after=None if after is None else v._in(after), limit=limit)
        return [r for r in (v._rec(x) for x in found) if r is not None]

    async def scan_many(self, scans: Sequence[tuple[str, str | None, int]]) -> list[list[Record]]:
        v = self._view
        pages = await self._inner.scan_many([(v._in(p), None if a is None else v._in(a), n) for p, a, n in scans])
        return [[r for r in (v._rec(x) for x in page) if r is not None] for page in pages]

    async def read(
        self, log: str, *, start: int = 1, stop: int | None = None, limit: int | None = None, reverse: bool = False
    ) -> list[Entry]:
        v = self._view
        found = await self._inner.read(v._in(log), start=start, stop=stop, limit=limit, reverse=reverse)
        return [v._entry(e) for e in found]

    async def read_values(
        self, log: str, *, limit: int | None = None, reverse: bool = False
    ) -> list[tuple[bytes, str]]:
        return await self._inner.read_values(self._view._in(log), limit=limit, reverse=reverse)

    async def get_many_and_values(
        self, keys: Sequence[str], log: str, *, limit: int | None = None, reverse: bool = False
    ) -> tuple[list[Record | None], list[tuple[bytes, str]]]:
        v = self._view
        records, values = await self._inner.get_many_and_values(
            [v._in(k) for k in keys], v._in(log), limit=limit, reverse=reverse
        )
        return [v._rec(r) for r in records], values

    async def log_info(self, log: str) -> LogInfo | None:
        v = self._view
        return v._info(await self._inner.log_info(v._in(log)))

    async def apply(self, ops: Sequence[Op], *, now: float | None = None) -> list[OpResult]:
        v = self._view
        return [v._result(r) for r in await self._inner.apply(v._inward(ops, now), now=now)]

    async def aclose(self) -> None:
        """Nothing: the driver beneath belongs to the store the view came from."""
