"""The in-process search cache: a namespace's decoded items, BM25 postings and vector matrix, kept exact.

In-process search (memory, files, Redis, encrypted stores, and the fallback of the native
indexes) used to read and rank every record of the namespace on every query: seconds at
10,000 memories. Instead each store keeps, per searched prefix, a :class:`Snapshot` — the
items, an inverted index of their terms and one float32 matrix of their vectors — and
re-reads the namespace only when it changed.

**Generations.** Every write of a memory item (put, delete, forget, reindex) also puts a
generation record ``<namespace prefix>~gen`` for the item's namespace and each namespace
above it, *in the same atomic batch* (same partition: all under ``memory/n<first label>``).
Its version grows by one per batch, whoever writes — another handle, another process — and
its data is a fresh random token, so a deleted-and-recreated record never repeats an
identity. A search makes one read of its prefix's generation record: the same (version,
token) as the snapshot's means nothing under the prefix changed; anything else reloads.
The generation is read *before* the scan that fills a snapshot, so a write racing the scan
can only make the snapshot look older than it is (reloaded next time), never newer.
Expiry needs no write: a snapshot holding an item past its ``expires_at`` is reloaded.
Records written around the API (``statekeel import``/``restore`` of a store that had no
generation records) are seen after the next memory write to the namespace.
"""

from __future__ import annotations

import os
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

from ...core import Core, layout
from ...protocol import Op, OpResult, Put, Record
from . import ranking
from .embedding import Embedding, mismatch, numpy
from .items import Stored

__all__ = ["GEN", "Snapshot", "bumps", "commit", "gen_key", "snapshot"]

GEN: Final = "~gen"
"""Last key component of a generation record (items are ``=…``, hash pointers ``#…``)."""
_MAX_PREFIXES: Final = 64
"""Snapshots kept per store (least recently used go first): each holds its items in memory."""
Ident = tuple[int, bytes] | None


def gen_key(namespace: tuple[str, ...]) -> str:
    """The generation record of ``namespace`` (its prefix's, as a search prefix)."""
    return layout.memory_prefix(namespace) + GEN


def bumps(core: Core, namespaces: Sequence[tuple[str, ...]]) -> list[Put]:
    """Puts of the generation records of ``namespaces`` and every namespace above them."""
    keys: dict[str, None] = {}
    for ns in namespaces:
        for depth in range(1, len(ns) + 1):
            keys[gen_key(ns[:depth])] = None
    token = os.urandom(8).hex()
    ops: list[Put] = []
    for key in keys:
        data, codec = core.codec.encode(token, "memory generation", key)
        ops.append(Put(key, data, codec))
    return ops


@dataclass(frozen=True)
class Terms:
    """An inverted index: term -> ids of the docs holding it. Ids are stable across patches
    (positions are not: an insert shifts every later doc), so a patch touches only the terms of
    the docs it adds or removes, copying those sets — a snapshot in use is never changed."""

    ids: dict[str, int]
    """Item key -> id."""
    postings: dict[str, set[int]]
    total: int
    """The docs' lengths summed (BM25's mean length is ``total / len(docs)``)."""
    next_id: int

    @classmethod
    def of(cls, docs: Sequence[Stored]) -> Terms:
        return cls({}, {}, 0, 0).patched((), docs)

    def patched(self, gone: Sequence[Stored], added: Sequence[Stored]) -> Terms:
        """This index without ``gone`` and with ``added`` (copy-on-write)."""
        ids, postings, total, nxt = dict(self.ids), dict(self.postings), self.total, self.next_id
        fresh: set[str] = set()

        def own(term: str) -> set[int]:
            if term not in fresh or term not in postings:
                postings[term] = set(postings.get(term, ()))
                fresh.add(term)
            return postings[term]

        for doc in gone:
            ident = ids.pop(doc.record.key)
            tf, length = doc.stats
            total -= length
            for term in tf:
                holders = own(term)
                holders.discard(ident)
                if not holders:
                    del postings[term]
        for doc in added:
            ids[doc.record.key], nxt = nxt, nxt + 1
            tf, length = doc.stats
            total += length
            for term in tf:
                own(term).add(nxt - 1)
        return Terms(ids, postings, total, nxt)


@dataclass
class Snapshot:
    """The live items under one prefix at one generation, with what ranking needs prebuilt."""

    ident: Ident
    docs: list[Stored]
    expires: float
    """The earliest ``expires_at`` among the items (inf: none expire): past it, reload."""
    terms: Terms | None = None
    """The inverted index, built at the first text search (or carried over by a patch)."""
    _positions: dict[int, int] | None = None
    _vectors: dict[tuple[str, int | None], tuple[Any, list[int], list[str]]] = field(default_factory=dict)

    def bm25(self, query: str) -> list[tuple[int, float, tuple[str, ...]]]:
        """:func:`ranking.bm25` over all the docs, computed from postings: the same hits, scores and order."""
        wanted = ranking.query_terms(query)
        if not wanted or not self.docs:
            return []
        if self.terms is None:
            self.terms = Terms.of(self.docs)
        if self._positions is None:
            ids = self.terms.ids
            self._positions = {ids[d.record.key]: n for n, d in enumerate(self.docs)}
        postings, pos = self.terms.postings, self._positions
        df = {t: len(postings.get(t, ())) for t in wanted}
        candidates = sorted(pos[i] for i in set().union(*(postings.get(t, ()) for t in wanted)))
        stats = [self.docs[i].stats for i in candidates]
        scored = ranking.bm25_scored(wanted, stats, len(self.docs), self.terms.total / len(self.docs), df)
        return [(candidates[j], score, hit) for j, score, hit in scored]

    def vectors(self, embedding: Embedding) -> tuple[Any, list[int]]:
        """The unit vectors made by ``embedding`` as one matrix, and the doc index of each row.

        Raises :class:`EmbedderMismatchError` when any item's vector another embedder made.
        """
        tag = (embedding.name, embedding.dim)
        if tag not in self._vectors:
            self._vectors[tag] = stack_vectors(self.docs, embedding)
        matrix, usable, stale = self._vectors[tag]
        if stale:
            raise mismatch(stale, embedding)
        return matrix, usable


def stack_vectors(docs: Sequence[Stored], embedding: Embedding) -> tuple[Any, list[int], list[str]]:
    """The vectors ``embedding`` made among ``docs`` as one float32 matrix, the index in ``docs`` of
    each row, and a description of each doc whose vector is missing or another embedder's."""
    np = numpy()
    rows: list[bytes] = []
    usable: list[int] = []
    stale: list[str] = []
    for i, doc in enumerate(docs):
        vec = doc.vector
        if vec is not None and vec.get("n") == embedding.name and vec.get("d") == embedding.dim:
            usable.append(i)
            rows.append(vec["b"])
        else:
            stale.append("no vector" if vec is None else f"{vec.get('n')} ({vec.get('d')} dimensions)")
    dim = embedding.dim or 0
    matrix = np.frombuffer(b"".join(rows), dtype="<f4").reshape(len(rows), dim) if rows else np.zeros((0, dim))
    return matrix, usable, stale


_snapshots: weakref.WeakKeyDictionary[Core, dict[str, Snapshot]] = weakref.WeakKeyDictionary()


def snapshot(core: Core, prefix: str, scan: Iterator[Stored]) -> Snapshot:
    """The current snapshot of ``prefix``: the cached one after one read of its generation, else
    a fresh one from ``scan`` (all live items under the prefix, decoded, in key order)."""
    ident = _ident(core, prefix)
    kept = _snapshots.setdefault(core, {})
    snap = kept.pop(prefix, None)
    if snap is None or snap.ident != ident or ident is None or time.time() >= snap.expires:
        docs = list(scan)
        ends = [d.record.expires_at for d in docs if d.record.expires_at is not None]
        snap = Snapshot(ident, docs, min(ends, default=float("inf")))
    kept[prefix] = snap  # most recently used last
    while len(kept) > _MAX_PREFIXES:
        kept.pop(next(iter(list(kept))), None)
    return snap


def commit(core: Core, ops: Sequence[Op], namespaces: Sequence[tuple[str, ...]], *,
           written: Callable[[list[OpResult]], Sequence[Stored]] | None = None, removed: Sequence[str] = (),
           ) -> list[OpResult]:  # fmt: skip
    """Apply ``ops`` with the generation bumps of ``namespaces`` (one atomic batch), then bring this
    store's snapshots up to date without reading: the items ``written(results)`` returns (as
    stored) and the ``removed`` item keys are patched into every snapshot the batch moved by
    exactly one generation — nobody else wrote in between, so the patched snapshot is what a
    re-read would give. Any other snapshot the batch touched is dropped. Returns the results
    of ``ops``."""
    extra = bumps(core, namespaces)
    results = core.backend.apply([*ops, *extra])
    mine = results[: len(ops)]
    docs = written(mine) if written is not None else ()
    kept = _snapshots.get(core)
    if kept:
        gens = {op.key: rec for op, rec in zip(extra, results[len(ops):]) if isinstance(rec, Record)}
        for prefix in [p for p in list(kept) if p + GEN in gens]:  # list(): other threads search meanwhile
            rec, snap = gens[prefix + GEN], kept.get(prefix)
            if snap is None:
                continue
            if snap.ident is None or snap.ident[0] + 1 != rec.version:
                kept.pop(prefix, None)
            else:
                kept[prefix] = _patched(snap, (rec.version, rec.data), prefix, docs, removed)
    return mine


def _patched(snap: Snapshot, ident: Ident, prefix: str, written: Sequence[Stored], removed: Sequence[str]
             ) -> Snapshot:
    """``snap`` with ``written`` put and ``removed`` taken out, in key order (code point order is
    UTF-8 byte order: the order backends scan in)."""
    docs = {d.record.key: d for d in snap.docs}
    for key in removed:
        docs.pop(key, None)
    added = [d if d.stats is not None else replace(d, stats=ranking.stats_of(d.text))
             for d in written if d.record.key.startswith(prefix)]
    for doc in added:
        docs[doc.record.key] = doc
    ordered = [docs[k] for k in sorted(docs)]
    ends = [d.record.expires_at for d in ordered if d.record.expires_at is not None]
    terms = None
    if snap.terms is not None:  # carried over: only the changed docs' terms are touched
        before = {d.record.key: d for d in snap.docs}
        gone = [before[k] for k in {*removed, *(d.record.key for d in added)} if k in before]
        terms = snap.terms.patched(gone, added)
    return Snapshot(ident, ordered, min(ends, default=float("inf")), terms)


def _ident(core: Core, prefix: str) -> Ident:
    rec = core.backend.get(prefix + GEN)
    return None if rec is None else (rec.version, rec.data)
