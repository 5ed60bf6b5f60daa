"""Ranking in process: BM25 full text, exact cosine similarity, reciprocal-rank fusion.

These work on every backend (memory, files, Redis) and are the fallback
where no native index exists. Fusion uses reciprocal-rank fusion (Cormack et al.,
2009): ``score = sum over rankings of 1 / (RRF_K + rank)``, rank counted from 1,
with ``RRF_K = 60`` as in the paper — it needs no calibration between BM25 and
cosine scores, which live on different scales.
"""

from __future__ import annotations

import heapq
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, Final

__all__ = ["DocStats", "RRF_K", "bm25", "bm25_scored", "by_similarity", "combine", "cosine", "fuse", "query_terms", "stats_of", "terms"]

RRF_K: Final = 60
BM25_K1: Final = 1.2
BM25_B: Final = 0.75
SIM_DIGITS: Final = 5
_WORD = re.compile(r"\w+", re.UNICODE)
_STOP: Final = frozenset(
    "a an and are as at be but by for from has have he her his i in is it its of on or she that the their them "
    "they this to was we were what when where which who will with you your".split()
)


def terms(text: str) -> list[str]:
    """The searchable words of ``text``: lower-cased, stop words dropped, a plural ``s`` stripped
    (``lives`` matches ``live``) — light on purpose: the vector side catches the rest."""
    return [_stem(w) for w in _WORD.findall(text.lower()) if w not in _STOP]


def _stem(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")) else word


DocStats = tuple[Mapping[str, int], int]
"""A document's term frequencies and its length in terms: all BM25 needs of it."""


def stats_of(text: str) -> DocStats:
    """The :data:`DocStats` of ``text`` (cached per record by the memory feature)."""
    words = terms(text)
    return Counter(words), len(words)


def bm25(query: str, docs: Sequence[DocStats]) -> list[tuple[int, float, tuple[str, ...]]]:
    """``(doc index, score, query terms it contains)`` of the docs matching any query term, best first."""
    wanted = query_terms(query)
    if not wanted or not docs:
        return []
    n = len(docs)
    df = {t: sum(1 for tf, _ in docs if t in tf) for t in wanted}
    return bm25_scored(wanted, docs, n, sum(length for _, length in docs) / n, df)


def query_terms(query: str) -> list[str]:
    """The distinct searchable words of a query, in order."""
    return list(dict.fromkeys(terms(query)))


def bm25_scored(
    wanted: list[str], docs: Sequence[DocStats], n: int, avg: float, df: Mapping[str, int]
) -> list[tuple[int, float, tuple[str, ...]]]:
    """BM25 of ``docs`` given the collection's statistics (``n`` docs, mean length ``avg``, document
    frequencies ``df``) — shared by the in-process path and the native indexes, so both score alike
    (to the last bit: the terms are summed in query order on both)."""
    avg = avg or 1.0
    idf = {t: math.log(1 + (n - df.get(t, 0) + 0.5) / (df.get(t, 0) + 0.5)) for t in wanted}
    out: list[tuple[int, float, tuple[str, ...]]] = []
    for i, (tf, length) in enumerate(docs):
        hit = tuple(t for t in wanted if t in tf)
        if not hit:
            continue
        norm = BM25_K1 * (1 - BM25_B + BM25_B * length / avg)
        out.append((i, sum(idf[t] * tf[t] * (BM25_K1 + 1) / (tf[t] + norm) for t in hit), hit))
    out.sort(key=lambda r: (-r[1], r[0]))
    return out


def cosine(query: Any, matrix: Any, top: int) -> list[tuple[int, float]]:
    """``(row, cosine)`` of the ``top`` rows nearest ``query`` (all unit vectors), best first, exactly.

    Similarities equal to :data:`SIM_DIGITS` decimals tie, and ties keep row (= key) order, so a
    database computing the same cosine in other float arithmetic (pgvector) ranks alike.
    """
    if matrix.shape[0] == 0:
        return []
    sims = matrix @ query
    order = sims.round(SIM_DIGITS).__neg__().argsort(kind="stable")[:top]
    return [(int(i), float(sims[i])) for i in order]


def by_similarity(rows: Sequence[tuple[Any, float]], top: int) -> list[tuple[Any, float]]:
    """``(key, cosine)`` pairs in :func:`cosine`'s order (keys sort as rows do), the first ``top``."""
    return sorted(rows, key=lambda r: (-round(r[1], SIM_DIGITS), r[0]))[:top]


def fuse(rankings: Sequence[Sequence[Any]], k: int = RRF_K, top: int | None = None) -> list[tuple[Any, float]]:
    """Reciprocal-rank fusion of several best-first rankings of ids; ``(id, score)`` best first.

    Ties keep the order of first appearance (the first ranking wins), so results are deterministic.
    ``top``: only the first ``top`` (``heapq.nsmallest`` is ``sorted(...)[:top]``, ties included).
    """
    scores: dict[Any, float] = {}
    for ranking in rankings:
        for rank, ident in enumerate(ranking, start=1):
            scores[ident] = scores.get(ident, 0.0) + 1.0 / (k + rank)
    if top is not None:
        return heapq.nsmallest(top, scores.items(), key=lambda kv: -kv[1])
    return sorted(scores.items(), key=lambda kv: -kv[1])


def _fuse_two(text: list[Any], near: list[Any], top: int | None) -> list[tuple[Any, float]]:
    """:func:`fuse` of a text and a vector ranking, cut to ``top``, without scoring every text hit.

    A doc only the text ranking holds, at rank ``r > top``, has ``r - 1 >= top`` docs strictly
    above it (each scores at least its own text rank's share, which is larger), so it cannot be
    in the page: only the first ``top`` text hits and the text ranks of the vector hits count.
    The scores are summed in fuse's order (text, then vector) and ties keep first appearance,
    so the page is exactly ``fuse(...)[:top]``.
    """
    if top is None or len(text) <= top:
        return fuse([text, near], top=top)
    rank_of = {i: r for r, i in enumerate(text, start=1)}
    kept = sorted({*text[:top], *(i for i in near if i in rank_of)}, key=rank_of.__getitem__)
    scores: dict[Any, float] = {i: 0.0 + 1.0 / (RRF_K + rank_of[i]) for i in kept}
    for rank, ident in enumerate(near, start=1):
        scores[ident] = scores.get(ident, 0.0) + 1.0 / (RRF_K + rank)
    return heapq.nsmallest(top, scores.items(), key=lambda kv: -kv[1])


def combine(
    mode: str, text_hits: Sequence[tuple[Any, float, tuple[str, ...]]], near: Sequence[tuple[Any, float]],
    top: int | None = None,
) -> list[tuple[Any, float, tuple[str, ...]]]:
    """``(id, score, why)`` best first: BM25 alone, cosine alone, or both fused by reciprocal rank;
    ``top``: only the first ``top`` of them (the same ones, cheaper when many match)."""
    if mode == "text":
        return [(i, score, ("text",) + tuple(f"term:{t}" for t in hit)) for i, score, hit in text_hits[:top]]
    if mode == "vector":
        return [(i, sim, ("vector",)) for i, sim in near[:top]]
    terms_of = {i: hit for i, _, hit in text_hits[:top]}
    in_vec = {i for i, _ in near}
    out: list[tuple[Any, float, tuple[str, ...]]] = []
    for i, score in _fuse_two([i for i, _, _ in text_hits], [i for i, _ in near], top):
        if i not in terms_of and len(terms_of) < len(text_hits):  # a vector hit ranked low by text
            terms_of = {i: hit for i, _, hit in text_hits}
        why = (("text",) if i in terms_of else ()) + (("vector",) if i in in_vec else ())
        out.append((i, score, why + tuple(f"term:{t}" for t in terms_of.get(i, ()))))
    return out
