"""Long-term memory with hybrid search: ``store.memory(("user", "u-7", "facts"))``.

    mem = store.memory(("user", "u-7"))
    mem.put("tz", {"tz": "Europe/Paris"}, text="the user lives in Paris", metadata={"kind": "fact"})
    for hit in mem.search("where does the user live", limit=5):
        print(hit.score, hit.text, hit.matched)

See docs/memory.md: what is stored, how search ranks, what stays searchable when encrypted.
"""

from __future__ import annotations

from .embedding import DEFAULT, Embedder, Embedding, resolve_embedder
from .items import MemoryHit, MemoryItem
from .memory import Memory, SearchMode, list_namespaces

__all__ = [
    "DEFAULT", "Embedder", "Embedding", "Memory", "MemoryHit", "MemoryItem", "SearchMode", "list_namespaces",
    "resolve_embedder",
]
