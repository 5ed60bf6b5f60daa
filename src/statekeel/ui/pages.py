"""The inspector's store-wide pages: overview, runs, event streams, the erasure log.

Public API first (``store.runs``, ``run_info``, ``store.events(...)``, consumers); what
the API has no listing for yet — a stream's consumer names, step results and supplied
inputs, erasure records, record counts — is read with ``store.backend.scan`` at the key
layout of :mod:`statekeel.core.layout` and decoded with ``store.codec`` exactly as the
features do, never by looking at encryption.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from typing import Any

from ..backends import parse
from ..core import layout
from ..errors import InvalidInputError
from ..features.events import Event, list_streams
from ..features.run_records import RUN_STATUSES, RunInfo, StepInfo, run_info
from ..models import SESSION_STATUSES
from ..protocol import keys
from ..store import Store
from ._json import iso
from .sessions import page_limit

__all__ = [
    "COUNT_CAP", "count_records", "decisions_page", "erasures", "overview", "run_detail", "runs_page",
    "stream_detail", "streams_page",
]

COUNT_CAP = 1_000_000
"""Counting stops here (the overview then says "1000000+"): a count must not stall the page."""

PREVIEW_EVENTS = 1000
"""The projection preview folds at most the newest this many events."""


def overview(store: Store, *, locked: str | None, writes: bool, can_delete: bool) -> dict[str, Any]:
    """Backend, schema version, encryption, sizes; counts come from :func:`count_records`."""
    status = store.backend.migrate(check=True)
    return {
        "url": store.url, "backend": type(store.backend).__name__, "scheme": parse(store.url).scheme,
        "schema": {"current": status.current, "target": status.target, "up_to_date": status.up_to_date},
        "encryption": "locked" if locked else ("on" if store.keyring is not None else "off"),
        "locked": locked, "size": _size(store.url), "writes": writes, "can_delete": can_delete,
        "session_statuses": list(SESSION_STATUSES), "run_statuses": list(RUN_STATUSES),
        "memories": True,
    }


def _size(url: str) -> dict[str, int] | None:
    """Bytes on disk of a SQLite file (with its WAL) or a files-backend directory; None elsewhere."""
    parsed = parse(url)
    if parsed.scheme == "sqlite":
        path = parsed.sqlite_path()
        files = [p for p in (path, path + "-wal", path + "-shm") if path != ":memory:" and os.path.exists(p)]
        return {"bytes": sum(os.path.getsize(p) for p in files)}
    if parsed.scheme == "file":
        total = 0
        for root, _dirs, names in os.walk(url.split("://", 1)[1] or "."):
            total += sum(os.path.getsize(os.path.join(root, n)) for n in names)
        return {"bytes": total}
    return None


def _count(store: Store, prefix: str) -> tuple[int, bool]:
    """Records under ``prefix``, up to COUNT_CAP (keys only matter: read beneath encryption and the
    chain, so a store opened without its key is counted too; chain heads are not records)."""
    n, after = 0, None
    while n < COUNT_CAP and (recs := store.storage.scan(prefix, after=after, limit=5000)):
        n += sum(not layout.is_chain_head(r.key) for r in recs)
        after = recs[-1].key
    return n, n >= COUNT_CAP


def count_records(store: Store) -> dict[str, Any]:
    """Sessions, runs, open decisions, streams and erasures: one key scan each, capped."""
    out: dict[str, Any] = {}
    for name, prefix in (
        ("sessions", layout.SESSION_INDEX_PREFIX), ("runs", layout.RUN_INDEX_PREFIX),
        ("open_decisions", layout.DECISION_INDEX_PREFIX), ("erasures", layout.ERASURES_PREFIX),
    ):
        n, capped = _count(store, prefix)
        out[name] = f"{n}+" if capped else n
    out["streams"] = len(list_streams(store, limit=1000))
    return out


# -- runs -------------------------------------------------------------------------------
def _status(text: str | None) -> Any:
    if text and text not in RUN_STATUSES:
        raise InvalidInputError(f"status must be one of {', '.join(RUN_STATUSES)}, got {text!r}")
    return text or None


def run_dict(r: RunInfo) -> dict[str, Any]:
    return {
        "id": r.id, "status": r.status, "created_at": iso(r.created_at), "updated_at": iso(r.updated_at),
        "waiting_for": r.waiting_for, "prompt": r.prompt, "error": r.error,
        "steps_completed": r.steps_completed, "last_step": r.last_step,
    }


def runs_page(store: Store, params: dict[str, str]) -> dict[str, Any]:
    page = store.runs(status=_status(params.get("status")), after=params.get("after") or None,
                      limit=page_limit(params.get("limit")))
    return {"items": [run_dict(r) for r in page], "next": page.next}


def _step_dict(s: StepInfo, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": s.name, "kind": s.kind, "status": s.status, "attempts": s.attempts,
        "started_at": iso(s.started_at), "finished_at": iso(s.finished_at), "duration": s.duration,
        "error": s.error, "history": list(s.history), "result": body.get("result"), "prompt": body.get("prompt"),
    }


def _decoded(store: Store, prefix: str) -> dict[str, Any]:
    """Every record under ``prefix`` decoded, by its last key component."""
    out: dict[str, Any] = {}
    after = None
    while recs := store.backend.scan(prefix, after=after, limit=500):
        for rec in recs:
            out[keys.unescape(rec.key[len(prefix):])] = store.codec.decode(rec.data, rec.codec, rec.key)
        after = recs[-1].key
    return out


def run_detail(store: Store, run_id: str) -> dict[str, Any]:
    """A run with every step: attempts, timings, results, and the inputs supplied to waits."""
    info = run_info(store, run_id)
    bodies = _decoded(store, layout.run_steps_prefix(run_id))
    inputs = _decoded(store, layout.run_inputs_prefix(run_id))
    return {
        **run_dict(info), "steps": [_step_dict(s, bodies.get(s.name, {})) for s in info.steps],
        "inputs": inputs,
    }


# -- decisions --------------------------------------------------------------------------
def decisions_page(store: Store, params: dict[str, str]) -> dict[str, Any]:
    """Decisions across sessions in (session, time) order; ``incomplete=1``: what recovery needs."""
    page = store.decisions(
        incomplete=params.get("incomplete") in ("1", "true"), session=params.get("session") or None,
        after=params.get("after") or None, limit=page_limit(params.get("limit")),
    )
    items = [
        {"id": d.id, "session": d.session, "decision": d.decision, "rationale": d.rationale, "action": d.action,
         "status": d.status, "outcome": d.outcome, "error": d.error, "incomplete": d.incomplete,
         "created_at": iso(d.created_at), "resolved_at": iso(d.resolved_at), "resolved_by": d.resolved_by}
        for d in page
    ]
    return {"items": items, "next": page.next}


# -- events -----------------------------------------------------------------------------
def streams_page(store: Store, params: dict[str, str]) -> dict[str, Any]:
    limit = page_limit(params.get("limit"), 100)
    names = list_streams(store, after=params.get("after") or None, limit=limit)
    items = []
    for name in names:
        stream = store.events(name)
        items.append({"name": name, "last_seq": stream.last_seq, "consumers": len(_consumer_names(store, name))})
    return {"items": items, "next": names[-1] if len(names) == limit else None}


def _consumer_names(store: Store, stream: str) -> list[str]:
    prefix = layout.consumers_prefix(stream)
    out: list[str] = []
    after = None
    while recs := store.backend.scan(prefix, after=after, limit=500):
        out += [keys.unescape(r.key[len(prefix):]) for r in recs]
        after = recs[-1].key
    return out


def event_dict(e: Event) -> dict[str, Any]:
    return {"seq": e.seq, "type": e.type, "time": iso(e.time), "agent": e.agent, "data": e.data}


def stream_detail(store: Store, name: str, params: dict[str, str]) -> dict[str, Any]:
    """A page of events (newest first by default), consumers with lag, and a projection preview."""
    stream = store.events(name)
    limit, last = page_limit(params.get("limit"), 100), stream.last_seq
    before = int(params["before"]) if params.get("before", "").isdigit() else last + 1
    start = max(1, before - limit)
    events = stream.read(start, stop=before, limit=limit) if before > 1 else []
    consumers = [
        {"name": c, "position": (pos := stream.consumer(c).position), "lag": max(0, last - pos)}
        for c in _consumer_names(store, name)
    ]
    return {
        "name": name, "last_seq": last, "events": [event_dict(e) for e in reversed(events)],
        "older": start if start > 1 else None, "consumers": consumers, "projection": _preview(stream, last),
    }


def _preview(stream: Any, last: int) -> dict[str, Any]:
    """A generic fold of the newest events: count and latest payload per event type."""
    events = stream.read(max(1, last - PREVIEW_EVENTS + 1), limit=PREVIEW_EVENTS) if last else []
    counts = Counter(e.type for e in events)
    latest = {e.type: {"seq": e.seq, "data": e.data} for e in events}
    return {
        "folded": len(events), "from_seq": events[0].seq if events else None, "to_seq": last,
        "by_type": [{"type": t, "count": n, "latest": latest[t]} for t, n in sorted(counts.items())],
    }


# -- erasures --------------------------------------------------------------------
def erasures(store: Store, params: dict[str, str]) -> dict[str, Any]:
    """Erasure records: when, how many partitions, whether keys were destroyed (never who)."""
    limit = page_limit(params.get("limit"), 100)
    prefix = layout.ERASURES_PREFIX
    after = prefix + keys.escape(params["after"]) if params.get("after") else None
    recs = store.backend.scan(prefix, after=after, limit=limit)
    items = []
    for rec in recs:
        body = json.loads(rec.data)  # stored in clear by design (layout.stored_in_clear), even when encrypted
        items.append({"id": keys.unescape(rec.key[len(prefix):]), **body})
    nxt = items[-1]["id"] if len(recs) == limit else None  # keyset cursor: the last id in key order
    items.sort(key=lambda i: i.get("at") or 0, reverse=True)  # newest first within the page
    return {"items": items, "next": nxt}
