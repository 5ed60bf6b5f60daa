"""Writing memories: dedup checks with a few multi-key reads, then one atomic batch per chunk.

A chunk of up to 100 items costs three ``get_many`` calls (the items, their content-hash
pointers, the items those point at) and one ``apply`` — not four round trips per item —
so bulk loads and ``put_many`` run at the backend's batch speed. Dedup keeps the
sequential meaning within a chunk: an item whose text an earlier item of the same call
has (or, with ``similarity``, nearly has) returns that item.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ...core import Core, layout
from ...core.validate import check_name
from ...errors import ConflictError, InvalidInputError
from ...protocol import Delete, Op, OpResult, Put, Record
from ...protocol.capabilities import IndexRow
from .cache import commit
from .embedding import Matrix
from .items import MemoryItem, Stored, check_metadata, content_hash, decode, text_of
from .native import planned_row

__all__ = ["Row", "Target", "check_item", "write"]

Row = tuple[str, Any, str, dict[str, Any]]
"""``(key, value, text, metadata)``, checked."""
_FIELDS = frozenset({"key", "value", "text", "metadata"})


@dataclass(frozen=True)
class Target:
    """Where and how a chunk is written."""

    core: Core
    namespace: tuple[str, ...]
    dedup: bool
    similarity: float | None
    embedder: str | None
    neighbours: Callable[[], tuple[Matrix, list[Stored]]]
    """The namespace's stored unit vectors and their items (read once per chunk, for ``similarity``)."""
    before_write: Callable[[list[IndexRow]], None]
    """Updates the native index with the rows of the records about to be written (see :mod:`.native`)."""


def check_items(items: Any) -> list[Row]:
    """``put_many``'s items, each checked: an iterable of item dicts (one dict alone is refused)."""
    if isinstance(items, (Mapping, str, bytes)) or not isinstance(items, Iterable):
        raise InvalidInputError(
            f"put_many takes a list of {{'key', 'value', 'text'?, 'metadata'?}} dicts, got {type(items).__name__}"
        )
    return [check_item(i) for i in items]


def check_item(item: Mapping[str, Any]) -> Row:
    """One ``{"key", "value", "text"?, "metadata"?}`` item, checked."""
    if not isinstance(item, Mapping) or "key" not in item:
        raise InvalidInputError(f"each item is a dict with 'key' and 'value' (and 'text', 'metadata'); got {item!r}")
    if unknown := set(item) - _FIELDS:
        raise InvalidInputError(f"unknown item field(s) {sorted(unknown)}; use key, value, text, metadata")
    value = item.get("value")
    return (check_name(item["key"], "a memory key"), value, text_of(value, item.get("text")),
            dict(check_metadata(item.get("metadata"))))


def write(target: Target, rows: Sequence[Row], vectors: Matrix | None, ttl: float | None
          ) -> tuple[list[MemoryItem], list[Stored]]:
    """The item of each row (an existing one for a duplicate) and what was written."""
    keys = [r[0] for r in rows]
    if len(set(keys)) != len(keys):
        raise InvalidInputError("the same key appears twice in one put_many; merge those items first")
    expires = None if ttl is None else time.time() + ttl
    for attempt in range(3):
        try:
            return _attempt(target, rows, vectors, expires)
        except ConflictError:  # another writer changed one of these keys meanwhile: read again
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _attempt(target: Target, rows: Sequence[Row], vectors: Matrix | None, expires: float | None
             ) -> tuple[list[MemoryItem], list[Stored]]:
    core, ns = target.core, target.namespace
    digests = [content_hash(r[2]) for r in rows]
    existing: list[MemoryItem | None] = _same_texts(target, rows, digests) if target.dedup else [None] * len(rows)
    alias = _repeats(target, digests, vectors, existing)
    writes = [i for i in range(len(rows)) if existing[i] is None and i not in alias]
    olds = core.backend.get_many([layout.memory_item_key(ns, rows[i][0]) for i in writes])
    ops: list[Op] = _stale_pointers(target, [rows[i][0] for i in writes], [digests[i] for i in writes], olds)
    first_put = len(ops)
    payloads: dict[int, dict[str, Any]] = {}
    planned: list[IndexRow] = []
    for i, old in zip(writes, olds):
        key, value, text, meta = rows[i]
        payloads[i] = {"v": value, "t": text, "m": meta, "h": digests[i],
                       "x": _vector(target.embedder, None if vectors is None else vectors[i])}
        item_key = layout.memory_item_key(ns, key)
        data, codec = core.codec.encode(payloads[i], f"memory{ns!r}[{key!r}]", item_key)
        ptr_key = layout.memory_hash_key(ns, digests[i])
        pointer, pcodec = core.codec.encode(key, "memory pointer", ptr_key)
        ops += [Put(item_key, data, codec, None if old is None else old.version, expires),
                Put(ptr_key, pointer, pcodec, expires_at=expires)]
        planned.append(planned_row(item_key, 1 if old is None else old.version + 1, expires, payloads[i]))
    if planned:
        target.before_write(planned)  # first: a crash after it leaves an index row no record backs, found out
    stored: dict[int, Stored] = {}

    def made(results: list[OpResult]) -> list[Stored]:
        for n, i in enumerate(writes):
            rec = results[first_put + 2 * n]
            assert isinstance(rec, Record)
            stored[i] = Stored(rec, ns, rows[i][0], payloads[i])
        return list(stored.values())

    if ops:  # with the namespace's generation bump, in the same batch (see .cache)
        commit(core, ops, [ns], written=made)
    items = [e if e is not None else stored[alias.get(i, i)].item() for i, e in enumerate(existing)]
    return items, list(stored.values())


def _same_texts(target: Target, rows: Sequence[Row], digests: list[str]) -> list[MemoryItem | None]:
    """For each row, the item another key already holds with the same text (pointer checked against it)."""
    core, ns = target.core, target.namespace
    ptrs = core.backend.get_many([layout.memory_hash_key(ns, d) for d in digests])
    others: dict[int, str] = {}
    for i, ptr in enumerate(ptrs):
        other = None if ptr is None else core.codec.decode(ptr.data, ptr.codec, ptr.key)
        if isinstance(other, str) and other != rows[i][0]:
            others[i] = other
    found = core.backend.get_many([layout.memory_item_key(ns, k) for k in others.values()])
    out: list[MemoryItem | None] = [None] * len(rows)
    for (i, _), rec in zip(others.items(), found):
        doc = None if rec is None else decode(core, rec)
        if doc is not None and doc.payload.get("h") == digests[i]:
            out[i] = doc.item()
    return out


def _repeats(target: Target, digests: list[str], vectors: Matrix | None, existing: list[MemoryItem | None]
             ) -> dict[int, int]:
    """Rows that repeat an earlier row of the chunk (``alias[i] = j``), or that ``similarity`` matches to a
    stored item (filled into ``existing``)."""
    alias: dict[int, int] = {}
    first: dict[str, int] = {}
    similar = target.similarity is not None and vectors is not None
    matrix, docs = target.neighbours() if similar else (None, [])
    kept: list[int] = []
    for i, digest in enumerate(digests):
        if existing[i] is not None:
            continue
        if target.dedup and digest in first:
            alias[i] = first[digest]
            continue
        if similar and (hit := _nearest(target, vectors, i, matrix, docs, kept)) is not None:
            if isinstance(hit, int):
                alias[i] = hit
            else:
                existing[i] = hit
            continue
        first.setdefault(digest, i)
        kept.append(i)
    return alias


def _nearest(target: Target, vectors: Any, i: int, matrix: Any, docs: list[Stored], kept: list[int]
             ) -> MemoryItem | int | None:
    """The stored item, or earlier row of the chunk, at least ``similarity`` like row ``i``; else None."""
    assert target.similarity is not None
    vec = vectors[i]
    if matrix is not None and matrix.shape[0]:
        sims = matrix @ vec
        best = int(sims.argmax())
        if sims[best] >= target.similarity:
            return docs[best].item()
    for j in kept:
        if float(vectors[j] @ vec) >= target.similarity:
            return j
    return None


def _stale_pointers(target: Target, keys: list[str], digests: list[str], olds: list[Record | None]) -> list[Op]:
    """Deletes of the hash pointers of texts these writes replace, where they still point at the key."""
    core, ns = target.core, target.namespace
    candidates: list[tuple[str, str]] = []
    for key, digest, old in zip(keys, digests, olds):
        doc = None if old is None else decode(core, old)
        before = None if doc is None else doc.payload.get("h")
        if isinstance(before, str) and before != digest:
            candidates.append((key, layout.memory_hash_key(ns, before)))
    ptrs = core.backend.get_many([p for _, p in candidates])
    return [Delete(p) for (key, p), rec in zip(candidates, ptrs)
            if rec is not None and core.codec.decode(rec.data, rec.codec, rec.key) == key]


def _vector(embedder: str | None, vec: Any) -> dict[str, Any] | None:
    if vec is None or embedder is None:
        return None
    return {"n": embedder, "d": int(vec.shape[0]), "b": vec.astype("<f4").tobytes()}

