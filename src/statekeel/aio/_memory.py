"""AsyncMemory: the asyncio twin of ``store.memory(namespace)``.

Written by hand rather than generated (``scripts/gen_async.py`` lists it with no
forwards) so the generated module stays under the size limit; every method runs
the sync one on the store's worker — embedding included, off the event loop.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..features._duration import Duration
from ..features.memory import Memory, MemoryHit, MemoryItem, SearchMode
from ..features.memory.policy import Policy
from ._worker import Worker

__all__ = ["AsyncMemory"]


class AsyncMemory:
    """Long-term memories of one namespace. Get it from ``store.memory(namespace)`` (no await)."""

    def __init__(self, memory: Memory, worker: Worker) -> None:
        self._memory = memory
        self._worker = worker

    def __repr__(self) -> str:
        return f"<AsyncMemory {self.namespace!r}>"

    @property
    def namespace(self) -> tuple[str, ...]:
        """The namespace this handle reaches (and the ones below it)."""
        return self._memory.namespace

    @property
    def embedder(self) -> str | None:
        """The embedder's name (None: text-only); the default model loads at its first use."""
        return self._memory.embedder

    @property
    def sync(self) -> Memory:
        """The sync :class:`Memory` underneath (use it only off the event loop)."""
        return self._memory

    async def put(
        self, key: str, value: Any, *, text: str | None = None, metadata: Mapping[str, Any] | None = None,
        ttl: Duration | None = None,
    ) -> MemoryItem:
        """Store ``value`` at ``key`` (see :meth:`Memory.put`: dedup may return an existing item)."""
        return await self._worker.run(lambda: self._memory.put(key, value, text=text, metadata=metadata, ttl=ttl))

    async def put_many(self, items: Iterable[Mapping[str, Any]], *, ttl: Duration | None = None) -> list[MemoryItem]:
        """Store several ``{"key", "value", "text"?, "metadata"?}`` items, embedding them in batches."""
        rows = list(items) if isinstance(items, Iterable) and not isinstance(items, (Mapping, str, bytes)) else items
        return await self._worker.run(lambda: self._memory.put_many(rows, ttl=ttl))  # put_many refuses the rest

    async def get(self, key: str) -> MemoryItem | None:
        """The item at ``key`` in this namespace, or None."""
        return await self._worker.run(lambda: self._memory.get(key))

    async def delete(self, key: str) -> bool:
        """Remove the item at ``key``; True if it existed."""
        return await self._worker.run(lambda: self._memory.delete(key))

    async def items(self, *, after: str | None = None, limit: int = 100) -> list[MemoryItem]:
        """Items of this namespace and those below it, in key order."""
        return await self._worker.run(lambda: self._memory.items(after=after, limit=limit))

    async def search(
        self, query: str, *, filter: Mapping[str, Any] | None = None, limit: int = 10, offset: int = 0,  # noqa: A002
        mode: SearchMode | None = None,
    ) -> list[MemoryHit]:
        """Items matching ``query``, best first (see :meth:`Memory.search`)."""
        return await self._worker.run(
            lambda: self._memory.search(query, filter=filter, limit=limit, offset=offset, mode=mode))

    async def reindex(self, *, force: bool = False) -> int:
        """Re-embed what another embedder made and rebuild the native index; how many were re-embedded."""
        return await self._worker.run(lambda: self._memory.reindex(force=force))

    async def forget(
        self, *, max_age: Duration | None = None, inactive: Duration | None = None, keep: int | None = None,
    ) -> int:
        """Apply forgetting policies (see :meth:`Memory.forget`); how many items went."""
        return await self._worker.run(lambda: self._memory.forget(max_age=max_age, inactive=inactive, keep=keep))

    async def set_policy(
        self, *, max_age: Duration | None = None, inactive: Duration | None = None, keep: int | None = None,
    ) -> None:
        """Record the forgetting policy ``statekeel gc`` applies (see :meth:`Memory.set_policy`)."""
        await self._worker.run(lambda: self._memory.set_policy(max_age=max_age, inactive=inactive, keep=keep))

    async def policy(self) -> Policy | None:
        """The forgetting policy recorded for this namespace, or None (see :meth:`Memory.policy`)."""
        return await self._worker.run(self._memory.policy)
