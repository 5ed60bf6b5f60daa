"""The inspector's session pages: the list (search, filters, keyset pages) and one session.

Everything is read through the public API (``store.sessions``, ``store.find_session``,
``session.messages`` …), never by opening a session: ``store.session(id)`` would create a
missing one and set a crashed one active again. Listings never count: a page is one
``store.sessions(after=cursor)`` call, so the 1,000th page costs what the first does.
"""

from __future__ import annotations

from typing import Any

from ..errors import InvalidInputError, NotFoundError
from ..features._duration import seconds
from ..features.checkpoints import Checkpoint
from ..features.sessions import Session
from ..models import SESSION_STATUSES, SessionInfo, SessionStatus
from ..store import Store
from ._json import iso

__all__ = ["info_dict", "checkpoint_dict", "read_session", "session_detail", "sessions_page"]

MAX_LIMIT = 500
"""The largest page the API hands out (a browser shows a few dozen rows)."""
SCAN_LIMIT = 2000
"""Sessions one substring search reads at most: an id substring cannot use the index, so a
search stops here and answers ``more`` (with a cursor) instead of reading 100,000 sessions
on every keystroke."""


def read_session(store: Store, session_id: str) -> Session:
    """A handle on an existing session that writes nothing; NotFoundError if missing."""
    found = store.find_session(session_id)
    if found is None:
        raise NotFoundError(f"no session {session_id!r} in this store (or it expired); pick one from the sessions list")
    return found


def info_dict(info: SessionInfo) -> dict[str, Any]:
    return {
        "id": info.id, "user": info.user, "status": info.status, "created_at": iso(info.created_at),
        "updated_at": iso(info.updated_at), "expires_at": iso(info.expires_at), "ttl": info.ttl,
    }


def checkpoint_dict(cp: Checkpoint) -> dict[str, Any]:
    return {
        "id": cp.id, "label": cp.label, "created_at": iso(cp.created_at), "parent": cp.parent,
        "history_seq": cp.history_seq, "full": cp.full, "keys": cp.keys, "stored_keys": cp.stored_keys,
    }


def page_limit(text: str | None, default: int = 50) -> int:
    """``limit=`` of a request: 1 to MAX_LIMIT."""
    if not text:
        return default
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise InvalidInputError(f"limit must be a whole number from 1 to {MAX_LIMIT}, got {text!r}")
    return int(text)


def _status(text: str | None) -> SessionStatus | None:
    if not text:
        return None
    if text not in SESSION_STATUSES:
        raise InvalidInputError(f"status must be one of {', '.join(SESSION_STATUSES)}, got {text!r}")
    return text  # type: ignore[return-value]


def _stale(text: str | None) -> float | None:
    """``5m``, ``2h``, ``90s`` or plain seconds."""
    if not text:
        return None
    return seconds(float(text) if text.replace(".", "", 1).isdigit() else text, "stale (how long silent)")


def sessions_page(store: Store, params: dict[str, str]) -> dict[str, Any]:
    """One page of sessions: ``q`` (id prefix), ``has`` (id substring), ``status``, ``user``,
    ``stale``, ``after``, ``limit``. ``more`` is true when a substring search stopped at
    SCAN_LIMIT sessions read: ``next`` then continues the search where it stopped."""
    limit = page_limit(params.get("limit"))
    status, user = _status(params.get("status")), params.get("user") or None
    stale, after, prefix = _stale(params.get("stale")), params.get("after") or None, params.get("q") or ""
    needle = params.get("has") or ""
    if stale is not None and status not in (None, "active"):
        raise InvalidInputError("the stale filter only applies to active sessions; clear the status filter")
    more, scanned = False, None
    if needle:
        items, nxt, more, scanned = _substring_page(store, needle, prefix, (status, user, stale), after, limit)
    elif prefix:
        items, nxt = _prefix_page(store, prefix, (status, user, stale), after, limit)
    else:
        page = store.sessions(status=status, user=user, stale_after=stale, after=after, limit=limit)
        items, nxt = list(page), page.next
    return {"items": [info_dict(i) for i in items], "next": nxt, "more": more, "scanned": scanned}


def _substring_page(
    store: Store, needle: str, prefix: str, filters: tuple[str | None, str | None, float | None],
    after: str | None, limit: int,
) -> tuple[list[SessionInfo], str | None, bool, int]:
    """Sessions whose id contains ``needle`` (and starts with ``prefix``), reading at most
    SCAN_LIMIT index entries; status and user narrow the listing in the store itself.

    Returns (matches, cursor to continue from, whether the scan bound stopped it, entries read)."""
    status, user, stale = filters
    out: list[SessionInfo] = []
    scanned, cursor = 0, after
    if prefix and (cursor is None or cursor < prefix):
        exact = store.session_info(prefix)
        if cursor is None and exact is not None and needle in exact.id and _matches(exact, *filters):
            out.append(exact)
        cursor = prefix
    while scanned < SCAN_LIMIT:
        page = store.sessions(status=status, user=user, stale_after=stale, after=cursor,  # type: ignore[arg-type]
                              limit=min(MAX_LIMIT, SCAN_LIMIT - scanned))
        for info in page:
            scanned += 1
            if prefix and not info.id.startswith(prefix):
                return out, None, False, scanned
            if needle in info.id:
                out.append(info)
                if len(out) == limit:
                    return out, info.id, False, scanned
        if page.next is None:
            return out, None, False, scanned
        cursor = page.next
    return out, cursor, True, scanned


def _matches(info: SessionInfo, status: str | None, user: str | None, stale: float | None) -> bool:
    if status is not None and info.status != status:
        return False
    if user is not None and info.user != user:
        return False
    return stale is None or info.is_stale(stale)


def _prefix_page(
    store: Store, prefix: str, filters: tuple[str | None, str | None, float | None], after: str | None, limit: int
) -> tuple[list[SessionInfo], str | None]:
    """Sessions whose id starts with ``prefix``: the listing starts at the prefix and stops
    at the first id past it, so a search reads only the matching range of the index."""
    out: list[SessionInfo] = []
    if after is None:
        exact = store.session_info(prefix)  # ``after=prefix`` below starts just past it
        if exact is not None and _matches(exact, *filters):
            out.append(exact)
    cursor: str | None = after or prefix
    while cursor is not None and len(out) < limit:
        page = store.sessions(after=cursor, limit=max(limit, 100))
        for info in page:
            if not info.id.startswith(prefix):
                return out, None
            if _matches(info, *filters):
                out.append(info)
                if len(out) == limit:
                    return out, info.id
        cursor = page.next
    return out, None


def session_detail(store: Store, session_id: str) -> dict[str, Any]:
    """A session's record, counts, state, notes and checkpoints (the timeline is separate)."""
    s = read_session(store, session_id)
    state = [
        {"key": i.key, "value": i.value, "version": i.version, "updated_at": iso(i.updated_at)}
        for i in s.state.items(limit=200)
    ]
    return {
        **info_dict(s.info()), "messages": len(s), "state": state,
        "checkpoints": [checkpoint_dict(c) for c in s.checkpoints()],
        "hidden": [list(r) for r in s.hidden_ranges()],
    }
