"""Long-term memory: ``store.memory(namespace)`` — put, get, delete, hybrid search, forgetting.

Every item is an ordinary record written with ``core.backend.apply`` (see
:mod:`.items`), so memory works on every backend, encrypted, chained and in
tenants, with nothing to migrate. Search scans the namespace (and the ones below
it), decodes what it reads — after decryption, so an encrypted store stays
fully searchable — and ranks in process (:mod:`.ranking`): BM25 over the
texts, exact cosine over the stored vectors, fused by reciprocal-rank fusion.

Dedup on write: a text whose content hash another key of the namespace already
holds returns that item instead of storing a copy (a pointer record
``…/#<digest>`` makes it one read); with ``similarity=`` set, so does a text whose
vector is at least that similar to a stored one.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Final, Literal

from ...core import Core, layout
from ...core.validate import check_int, check_name, check_text
from ...errors import ConflictError, InvalidInputError, MissingDependencyError, StatekeelError, UsageError
from ...protocol import KEEP, Delete, Op, Put, Record
from ...protocol.capabilities import IndexRow, MemoryIndex
from .._duration import Duration, maybe_seconds
from . import cache, native, ranking, writes
from .embedding import DEFAULT, INSTALL_HINT, Embedder, Embedding, Matrix, mismatch, resolve_embedder
from .policy import Policy, check_policy, policies, store_policy
from .items import (
    ROOT, MemoryHit, MemoryItem, Stored, check_filter, check_namespace, decode, decode_cached, matches, parse_key,
)

__all__ = ["Memory", "SearchMode", "forget_by_policy", "list_namespaces"]

SearchMode = Literal["hybrid", "text", "vector"]
MAX_LIMIT: Final = 1000
_PAGE: Final = 500
_BATCH: Final = 100


class Memory:
    """The long-term memories of one namespace (and the namespaces below it)."""

    def __init__(
        self, core: Core, namespace: tuple[str, ...], *, embedder: Embedder | None = DEFAULT,
        dedup: bool = True, similarity: float | None = None, native: bool = True,
    ) -> None:
        self._core = core
        self._native = native
        self._index_cache: list[MemoryIndex | None] = []
        self.namespace = check_namespace(namespace)
        self._wants_default = isinstance(embedder, str) and embedder == DEFAULT
        self._spec = embedder
        self._resolved: Embedding | None = None
        if not self._wants_default:
            self._resolved = resolve_embedder(embedder)  # a bad embedder fails here, not at the first put
        self._dedup = dedup
        if similarity is not None and not (isinstance(similarity, (int, float)) and 0 < similarity <= 1):
            raise InvalidInputError(f"similarity= is a cosine threshold in (0, 1], e.g. 0.95; got {similarity!r}")
        self._similarity = similarity
        self._prefix = layout.memory_prefix(self.namespace)

    def __repr__(self) -> str:
        return f"<Memory {self.namespace!r}>"

    @property
    def _embedding(self) -> Embedding | None:
        """The checked embedder; the default model is loaded at first use (once per process)."""
        if self._resolved is None and self._wants_default:
            self._resolved = resolve_embedder(self._spec)
        return self._resolved

    @property
    def _index(self) -> MemoryIndex | None:
        """The backend's native index (None: search in process); ``native=False`` never uses one."""
        if not self._index_cache:
            self._index_cache.append(native.index_of(self._core) if self._native else None)
        return self._index_cache[0]

    def _index_write(self, rows: Sequence[IndexRow] = (), removed: Sequence[str] = ()) -> None:
        """Keep the native index in step; a failure here is caught by the next search's check of its hits."""
        if (index := self._index) is None:
            return
        try:
            if removed:
                index.remove(removed)
            if rows:
                index.upsert(rows)
        except StatekeelError:
            pass  # the record is written and is what counts: search finds the index stale and rebuilds it

    def _index_first(self, rows: list[IndexRow]) -> None:
        """Index rows of records about to be written; a failure fails the put before anything is stored."""
        if (index := self._index) is not None:
            index.upsert(rows)

    def _rebuild(self, index: MemoryIndex, docs: list[Stored]) -> None:
        """Make the index of this namespace match ``docs`` (all its live records)."""
        try:
            index.clear(self._prefix)
            index.upsert([native.row_of(d) for d in docs])
        except StatekeelError:
            pass

    @property
    def embedder(self) -> str | None:
        """The name of the embedder vectors are made with; None: text-only."""
        return None if self._embedding is None else self._embedding.name

    # -- writing -------------------------------------------------------------------
    def put(
        self, key: str, value: Any, *, text: str | None = None, metadata: Mapping[str, Any] | None = None,
        ttl: Duration | None = None,
    ) -> MemoryItem:
        """Store ``value`` at ``key``; ``text`` is what search matches (default: the value as text).

        Returns the stored item — or, with dedup on, the item another key already holds with
        the same text (or, with ``similarity=``, a text that similar); nothing is written then.
        """
        return self.put_many([{"key": key, "value": value, "text": text, "metadata": metadata}], ttl=ttl)[0]

    def put_many(self, items: Iterable[Mapping[str, Any]], *, ttl: Duration | None = None) -> list[MemoryItem]:
        """Store several ``{"key", "value", "text"?, "metadata"?}`` items: embedded in batches, written
        100 to an atomic batch (see :mod:`.writes`); returns their items (existing ones for duplicates)."""
        rows = writes.check_items(items)
        seconds = maybe_seconds(ttl, "ttl")
        vectors = self._embed([r[2] for r in rows]) if rows and self._embedding is not None else None
        target = writes.Target(self._core, self.namespace, self._dedup, self._similarity, self.embedder,
                               self._neighbours, self._index_first)
        out: list[MemoryItem] = []
        for i in range(0, len(rows), _BATCH):
            chunk = None if vectors is None else vectors[i : i + _BATCH]
            out += writes.write(target, rows[i : i + _BATCH], chunk, seconds)[0]
        return out

    def _neighbours(self) -> tuple[Matrix, list[Stored]]:
        """Vectors of this namespace's own items (not those below), for ``similarity`` dedup."""
        docs = cache.snapshot(self._core, self._prefix, self._scan()).docs
        return vectors_of([d for d in docs if d.namespace == self.namespace], self._embedding, strict=False)

    def _vector(self, vec: Any) -> dict[str, Any] | None:
        if vec is None or self._embedding is None:
            return None
        return {"n": self._embedding.name, "d": int(vec.shape[0]), "b": vec.astype("<f4").tobytes()}

    def _embed(self, texts: list[str]) -> Matrix:
        assert self._embedding is not None
        return self._embedding(texts)

    # -- reading -------------------------------------------------------------------
    def get(self, key: str) -> MemoryItem | None:
        """The item at ``key`` in this namespace, or None."""
        rec = self._core.backend.get(layout.memory_item_key(self.namespace, check_name(key, "a memory key")))
        doc = None if rec is None else decode(self._core, rec)
        return None if doc is None else doc.item()

    def delete(self, key: str) -> bool:
        """Remove the item at ``key`` (and its hash pointer); True if it existed."""
        item_key = layout.memory_item_key(self.namespace, check_name(key, "a memory key"))
        rec = self._core.backend.get(item_key)
        doc = None if rec is None else decode(self._core, rec)
        if doc is None:
            return False
        existed = bool(cache.commit(self._core, self._deletes(doc), [doc.namespace], removed=[item_key])[0])
        self._index_write(removed=[item_key])
        return existed

    def _deletes(self, doc: Stored) -> list[Op]:
        ops: list[Op] = [Delete(doc.record.key)]
        digest = doc.payload.get("h")
        if isinstance(digest, str):
            ptr_key = layout.memory_hash_key(doc.namespace, digest)
            ptr = self._core.backend.get(ptr_key)
            if ptr is not None and self._core.codec.decode(ptr.data, ptr.codec, ptr.key) == doc.key:
                ops.append(Delete(ptr_key))
        return ops

    def items(self, *, after: str | None = None, limit: int = 100) -> list[MemoryItem]:
        """Items of this namespace and those below it, in key order (``after``: a record key to page)."""
        check_int(limit, "limit", minimum=1)
        if after is not None and type(after) is not str:
            raise InvalidInputError(f"after= is the key of the last item of a page (a str), got {type(after).__name__}")
        out: list[MemoryItem] = []
        for doc in self._scan(after=after):
            out.append(doc.item())
            if len(out) >= limit:
                break
        return out

    def _scan(self, after: str | None = None) -> Iterator[Stored]:
        while recs := self._core.backend.scan(self._prefix, after=after, limit=_PAGE):
            for rec in recs:
                if (doc := decode_cached(self._core, rec, ranking.stats_of)) is not None:
                    yield doc
            after = recs[-1].key

    # -- search --------------------------------------------------------------------
    def search(
        self, query: str, *, filter: Mapping[str, Any] | None = None, limit: int = 10, offset: int = 0,  # noqa: A002
        mode: SearchMode | None = None,
    ) -> list[MemoryHit]:
        """Items matching ``query``, best first: hybrid (full text + vectors, fused by reciprocal
        rank) when an embedder is set, else full text; ``filter``: exact metadata values."""
        check_text(query, "query")
        check_int(limit, "limit", minimum=1)
        check_int(offset, "offset")
        if limit > MAX_LIMIT:
            raise InvalidInputError(f"limit is at most {MAX_LIMIT}, got {limit}; page with offset=")
        flt = dict(check_filter(filter))
        chosen = self._mode(mode)
        index = self._index if native.pushable(flt) and native.worth_it(self._index, chosen) else None
        if index is not None:
            hits = native.native_search(self._core, index, self._prefix, query, chosen, self._embedding, flt,
                                        offset, limit)
            if hits is not None:
                return hits
        snap = cache.snapshot(self._core, self._prefix, self._scan())
        if index is not None:  # the index was stale: it is rebuilt from the records just read
            self._rebuild(index, snap.docs)
        if flt:
            docs = [d for d in snap.docs if matches(d.metadata, flt)]
            return rank(docs, query, chosen, self._embedding, offset, limit)
        return rank(snap.docs, query, chosen, self._embedding, offset, limit, snap)

    def _mode(self, mode: SearchMode | None) -> SearchMode:
        if mode is None:
            return "text" if self._embedding is None else "hybrid"
        if mode not in ("hybrid", "text", "vector"):
            raise InvalidInputError(f"mode= is 'hybrid', 'text' or 'vector', got {mode!r}")
        if mode != "text" and self._embedding is None:
            if self._wants_default:
                raise MissingDependencyError(f"{mode} search needs an embedder; {INSTALL_HINT} "
                                             "(or pass embedder=your_function); mode='text' works without")
            raise UsageError(f"{mode} search needs an embedder; this handle was opened with embedder=None")
        return mode

    def _matrix(self, docs: list[Stored], *, strict: bool) -> tuple[Matrix, list[Stored]]:
        return vectors_of(docs, self._embedding, strict=strict)

    # -- maintenance ---------------------------------------------------------------
    def reindex(self, *, force: bool = False) -> int:
        """Re-embed every item whose vector was made by another embedder (all with ``force``);
        returns how many. Also rebuilds the native index (the only thing it does for a text-only
        handle, ``embedder=None``). What ``statekeel memory reindex`` runs after changing embedders."""
        if self._embedding is None:
            if (index := self._index) is not None:
                self._rebuild(index, list(self._scan()))
            return 0
        name, todo = self._embedding.name, []
        for doc in self._scan():
            vec = doc.vector
            if force or vec is None or vec.get("n") != name or vec.get("d") != self._embedding.dim:
                todo.append(doc)
        done = 0
        for i in range(0, len(todo), _BATCH):
            chunk = todo[i : i + _BATCH]
            matrix = self._embed([d.text for d in chunk])
            for doc, vec in zip(chunk, matrix):
                payload = {**doc.payload, "x": self._vector(vec)}
                data, codec = self._core.codec.encode(payload, f"memory[{doc.key!r}]", doc.record.key)
                try:
                    cache.commit(self._core, [Put(doc.record.key, data, codec, doc.record.version, KEEP)],
                                 [doc.namespace], written=functools.partial(_rewritten, doc, payload))
                    done += 1
                except ConflictError:  # rewritten meanwhile, by a put that embedded it itself
                    continue
        if (index := self._index) is not None:
            self._rebuild(index, list(self._scan()))
        return done

    def forget(
        self, *, max_age: Duration | None = None, inactive: Duration | None = None, keep: int | None = None,
    ) -> int:
        """Delete items created more than ``max_age`` ago, not written for ``inactive``, and all but the
        ``keep`` most recently written of each namespace; returns how many went. Expired items (``ttl``)
        go with ``statekeel gc`` / ``store.purge_expired()``."""
        age = maybe_seconds(max_age, "max_age")
        idle = maybe_seconds(inactive, "inactive")
        if keep is not None:
            check_int(keep, "keep")
        now = time.time()
        doomed: list[Stored] = []
        by_ns: dict[tuple[str, ...], list[Stored]] = {}
        for doc in self._scan():
            rec = doc.record
            if (age is not None and rec.created_at < now - age) or (idle is not None and rec.updated_at < now - idle):
                doomed.append(doc)
            else:
                by_ns.setdefault(doc.namespace, []).append(doc)
        if keep is not None:
            for docs in by_ns.values():
                docs.sort(key=lambda d: (d.record.updated_at, d.key), reverse=True)
                doomed += docs[keep:]
        for i in range(0, len(doomed), _BATCH):
            chunk = doomed[i : i + _BATCH]
            cache.commit(self._core, [op for d in chunk for op in self._deletes(d)], [d.namespace for d in chunk],
                         removed=[d.record.key for d in chunk])
            self._index_write(removed=[d.record.key for d in chunk])
        return len(doomed)

    def set_policy(
        self, *, max_age: Duration | None = None, inactive: Duration | None = None, keep: int | None = None,
    ) -> None:
        """Record the forgetting policy of this namespace (and below) that ``statekeel gc`` applies:
        :meth:`forget` with these arguments. All None removes it. See :mod:`.policy`."""
        store_policy(self._core, self.namespace, check_policy(max_age, inactive, keep))

    def policy(self) -> Policy | None:
        """The forgetting policy recorded for exactly this namespace, or None (one read)."""
        return policies(self._core).get(self.namespace)


def _rewritten(doc: Stored, payload: dict[str, Any], results: list[Any]) -> list[Stored]:
    """The item ``doc`` as rewritten with ``payload`` (``results``: the put's)."""
    rec = results[0]
    return [Stored(rec, doc.namespace, doc.key, payload, doc.stats)] if isinstance(rec, Record) else []


def forget_by_policy(core: Core) -> dict[tuple[str, ...], int]:
    """Apply every recorded forgetting policy (what ``statekeel gc`` runs); items forgotten per namespace."""
    return {ns: Memory(core, ns, embedder=None).forget(max_age=p.max_age, inactive=p.inactive, keep=p.keep)
            for ns, p in policies(core).items()}


def vectors_of(docs: list[Stored], embedding: Embedding | None, *, strict: bool) -> tuple[Matrix, list[Stored]]:
    """The unit vectors of ``docs`` made by ``embedding``, and the docs they belong to.

    ``strict``: a doc whose vector another embedder made (or that has none) raises
    :class:`EmbedderMismatchError` — comparing vectors of two models is meaningless.
    """
    assert embedding is not None
    matrix, rows, stale = cache.stack_vectors(docs, embedding)
    if strict and stale:
        raise mismatch(stale, embedding)
    return matrix, [docs[i] for i in rows]


def rank(
    docs: list[Stored], query: str, mode: SearchMode, embedding: Embedding | None, offset: int, limit: int,
    snap: cache.Snapshot | None = None,
) -> list[MemoryHit]:
    """Rank ``docs`` (in key order) for ``query`` in ``mode``, in process; the page of hits, best first.

    ``snap``: the cached snapshot ``docs`` are (its postings and matrix stand in for a pass over them).
    """
    want = offset + limit
    text_hits: list[tuple[int, float, tuple[str, ...]]] = []
    if mode != "vector":
        text_hits = snap.bm25(query) if snap is not None else ranking.bm25(
            query, [d.stats or ranking.stats_of(d.text) for d in docs])
    near: list[tuple[int, float]] = []
    if mode != "text":
        assert embedding is not None
        qvec = embedding([query])[0]  # first, so an embedder of unknown dimension has learnt it
        if snap is not None:
            matrix, rows = snap.vectors(embedding)
        else:
            matrix, usable = vectors_of(docs, embedding, strict=True)
            index = {id(d): n for n, d in enumerate(docs)}
            rows = [index[id(d)] for d in usable]
        depth = want if mode == "vector" else max(want * 4, 50)  # a stable sort's first ``want`` are the page
        near = [(rows[i], sim) for i, sim in ranking.cosine(qvec, matrix, depth)]
    page = ranking.combine(mode, text_hits, near, want)[offset:]
    return [docs[i].hit(score, why) for i, score, why in page]


def list_namespaces(core: Core, prefix: tuple[str, ...] = (), *, limit: int = 100) -> list[tuple[str, ...]]:
    """The namespaces holding memories, under ``prefix`` (``()``: all), sorted."""
    check_int(limit, "limit", minimum=1)
    start = layout.memory_prefix(check_namespace(prefix, "a namespace prefix")) if prefix else ROOT
    found: set[tuple[str, ...]] = set()
    after: str | None = None
    while recs := core.backend.scan(start, after=after, limit=_PAGE):
        for rec in recs:
            parsed = parse_key(rec.key, ROOT)
            if parsed is not None:
                found.add(parsed[0])
        after = recs[-1].key
    return sorted(found)[:limit]

