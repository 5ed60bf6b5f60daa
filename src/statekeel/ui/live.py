"""Live updates of a session page by server-sent events (``GET /api/events?session=…``).

The store has no change feed every backend can offer, so the server polls it — cheaply, and
only while a page listens: every ``INTERVAL`` seconds it reads a *signature* of the session
(history length and last seq, the meta record's status and update time, state and decision
versions, checkpoint count) and pushes a ``change`` event only when the signature differs.
The page then re-renders; polling every 2 s stays as its fallback when SSE fails.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from typing import Any

from ..errors import NotFoundError
from ..store import Store
from .sessions import read_session

__all__ = ["INTERVAL", "KEEPALIVE", "MAX_SECONDS", "session_signature", "stream"]

INTERVAL = 0.5
"""Seconds between two looks at the store, per connected page."""
KEEPALIVE = 15.0
"""Seconds of silence after which a comment line is sent, so proxies keep the stream open."""
MAX_SECONDS = 600.0
"""A stream ends after this long; EventSource reconnects by itself (and a forgotten tab
does not hold a thread for ever)."""
_SIDE_LIMIT = 200


def session_signature(store: Store, session_id: str) -> str:
    """A short digest that changes whenever the session's timeline would.

    Reads what the timeline shows, but only versions and counts: a history append moves
    ``len``/updated_at, a state write a version, a resolved decision its status."""
    s = read_session(store, session_id)
    info = s.info()
    parts: list[Any] = [len(s), info.status, str(info.updated_at), len(s.checkpoints())]
    parts.append([(i.key, i.version) for i in s.state.items(limit=_SIDE_LIMIT)])
    parts.append([(d.id, d.status) for d in store.decisions(session=session_id, limit=_SIDE_LIMIT)])
    last = s.messages(1)
    parts.append(last[0].seq if last else 0)
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:16]


def _frame(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def stream(
    look: Callable[[], str], write: Callable[[bytes], None], stopping: threading.Event,
    *, interval: float = INTERVAL, max_seconds: float = MAX_SECONDS,
) -> None:
    """Send ``ready``, then ``change`` whenever ``look()`` returns a new signature, until the
    client goes away (``write`` raises OSError), the server stops, or ``max_seconds`` pass.

    A session deleted meanwhile ends the stream with a ``gone`` event."""
    last = look()
    write(_frame("ready", {"signature": last}))
    started = quiet_since = time.monotonic()
    while not stopping.wait(interval):
        now = time.monotonic()
        if now - started > max_seconds:
            return
        try:
            current = look()
        except NotFoundError as exc:
            write(_frame("gone", {"message": str(exc)}))
            return
        if current != last:
            last, quiet_since = current, now
            write(_frame("change", {"signature": current}))
        elif now - quiet_since > KEEPALIVE:
            quiet_since = now
            write(b": still here\n\n")
