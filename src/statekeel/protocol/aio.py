"""The asyncio backend protocol: the hot operations of :class:`~statekeel.protocol.Backend`, awaited.

A backend whose driver has a native asyncio client (PostgreSQL's psycopg
``AsyncConnectionPool``, ``redis.asyncio``) implements this next to its sync
backend, on the same schema and with the same SQL text / Lua scripts, row
decoding, checksums and error translation. :mod:`statekeel.aio` runs the hot
paths of the asyncio API on it — the same pure planning
(:func:`~statekeel.core.session_write.plan_session_write`) and the same
decoding as the sync API, with no thread hop; everything else keeps the
store's worker thread.

Same operations, arguments, results and errors as the sync protocol; an
instance is bound to the event loop that first used it.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Sequence

from . import BatchScope, Entry, LogInfo, Op, OpResult, Record

__all__ = ["AsyncBackend"]


class AsyncBackend(abc.ABC):
    """What a backend with a native asyncio driver implements for the hot paths."""

    url: str
    """The URL of the sync backend it shares the store with, password removed."""

    batch_scope: BatchScope = "store"
    """As :attr:`Backend.batch_scope`: what one atomic :meth:`apply` may span."""

    @abc.abstractmethod
    async def get(self, key: str, *, include_expired: bool = False) -> Record | None:
        """As :meth:`Backend.get`."""

    @abc.abstractmethod
    async def get_many(self, keys: Sequence[str]) -> list[Record | None]:
        """As :meth:`Backend.get_many`: one round trip."""

    @abc.abstractmethod
    async def scan(self, prefix: str, *, after: str | None = None, limit: int = 100) -> list[Record]:
        """As :meth:`Backend.scan`."""

    async def scan_many(self, scans: Sequence[tuple[str, str | None, int]]) -> list[list[Record]]:
        """Several pages at once: for each ``(prefix, after, limit)``, what :meth:`scan` returns.
        This default reads them one after another; backends may override it to answer all of
        them in one round trip (an ADK ``get_session`` reads three states so)."""
        return [await self.scan(prefix, after=after, limit=limit) for prefix, after, limit in scans]

    @abc.abstractmethod
    async def read(
        self,
        log: str,
        *,
        start: int = 1,
        stop: int | None = None,
        limit: int | None = None,
        reverse: bool = False,
    ) -> list[Entry]:
        """As :meth:`Backend.read`."""

    async def read_values(
        self, log: str, *, limit: int | None = None, reverse: bool = False
    ) -> list[tuple[bytes, str]]:
        """As :meth:`Backend.read_values`; backends may override it to build no Entry objects."""
        return [(e.data, e.codec) for e in await self.read(log, limit=limit, reverse=reverse)]

    async def get_many_and_values(
        self, keys: Sequence[str], log: str, *, limit: int | None = None, reverse: bool = False
    ) -> tuple[list[Record | None], list[tuple[bytes, str]]]:
        """As :meth:`Backend.get_many_and_values`; this default sends the two reads at once
        (two connections); backends may override it to answer both in one round trip."""
        records, found = await asyncio.gather(self.get_many(keys), self.read_values(log, limit=limit, reverse=reverse))
        return records, found

    @abc.abstractmethod
    async def log_info(self, log: str) -> LogInfo | None:
        """As :meth:`Backend.log_info`."""

    @abc.abstractmethod
    async def apply(self, ops: Sequence[Op], *, now: float | None = None) -> list[OpResult]:
        """As :meth:`Backend.apply`: one atomic, durable batch; results align with ``ops``."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Release the connections (the sync backend beside it is closed by its store). Idempotent."""
