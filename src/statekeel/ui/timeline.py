"""A session's timeline, a page at a time, and the nested diff between two checkpoints.

The timeline interleaves, by time, the history (tool calls shown as such), the latest write
of every state key, decisions (incomplete ones flagged), notes and checkpoints. History is
what grows without bound, so pages are cut by history position: a page holds ``limit``
messages (``session.messages(last, stop=…)``, O(limit)) and every other entry whose time
falls between that page's first message and the first message of the newer page.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from ..errors import InvalidInputError
from ..features.sessions import Session
from ..models import Message
from ..store import Store
from ._json import iso
from .sessions import page_limit, read_session

__all__ = ["checkpoint_diff", "field_changes", "timeline"]

MAX_SIDE_ENTRIES = 5000
"""Decisions, state keys read per page at most (they do not grow with the history)."""

_EARLIEST = dt.datetime.min.replace(tzinfo=dt.timezone.utc)
_LATEST = dt.datetime.max.replace(tzinfo=dt.timezone.utc)


def _seq_param(text: str | None, what: str) -> int | None:
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise InvalidInputError(f"{what} must be a history seq (a whole number >= 1), got {text!r}")
    return int(text)


def timeline(store: Store, session_id: str, params: dict[str, str]) -> dict[str, Any]:
    """One page of the timeline, oldest first; ``before=<seq>`` pages back in history."""
    s = read_session(store, session_id)
    limit, before = page_limit(params.get("limit"), 200), _seq_param(params.get("before"), "before")
    messages = s.messages(limit, stop=before)
    older = messages[0].seq if messages and _has_older(s, messages[0].seq) else None
    low = messages[0].created_at if older is not None else _EARLIEST
    high = _boundary(s, before)
    entries = [_message_entry(m) for m in messages]
    entries += [e for e in _side_entries(store, s) if low <= e["_at"] < high]
    entries.sort(key=lambda e: (e["_at"], e.get("seq") or 0))
    return {
        "session": session_id, "entries": [_public(e) for e in entries],
        "older": older, "newest": before is None,
    }


def _has_older(s: Session, first_seq: int) -> bool:
    return bool(s.messages(1, stop=first_seq))


def _boundary(s: Session, before: int | None) -> dt.datetime:
    """The time of the first message of the newer page (everything at or after it is there)."""
    if before is None:
        return _LATEST
    first = s.messages(start=before, stop=before + 1)
    return first[0].created_at if first else _LATEST


def _public(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k != "_at"}


def _message_entry(m: Message) -> dict[str, Any]:
    value = m.value
    kind, role = "message", None
    if isinstance(value, dict):
        role = value.get("role") if isinstance(value.get("role"), str) else None
        if value.get("tool_calls"):
            kind = "tool_call"
        elif role == "tool" or value.get("type") in ("function_call_output", "tool_result"):
            kind = "tool_result"
    return {"kind": kind, "_at": m.created_at, "time": iso(m.created_at), "seq": m.seq, "role": role, "value": value}


def _side_entries(store: Store, s: Session) -> list[dict[str, Any]]:
    """Everything but the history: bounded by the session's own size, not its history."""
    out = [
        {"kind": "state", "_at": i.updated_at, "time": iso(i.updated_at), "key": i.key, "value": i.value,
         "version": i.version}
        for i in s.state.items(limit=MAX_SIDE_ENTRIES)
    ]
    out += [_decision_entry(d) for d in store.decisions(session=s.id, limit=MAX_SIDE_ENTRIES)]
    out += [
        {"kind": "note", "_at": n.written_at, "time": iso(n.written_at), "author": n.author, "value": n.value}
        for n in s.notes.all().values() if n.written_at is not None
    ]
    out += [
        {"kind": "checkpoint", "_at": c.created_at, "time": iso(c.created_at), "id": c.id, "label": c.label,
         "history_seq": c.history_seq, "keys": c.keys, "full": c.full}
        for c in s.checkpoints()
    ]
    return out


def _decision_entry(d: Any) -> dict[str, Any]:
    return {
        "kind": "decision", "_at": d.created_at, "time": iso(d.created_at), "id": d.id, "decision": d.decision,
        "rationale": d.rationale, "action": d.action, "status": d.status, "outcome": d.outcome,
        "error": d.error, "incomplete": d.incomplete, "resolved_at": iso(d.resolved_at), "resolved_by": d.resolved_by,
    }


# -- checkpoint diff ------------------------------------------------------------------
def _ref(text: str | None, what: str) -> int | str | None:
    """``7`` is checkpoint id 7; anything else is a label; empty means "now" (for ``b``)."""
    if not text:
        if what == "a":
            raise InvalidInputError("give the checkpoint to diff from as a= (an id or a label)")
        return None
    return int(text) if text.isdigit() else text


def checkpoint_diff(store: Store, session_id: str, params: dict[str, str]) -> dict[str, Any]:
    """What changed from checkpoint ``a`` to ``b`` (default: now), key by key and field by field."""
    s = read_session(store, session_id)
    a, b = _ref(params.get("a"), "a"), _ref(params.get("b"), "b")
    d = s.diff(a) if b is None else s.diff(a, b)  # type: ignore[arg-type]
    changes = [{"op": "added", "path": [k], "to": v} for k, v in d.added.items()]
    changes += [{"op": "removed", "path": [k], "from": v} for k, v in d.removed.items()]
    for key, (old, new) in d.changed.items():
        changes += field_changes([key], old, new)
    changes.sort(key=lambda c: [str(p) for p in c["path"]])
    return {
        "session": session_id, "a": params.get("a"), "b": params.get("b") or None, "changes": changes,
        "history_from": d.history_from, "history_to": d.history_to,
    }


def field_changes(path: list[Any], old: Any, new: Any) -> list[dict[str, Any]]:
    """The leaf-level changes from ``old`` to ``new``: dicts by key, lists by index."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[dict[str, Any]] = []
        for k in [*old, *(k for k in new if k not in old)]:
            if k not in new:
                out.append({"op": "removed", "path": [*path, k], "from": old[k]})
            elif k not in old:
                out.append({"op": "added", "path": [*path, k], "to": new[k]})
            else:
                out += field_changes([*path, k], old[k], new[k])
        return out
    if isinstance(old, list) and isinstance(new, list):
        out = []
        for i in range(max(len(old), len(new))):
            if i >= len(new):
                out.append({"op": "removed", "path": [*path, i], "from": old[i]})
            elif i >= len(old):
                out.append({"op": "added", "path": [*path, i], "to": new[i]})
            else:
                out += field_changes([*path, i], old[i], new[i])
        return out
    if type(old) is type(new) and old == new:
        return []
    return [{"op": "changed", "path": path, "from": old, "to": new}]
