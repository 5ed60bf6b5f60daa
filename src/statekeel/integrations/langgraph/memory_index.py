"""Semantic search for :class:`~.store.StatekeelStore`: LangGraph's ``index=`` on statekeel memory.

    store = StatekeelStore.from_url(url, index={"dims": 256, "embed": my_embeddings, "fields": ["text"]})
    store.search(("user", "u-7"), query="where does the user live")      # hybrid, scored

With ``index=`` (LangGraph's ``IndexConfig``: ``dims``, ``embed``, ``fields``), every item
put is also written to statekeel's long-term memory (:mod:`statekeel.features.memory`) in the
namespace ``("langgraph", *namespace)``: the text at ``fields`` (or the put's own ``index=``
list; ``index=False`` keeps it out), embedded by ``embed``. A search with a ``query``
ranks there — full text and vectors fused by reciprocal rank, on the native index where the
backend has one — and returns the LangGraph items with ``score``; ``filter`` still applies
to the item values. Searches without a query are LangGraph's listing, unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from langgraph.store.base import IndexConfig, PutOp, SearchItem, SearchOp
from langgraph.store.base.embed import ensure_embeddings, get_text_at_path

from ...core import Core, layout
from ...core.validate import short_repr
from ...errors import InvalidInputError
from ...features.memory import Memory
from . import _filters

__all__ = ["SemanticIndex"]

ROOT = "langgraph"
"""The first label of the memory namespaces that index LangGraph items."""

MAX_DIMS = 65_536
"""Largest ``dims`` accepted: embedding models have hundreds to a few thousand dimensions."""


class _Embedder:
    """LangGraph's ``Embeddings`` as a statekeel embedder (name and dimension are stored with vectors)."""

    def __init__(self, config: IndexConfig) -> None:
        dims = config.get("dims") if isinstance(config, Mapping) else None
        if type(dims) is not int or not 1 <= dims <= MAX_DIMS:
            raise InvalidInputError(
                f"index={{'dims': ...}} is the embedding's dimension, an int from 1 to {MAX_DIMS:,} "
                f"(e.g. 1536), got {type(dims).__name__} {short_repr(dims)}"
            )
        self._embeddings = ensure_embeddings(config["embed"])
        self.dim = dims
        self.name = f"langgraph:{getattr(self._embeddings, 'model', None) or type(self._embeddings).__name__}"

    def embed(self, texts: list[str]) -> list[list[float]]:
        return self._embeddings.embed_documents(texts)


class SemanticIndex:
    """What ``StatekeelStore(index=...)`` keeps and searches beside its items."""

    def __init__(self, core: Core, config: IndexConfig) -> None:
        self._core = core
        self._embedder = _Embedder(config)
        self._fields: list[str] = list(config.get("fields") or ["$"])

    def _memory(self, namespace: tuple[str, ...]) -> Memory:
        return Memory(self._core, (ROOT, *namespace), embedder=self._embedder, dedup=False)

    def update(self, writes: Mapping[str, PutOp]) -> None:
        """Index the values just put (and drop deleted ones or those put with ``index=False``)."""
        by_ns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for op in writes.values():
            text = None if op.value is None or op.index is False else self._text(op.value, op.index)
            if text is None:
                self._memory(op.namespace).delete(str(op.key))
            else:
                by_ns.setdefault(op.namespace, []).append({"key": str(op.key), "value": None, "text": text})
        for namespace, items in by_ns.items():
            self._memory(namespace).put_many(items)

    def _text(self, value: Mapping[str, Any], fields: Sequence[str] | None) -> str | None:
        parts = [t for path in (fields or self._fields) for t in get_text_at_path(dict(value), path)]
        text = "\n".join(p if isinstance(p, str) else json.dumps(p) for p in parts).strip()
        return text or None

    def search(self, op: SearchOp) -> list[SearchItem]:
        """The items of ``op.namespace_prefix`` best matching ``op.query``, with their scores."""
        assert op.query is not None
        wanted = op.offset + op.limit
        depth = min(1000, wanted * 4 if op.filter else wanted)
        hits = self._memory(op.namespace_prefix).search(op.query, limit=depth)
        out: list[SearchItem] = []
        for hit in hits:
            namespace = hit.namespace[1:]
            rec = self._core.backend.get(layout.langgraph_store_key(namespace, hit.key))
            if rec is None:
                continue  # deleted or expired since it was indexed
            doc = self._core.codec.decode(rec.data, rec.codec, rec.key)
            if op.filter and not _filters.matches(doc["v"], op.filter):
                continue
            out.append(SearchItem(namespace, hit.key, doc["v"], datetime.fromtimestamp(rec.created_at, timezone.utc),
                                  datetime.fromtimestamp(float(doc["u"]), timezone.utc), score=hit.score))
        return out[op.offset : wanted]
