"""``StatekeelMemoryService``: ADK's ``BaseMemoryService`` with keyword search, over any statekeel store.

The memory of ``(app, user)`` is one statekeel session, ``adkmem/<app>/<user>``, owned by
the user (erasing the user erases it): each remembered event is one history message.
A session added again adds only the events not remembered yet (their ids are kept in the
memory session's state, written in the same batch). ``search_memory`` scores events by
the query words they contain, as ADK's ``InMemoryMemoryService`` does; with
``semantic=True`` it ranks them by statekeel's hybrid memory search (:mod:`.memory_index`).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any, NamedTuple
from urllib.parse import quote

from google.adk.memory import _utils
from google.adk.memory.base_memory_service import BaseMemoryService, SearchMemoryResponse
from google.adk.memory.memory_entry import MemoryEntry
from google.adk.sessions.session import Session
from google.genai import types

from ...aio import AsyncStore
from ...aio._worker import Worker
from ...core.validate import check_text
from ...errors import ConflictError, InvalidInputError
from ...models import Item
from ...store import Store
from .memory_index import recall, remember

__all__ = ["StatekeelMemoryService"]

MAX_RESULTS = 10
"""At most this many memories per search (ADK's in-memory service returns ten too)."""


def memory_session_id(app_name: str, user_id: str) -> str:
    """The statekeel session holding the memory of ``user_id`` in ``app_name``."""
    return f"adkmem/{quote(app_name, safe='')}/{quote(user_id, safe='')}"


class StatekeelMemoryService(BaseMemoryService):
    """Remembered events of each user, searchable by keyword, in a statekeel store the caller owns."""

    def __init__(self, store: Store | AsyncStore, *, workers: int = 1, semantic: bool = False) -> None:
        self._semantic = semantic  # hybrid recall on statekeel memory: .memory_index
        self._async: AsyncStore | None = None
        """Given an AsyncStore: keyword memory is read and written through its API (natively on
        PostgreSQL and Redis, on its worker elsewhere)."""
        if isinstance(store, AsyncStore):
            self._store, self._worker, self._owns_worker = store.sync, store._worker, False
            self._async = store
        elif isinstance(store, Store):
            self._store, self._worker, self._owns_worker = store, Worker(workers), True
        else:
            raise InvalidInputError(f"store must be a statekeel.Store or AsyncStore, got {type(store).__name__}")

    async def close(self) -> None:
        """Stop the worker (the store stays open: the caller owns it)."""
        if self._owns_worker:
            self._worker.shutdown()

    async def add_session_to_memory(self, session: Session) -> None:
        """Remember the session's events that have text and are not remembered yet."""
        events = [
            {"id": e.id, "session_id": session.id, "author": e.author, "timestamp": e.timestamp,
             "content": e.content.model_dump(mode="json", exclude_none=True)}
            for e in session.events
            if e.content and e.content.parts and any(p.text for p in e.content.parts)
        ]
        sid = memory_session_id(session.app_name, session.user_id)
        if self._async is not None:
            await _add_async(self._async, sid, session.user_id, session.id, events)
        else:
            await self._worker.run(lambda: self._add(sid, session.user_id, session.id, events))
        if self._semantic:
            await self._worker.run(lambda: remember(self._store, session.app_name, session.user_id, events))

    def _add(self, sid: str, user: str, session_id: str, events: list[dict[str, Any]]) -> None:
        s = self._store.session(sid, user=user)
        key = f"seen/{session_id}"
        for _ in range(20):  # compare-and-set on the seen ids: concurrent adds do not duplicate
            unseen = _Unseen.of(s.state.item(key), events)
            if unseen is None:
                return
            try:
                with s.batch() as b:
                    b.append(*unseen.events)
                    b.put(key, unseen.ids, expect=unseen.expect)
                return
            except ConflictError:
                continue
        raise ConflictError(key, None, None)

    async def search_memory(self, *, app_name: str, user_id: str, query: str) -> SearchMemoryResponse:
        """The remembered events sharing the most words with ``query`` (at most :data:`MAX_RESULTS`)."""
        check_text(query, "query")  # a lone surrogate would match nothing, silently
        sid = memory_session_id(app_name, user_id)
        if self._semantic:
            found = await self._worker.run(lambda: recall(self._store, app_name, user_id, query, MAX_RESULTS))
            return SearchMemoryResponse(memories=[_entry(e) for e in found])

        def read() -> list[Any]:
            s = self._store.find_session(sid)
            return [] if s is None else s.history()

        if self._async is not None:
            found_session = await self._async.find_session(sid)
            stored = [] if found_session is None else await found_session.history()
        else:
            stored = await self._worker.run(read)
        wanted = _words(query)
        scored: list[tuple[int, int, dict[str, Any]]] = []
        for n, e in enumerate(stored):
            text = " ".join(p.get("text") or "" for p in e["content"].get("parts", []))
            hits = len(wanted & _words(text))
            if hits:
                scored.append((hits, n, e))
        scored.sort(key=lambda x: (-x[0], -x[1]))  # most words first, then the newest
        return SearchMemoryResponse(memories=[_entry(e) for _, _, e in scored[:MAX_RESULTS]])


class _Unseen(NamedTuple):
    """What an add writes: the events not remembered yet, every remembered id after it, and the
    version of the seen ids it read (None: there were none) for its compare-and-set."""

    events: list[dict[str, Any]]
    ids: list[str]
    expect: int | None

    @staticmethod
    def of(seen: Item | None, events: list[dict[str, Any]]) -> _Unseen | None:
        """None when every event is remembered already."""
        known = set() if seen is None else set(seen.value)
        new = [e for e in events if e["id"] not in known]
        if not new:
            return None
        return _Unseen(new, sorted(known | {e["id"] for e in new}), None if seen is None else seen.version)


async def _add_async(store: AsyncStore, sid: str, user: str, session_id: str, events: list[dict[str, Any]]) -> None:
    """``_add`` through the asyncio API (its calls native on PostgreSQL and Redis): the same
    compare-and-set on the session's seen ids."""
    s = await store.session(sid, user=user)
    key = f"seen/{session_id}"
    for _ in range(20):
        unseen = _Unseen.of(await s.state.item(key), events)
        if unseen is None:
            return
        try:
            async with s.batch() as b:
                b.append(*unseen.events)
                b.put(key, unseen.ids, expect=unseen.expect)
            return
        except ConflictError:
            continue
    raise ConflictError(key, None, None)


def _entry(e: dict[str, Any]) -> MemoryEntry:
    return MemoryEntry(id=e["id"], author=e.get("author"), content=types.Content.model_validate(e["content"]),
                       timestamp=_utils.format_timestamp(e["timestamp"]))


def _words(text: str) -> set[str]:
    """Lower-case word tokens of ``text`` (Unicode-aware, NFC-normalised)."""
    return {w.lower() for w in re.findall(r"\w+", unicodedata.normalize("NFC", text))}
