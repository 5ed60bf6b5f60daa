"""``StatekeelStore``: LangGraph's long-term memory store (``BaseStore``) over statekeel.

    from statekeel.integrations.langgraph import StatekeelStore

    memory = StatekeelStore.from_url("postgresql://...", ttl={"default_ttl": 60 * 24})
    graph = builder.compile(checkpointer=saver, store=memory)

Each item is one record ``lgstore/<namespace labels>/=<key>`` holding the value (through
statekeel's codec: datetimes, UUIDs, bytes round-trip), its TTL in minutes and when it was
last written. A TTL becomes the record's expiry, so an expired item is never returned
and :meth:`sweep_ttl` (statekeel's expiry purge) deletes it; reads refresh it unless
``refresh_ttl=False``. A batch's writes are applied together, in one atomic batch on
backends whose batches span the store. ``search`` without a query walks the items' index by write
time (:mod:`._index`, built on the first search of a store written before it): newest first in
O(page), filters applied on the way. Semantic search: pass ``index=`` (LangGraph's
``IndexConfig``) and a search with a ``query`` is ranked by statekeel's hybrid memory
search, with scores (:mod:`.memory_index`); without ``index=``, ``query`` is ignored.

Given an :class:`~statekeel.aio.AsyncStore` on PostgreSQL or Redis, :meth:`StatekeelStore.abatch`
runs on its asyncio driver: ``batch`` is written once as sans-I/O steps (:mod:`._steps`), answered
by the sync backend or by the driver. The semantic index's batches and a search before the index
by write time is known built stay on the worker thread.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from typing import Any

from langgraph.store.base import (
    BaseStore,
    GetOp,
    IndexConfig,
    Item,
    ListNamespacesOp,
    MatchCondition,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
    TTLConfig,
    validate_op_namespace,
)

from ...aio import AsyncStore
from ...core import Core, layout
from ...errors import InvalidInputError, StatekeelError
from ...protocol import ANY, Delete, Put, Record, Touch
from ...store import Store
from ...store import open as open_store
from .._given import given
from . import _filters, _index, _search
from ._checks import check_op
from ._steps import Apply, Get, GetMany, Scan, Steps, arun, run
from .memory_index import SemanticIndex

log = logging.getLogger("statekeel.langgraph")

__all__ = ["StatekeelStore"]

_PAGE = 500


class StatekeelStore(BaseStore):
    """LangGraph's ``BaseStore`` on a statekeel store or an AsyncStore (sync and async, TTL with
    refresh on read)."""

    supports_ttl: bool = True

    def __init__(
        self, core: Core | AsyncStore, *, ttl: TTLConfig | None = None, workers: int = 1,
        index: IndexConfig | None = None,
    ) -> None:  # fmt: skip
        self.core, self._worker, self._owns_worker, self._lane = given(core, workers)
        """``_lane``: an AsyncStore's native lane (PostgreSQL, Redis), where :meth:`abatch` runs."""
        core = self.core
        self.ttl_config = ttl
        self.index_config = index  # semantic search: .memory_index
        self._semantic = None if index is None else SemanticIndex(core, index)
        self._owned: Store | None = None
        self._indexed = False  # the index is known built (cached: it stays built)

    @classmethod
    def from_url(
        cls, url: str, *, ttl: TTLConfig | None = None, index: IndexConfig | None = None, **open_options: Any
    ) -> StatekeelStore:
        """A store on ``statekeel.open(url, **open_options)``, closed by :meth:`close`."""
        opened = open_store(url, **open_options)
        store = cls(opened, ttl=ttl, index=index)
        store._owned = opened
        return store

    def close(self) -> None:
        """Stop the async worker (not an AsyncStore's); close the statekeel store if :meth:`from_url` opened it."""
        if self._owns_worker:
            self._worker.shutdown()
        if self._owned is not None:
            self._owned.close()

    def sweep_ttl(self) -> int:
        """Delete expired items now (statekeel's expiry purge), then the index entries left pointing
        at nothing (a pass over the index: O(entries)); returns how many records went."""
        return self.core.purge_expired() + _index.prune(self.core)

    def build_index(self, *, again: bool = False) -> None:
        """Index the items by write time now, not on the first search (a store written before the
        index; resumable). ``again``: index every item anew, e.g. after an older statekeel, which
        does not keep the index, wrote to the store."""
        if again:
            self.core.backend.apply([Delete(_index.FORMAT)])
        self._indexed = False
        self._ready()

    def _ready(self) -> bool:
        """Whether searches walk the index. Building it may fail (a read-only role, the database
        going away mid-build): the search then scans, as before the index, and the next one resumes
        the build where it stopped."""
        if not self._indexed:
            try:
                self._indexed = _index.ready(self.core)
            except StatekeelError as exc:
                log.warning("statekeel: the LangGraph store's search index could not be built yet (%s); searching by scan", exc)
        return self._indexed

    # -- the one entry point LangGraph calls -------------------------------------------------
    def batch(self, ops: Iterable[Op]) -> list[Result]:
        """Run ``ops`` in order: reads see the store before the batch, writes are applied at the end."""
        return self._batch(list(ops))

    def _batch(self, ops: list[Op]) -> list[Result]:
        return run(self.core.backend, self._batching(_checked(ops)))

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        """:meth:`batch`, natively on an AsyncStore's PostgreSQL or Redis driver (after the worker
        calls made before it); else, or when the batch needs the semantic index or the search index
        is still to be built, on the worker thread. The event loop never blocks."""
        listed = list(ops)
        lane = self._lane
        if lane is None or not self._native(listed):
            return await self._worker.run(lambda: self._batch(listed))
        checked = _checked(listed)
        async with lane.turn():
            return await arun(lane.backend, self._batching(checked))

    def _native(self, ops: list[Op]) -> bool:
        """Whether every op of the batch is steps only: not a semantic search or an update of the
        semantic index (they embed and search on the worker), nor a search before the index by write
        time is known built (the first builds it)."""
        if self._semantic is not None and any(isinstance(op, PutOp) or (isinstance(op, SearchOp) and op.query)
                                              for op in ops):  # fmt: skip
            return False
        return self._indexed or not any(isinstance(op, SearchOp) for op in ops)

    def _batching(self, ops: list[Op]) -> Steps[list[Result]]:
        writes: dict[str, PutOp] = {}
        touches: dict[str, tuple[float, int]] = {}
        dangling: list[str] = []  # index entries pointing at nothing, met by searches
        results: list[Result] = []
        for op in ops:
            if isinstance(op, PutOp):
                writes[layout.langgraph_store_key(op.namespace, str(op.key))] = op
                results.append(None)
            elif isinstance(op, GetOp):
                results.append((yield from self._get(op, touches)))
            elif isinstance(op, SearchOp):
                results.append((yield from self._search(op, touches, dangling)))
            elif isinstance(op, ListNamespacesOp):
                results.append((yield from self._list_namespaces(op)))
            else:
                raise InvalidInputError(f"unknown LangGraph store operation {type(op).__name__}")
        yield from self._write(writes, touches, dangling)
        return results

    # -- reads ---------------------------------------------------------------------------------
    def _get(self, op: GetOp, touches: dict[str, tuple[float, int]]) -> Steps[Item | None]:
        rec: Record | None = yield Get(layout.langgraph_store_key(op.namespace, str(op.key)))
        if rec is None:
            return None
        doc = self._doc(rec)
        self._refresh(rec, doc, op.refresh_ttl, touches)
        return Item(value=doc["v"], key=str(op.key), namespace=op.namespace, **_stamps(rec, doc))

    def _search(
        self, op: SearchOp, touches: dict[str, tuple[float, int]], dangling: list[str]
    ) -> Steps[list[SearchItem]]:
        # The semantic search and a search before the index is built read the sync backend
        # directly: only :meth:`batch` gets here with them (see :meth:`_native`).
        if op.query and self._semantic is not None:  # ranked by statekeel memory (see .memory_index)
            return self._semantic.search(op)
        if self._ready():  # newest first, like LangGraph's SQL stores: the index by write time
            found, stale = yield from _index.walking(self.core, op.namespace_prefix, op.filter, op.offset, op.limit)
            dangling += stale
        else:  # an index newer than this code: every item scanned, decoding only what it must
            pages = self._pages(layout.langgraph_store_prefix(op.namespace_prefix))
            found = _search.search(self.core, pages, op.filter, op.offset, op.limit)
        out = []
        for rec, doc in found:
            self._refresh(rec, doc, op.refresh_ttl, touches)
            namespace, key = _index.parse(rec.key)
            stamps = _stamps(rec, doc)
            out.append(SearchItem(namespace, key, doc["v"], stamps["created_at"], stamps["updated_at"]))
        return out

    def _list_namespaces(self, op: ListNamespacesOp) -> Steps[list[tuple[str, ...]]]:
        prefix = layout.langgraph_store_prefix(_literal_prefix(op.match_conditions))
        found: set[tuple[str, ...]] = set()
        after: str | None = None
        while recs := (yield Scan(prefix, after, _PAGE)):
            for rec in recs:
                namespace = _index.parse(rec.key)[0]
                if all(_filters.namespace_matches(c, namespace) for c in op.match_conditions or ()):
                    found.add(namespace if op.max_depth is None else namespace[: op.max_depth])
            if len(recs) < _PAGE:
                break
            after = recs[-1].key
        return sorted(found)[op.offset : op.offset + op.limit]

    def _pages(self, prefix: str) -> Iterator[list[Record]]:
        after: str | None = None
        while recs := self.core.backend.scan(prefix, after=after, limit=_PAGE):
            yield recs
            if len(recs) < _PAGE:
                return
            after = recs[-1].key

    def _doc(self, rec: Record) -> dict[str, Any]:
        doc: dict[str, Any] = self.core.codec.decode(rec.data, rec.codec, rec.key)
        return doc

    def _refresh(self, rec: Record, doc: dict[str, Any], refresh: bool, touches: dict[str, tuple[float, int]]) -> None:
        if refresh and doc.get("ttl") is not None:
            # refreshed only if still the version read, still expiring: an item put again meanwhile
            # (maybe without a TTL) keeps the expiry its put gave it
            touches[rec.key] = (time.time() + float(doc["ttl"]) * 60, rec.version)

    # -- writes --------------------------------------------------------------------------------
    def _write(
        self, writes: dict[str, PutOp], touches: dict[str, tuple[float, int]], dangling: list[str]
    ) -> Steps[None]:
        now = time.time()
        ops: list[Any] = [Delete(k) for k in dict.fromkeys(dangling)]  # two searches may meet one
        ops += [Touch(k, exp, refresh=version) for k, (exp, version) in touches.items() if k not in writes]
        olds: list[Record | None] = []
        if writes:  # the items replaced, to drop their index entries; the format, to refuse a newer one
            fmt, *olds = yield GetMany([_index.FORMAT, *writes])
            _index.writable(self.core, fmt)
        for (key, op), old in zip(writes.items(), olds):
            ops += [] if old is None else _index.forget_ops(self.core, old)
            if op.value is None:
                ops.append(Delete(key))
                continue
            ttl = None if op.ttl is None else float(op.ttl)
            data, codec = self.core.codec.encode({"v": dict(op.value), "u": now, "ttl": ttl}, f"item {op.key!r}", key)
            ops.append(Put(key, data, codec, ANY, None if ttl is None else now + ttl * 60))
            ops += _index.entry_ops(self.core, op.namespace, key, now)
        if ops:
            yield Apply(ops)
        if self._semantic is not None and writes:  # on the worker only (see _native)
            self._semantic.update(writes)


def _checked(ops: Iterable[Op]) -> list[Op]:
    """``ops`` as a list, each checked (LangGraph's namespace rules, then statekeel's) before any I/O."""
    listed = list(ops)
    for op in listed:
        validate_op_namespace(op)
        check_op(op)
    return listed


def _stamps(rec: Record, doc: dict[str, Any]) -> dict[str, datetime]:
    return {
        "created_at": datetime.fromtimestamp(rec.created_at, timezone.utc),
        "updated_at": datetime.fromtimestamp(float(doc["u"]), timezone.utc),
    }


def _literal_prefix(conditions: tuple[MatchCondition, ...] | None) -> tuple[str, ...]:
    """The labels every listed namespace must start with (up to a wildcard): what to scan."""
    for condition in conditions or ():
        if condition.match_type == "prefix":
            out: list[str] = []
            for label in condition.path:
                if label == "*":
                    break
                out.append(label)
            return tuple(out)
    return ()
