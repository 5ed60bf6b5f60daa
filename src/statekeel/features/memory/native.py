"""Search pushed down to a backend's native memory index (SQLite FTS5, PostgreSQL tsvector/pgvector).

Used when the store's backend itself declares
:class:`~statekeel.protocol.capabilities.SupportsMemoryIndex` — so not through an
encryption or chain wrapper (the index would hold plaintext: encrypted stores
search in process, after decrypting) nor a tenant view. The index selects and
counts; scoring is the same BM25 / cosine / fusion code as the in-process path
(:mod:`.ranking`), so both return the same hits on the same data.

The index is derived data and never trusted alone. A put writes the index row
*before* the record (the version it will get is known: puts compare-and-set), a
delete removes it *after*: a crash in between leaves a row no record backs, never
a record without its row. Every hit is checked against its record (version and
content digest); one that does not match makes the search run in process, which
rebuilds the namespace's index. Records written around the index (``statekeel
import``/``copy``/``restore``) are found again after ``statekeel memory reindex``.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from typing import Any, Final

from ...core import Core
from ...errors import StatekeelError
from ...protocol.capabilities import IndexRow, MemoryIndex, SupportsMemoryIndex
from . import ranking
from .embedding import Embedding, mismatch, numpy
from .items import MemoryHit, Stored, decode, matches

__all__ = ["TEXT_CANDIDATES", "index_of", "native_search", "planned_row", "pushable", "row_of", "worth_it"]

TEXT_CANDIDATES: Final = 200
"""Rows the database's own text ranking preselects for exact BM25 scoring (more when the page is deeper)."""
_FIELD = re.compile(r"[A-Za-z0-9_\-]{1,100}")
_SCALARS = (str, int, float, bool, type(None))


def index_of(core: Core) -> MemoryIndex | None:
    """The backend's native memory index, or None (in-process search)."""
    backend = core.backend
    if not isinstance(backend, SupportsMemoryIndex):
        return None
    try:
        return backend.memory_index()
    except StatekeelError:  # a read-only store, a database without full-text search
        return None


def worth_it(index: MemoryIndex | None, mode: str) -> bool:
    """Whether searching in ``mode`` should go to the index rather than the in-process cache.

    Full text always does (the database selects the candidates). Vectors only where the
    database ranks them itself (pgvector): otherwise the index would hand over every vector
    of the namespace per query, which the in-process cache (:mod:`.cache`) keeps instead — the
    same ranking, read once per change instead of once per query.
    """
    return index is not None and (mode == "text" or bool(getattr(index, "pgvector", False)))


def pushable(flt: dict[str, Any]) -> bool:
    """Whether the index can apply ``flt`` exactly (plain field names, scalar values)."""
    return all(_FIELD.fullmatch(f) and all(isinstance(v, _SCALARS) for v in (w if isinstance(w, list) else [w]))
               for f, w in flt.items())


def row_of(doc: Stored) -> IndexRow:
    """What the index keeps of a stored memory record."""
    rec = doc.record
    return planned_row(rec.key, rec.version, rec.expires_at, doc.payload)


def planned_row(key: str, version: int, expires_at: float | None, payload: dict[str, Any]) -> IndexRow:
    """The index row of a record about to be written at ``version`` with ``payload``."""
    vec, meta = payload.get("x"), payload.get("m")
    vec = vec if isinstance(vec, dict) else None
    meta = meta if isinstance(meta, dict) else {}
    return IndexRow(key, version, str(payload.get("h", "")), expires_at, " ".join(ranking.terms(str(payload.get("t", "")))),
                    meta, None if vec is None else f"{vec.get('n')}#{vec.get('d')}", None if vec is None else vec.get("b"))


def native_search(
    core: Core, index: MemoryIndex, prefix: str, query: str, mode: str, embedding: Embedding | None,
    flt: dict[str, Any], offset: int, limit: int,
) -> list[MemoryHit] | None:
    """The page of hits computed by the index, or None when a hit's record does not back it."""
    now = time.time()
    text_hits: list[tuple[Any, float, tuple[str, ...]]] = []
    if mode != "vector":
        wanted = ranking.query_terms(query)
        found = index.text_matches(prefix, flt, wanted, now, max(4 * (offset + limit), TEXT_CANDIDATES))
        n, avg, df = index.text_stats(prefix, flt, wanted, now) if found else (0, 0.0, {})
        docs = [(Counter(words), len(words)) for words in (row[3].split() for row in found)]
        scored = ranking.bm25_scored(wanted, docs, n, avg, df)
        text_hits = [(found[i][:3], score, hit) for i, score, hit in scored]
    near: list[tuple[Any, float]] = []
    if mode != "text":
        assert embedding is not None
        near = _nearest(index, prefix, flt, query, embedding, offset + limit, mode, now)
    page = ranking.combine(mode, text_hits, near, offset + limit)[offset:]
    return _verified(core, page, flt)


def _nearest(
    index: MemoryIndex, prefix: str, flt: dict[str, Any], query: str, embedding: Embedding, want: int, mode: str,
    now: float,
) -> list[tuple[Any, float]]:
    """``((key, version), cosine)`` best first: by the database where it can (pgvector), else numpy."""
    np = numpy()
    qvec = embedding([query])[0]
    tag = f"{embedding.name}#{embedding.dim}"
    others = [_made_by(e) for e in index.embedders(prefix, flt, now) if e != tag]
    if others:
        raise mismatch(others, embedding)
    depth = want if mode == "vector" else max(want * 4, 50)  # as in process: the same page, the same fusion
    found = index.nearest(prefix, flt, qvec.astype("<f4").tobytes(), tag, depth * 2 + 10, now)
    if found is not None:  # twice as many, re-sorted as numpy would: float noise cannot reorder the cut
        return ranking.by_similarity([((k, v, d), sim) for k, v, d, sim in found], depth)
    rows = index.vectors(prefix, flt, now)
    blob = b"".join(r[4] for r in rows if r[4] is not None)
    matrix = np.frombuffer(blob, dtype="<f4").reshape(len(rows), embedding.dim or 0)
    return [(rows[i][:3], sim) for i, sim in ranking.cosine(qvec, matrix, depth)]


def _made_by(tag: str | None) -> str:
    if tag is None:
        return "no vector"
    name, _, dim = tag.rpartition("#")
    return f"{name} ({dim} dimensions)"


def _verified(core: Core, page: list[tuple[Any, float, tuple[str, ...]]], flt: dict[str, Any]) -> list[MemoryHit] | None:
    """Hits built from the records themselves; None if any record moved past the index."""
    recs = core.backend.get_many([key for (key, _, _), _, _ in page])
    out: list[MemoryHit] = []
    for ((_, version, digest), score, why), rec in zip(page, recs):
        doc = None if rec is None or rec.version != version else decode(core, rec)
        if doc is None or doc.payload.get("h") != digest or not matches(doc.metadata, flt):
            return None
        out.append(doc.hit(score, why))
    return out
