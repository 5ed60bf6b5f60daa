"""The inspector's memories page: long-term memory namespaces, their items, a text search, and
a session's working set — all read-only.

Memory handles are opened with ``embedder=None``: the inspector must not load an embedding
model to look at a store, so search here is full-text (``mode="text"``). Namespaces travel in
the query as a JSON array (``ns=["user","u-7"]``): their parts may hold any character.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ..errors import InvalidInputError
from ..store import Store
from ._json import iso
from .sessions import page_limit, read_session

__all__ = ["memories"]

WORKING_SET_BUDGET = 4000
"""Tokens of the working set shown when the request does not say (``budget=``)."""


def _namespace(text: str | None) -> tuple[str, ...] | None:
    if not text:
        return None
    try:
        parts = json.loads(text)
    except json.JSONDecodeError:
        parts = None
    if not (isinstance(parts, list) and parts and all(isinstance(p, str) for p in parts)):
        raise InvalidInputError(f'ns must be a JSON array of strings, e.g. ["user","u-7"], got {text!r}')
    return tuple(parts)


def _budget(text: str | None) -> int:
    if not text:
        return WORKING_SET_BUDGET
    if not text.isdigit() or not 100 <= int(text) <= 200_000:
        raise InvalidInputError(f"budget must be a whole number of tokens from 100 to 200000, got {text!r}")
    return int(text)


def _text_search(store: Store, user: str | None) -> Callable[[str, int], list[Any]] | bool:
    """The working set's memory search, full-text only (the default would load an embedder)."""
    if user is None:
        return False

    def search(query: str, limit: int) -> list[Any]:
        return list(store.memory(("user", user), embedder=None).search(query, limit=limit, mode="text"))
    return search


def memories(store: Store, params: dict[str, str]) -> dict[str, Any]:
    """Namespaces; with ``ns``, that namespace's items (or ``q`` search hits); with ``id``, the
    session's working set rendered within ``budget`` tokens."""
    ns, query, limit = _namespace(params.get("ns")), params.get("q") or "", page_limit(params.get("limit"))
    out: dict[str, Any] = {
        "available": True, "namespaces": [list(n) for n in store.memory_namespaces(limit=200)],
        "ns": list(ns) if ns else None, "q": query, "items": [], "working_set": None,
    }
    if ns is not None:
        memory = store.memory(ns, embedder=None)
        if query:
            out["items"] = [{"key": h.key, "namespace": list(h.namespace), "text": h.text, "value": h.value,
                             "metadata": h.metadata, "score": round(h.score, 4)}
                            for h in memory.search(query, limit=limit, mode="text")]
        else:
            out["items"] = [{"key": i.key, "namespace": list(i.namespace), "text": i.text, "value": i.value,
                             "metadata": i.metadata, "updated_at": iso(i.updated_at)}
                            for i in memory.items(limit=limit)]
    if params.get("id"):
        session_id, budget = params["id"], _budget(params.get("budget"))
        s = read_session(store, session_id)
        ws = s.context(budget, memory=_text_search(store, s.user))
        out["working_set"] = {"session": session_id, "budget": budget, "text": ws.render()}
    return out
