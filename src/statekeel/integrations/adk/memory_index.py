"""Semantic recall for :class:`~.memory_service.StatekeelMemoryService` on statekeel memory.

With ``StatekeelMemoryService(store, semantic=True)`` each remembered event is also a
long-term memory (:mod:`statekeel.features.memory`) in the namespace ``("adk", app, user)``,
keyed by the event id and tagged with the user as data subject (``store.erase(user)`` erases
them), and ``search_memory`` ranks them by hybrid search — full text and
vectors fused by reciprocal rank — so a query finds events that say the same thing in other
words. The default (``semantic=False``) keeps ADK's keyword matching, as its
``InMemoryMemoryService`` does: only events sharing a word with the query.
"""

from __future__ import annotations

from typing import Any

from ...core import layout
from ...store import Store

__all__ = ["recall", "remember"]


def _namespace(app_name: str, user_id: str) -> tuple[str, str, str]:
    return ("adk", app_name, user_id)


def _text(event: dict[str, Any]) -> str:
    return " ".join(p.get("text") or "" for p in event["content"].get("parts", [])).strip()


def remember(store: Store, app_name: str, user_id: str, events: list[dict[str, Any]]) -> None:
    """Index ``events`` (ADK event dicts, as the service stores them) for semantic recall."""
    items = [{"key": e["id"], "value": e, "text": _text(e)} for e in events if _text(e)]
    if items:
        namespace = _namespace(app_name, user_id)
        store.bind_subject(layout.memory_prefix(namespace).rstrip("/"), user_id)  # store.erase(user) erases them
        store.memory(namespace, dedup=False).put_many(items)


def recall(store: Store, app_name: str, user_id: str, query: str, limit: int) -> list[dict[str, Any]]:
    """The remembered events best matching ``query``, best first."""
    hits = store.memory(_namespace(app_name, user_id), dedup=False).search(query, limit=limit)
    return [h.value for h in hits if isinstance(h.value, dict)]
