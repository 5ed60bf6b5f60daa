"""The Store: one handle on a backend, from which every feature is reached."""

from __future__ import annotations

import os
from collections import Counter
from types import TracebackType
from typing import Any

from .backends import open_backend
from .backends.memory import MemoryBackend
from .codec import DEFAULT_MAX_RECORD_BYTES, Codec, Transform
from .features import sessions as _sessions
from .features._duration import Duration, maybe_seconds
from .features.sessions import Session
from .features.state import Scope, StateView, parse_scope
from .models import Page, SessionInfo, SessionStatus
from .protocol import Backend

__all__ = ["Store", "open", "DEFAULT_URL"]

DEFAULT_URL = "sqlite:///.statekeel/state.db"


class Store:
    """Durable agent state on one backend. Use :func:`statekeel.open` to get one."""

    def __init__(self, backend: Backend, codec: Codec | None = None) -> None:
        self.backend = backend
        self.codec = codec or Codec()
        self.stats: Counter[str] = Counter()
        """Counters such as ``cas_retries`` (compare-and-set conflicts retried by update)."""
        self._temp_backend = MemoryBackend()

    @property
    def url(self) -> str:
        """The backend URL, password removed."""
        return self.backend.url

    def __repr__(self) -> str:
        return f"<Store {self.url}>"

    # -- sessions ------------------------------------------------------------
    def session(self, session_id: str, *, user: str | None = None, ttl: Duration | None = None) -> Session:
        """Get or create session ``session_id``; ``ttl`` makes it expire after inactivity."""
        return _sessions.open_session(self, session_id, user, ttl)

    def sessions(
        self,
        *,
        status: SessionStatus | None = None,
        user: str | None = None,
        stale_after: Duration | None = None,
        after: str | None = None,
        limit: int = 50,
    ) -> Page[SessionInfo]:
        """A page of sessions in id order; ``stale_after`` keeps active ones silent that long."""
        items, nxt = _sessions.list_sessions(
            self, status=status, user=user, stale_after=maybe_seconds(stale_after, "stale_after"),
            after=after, limit=limit,
        )
        return Page(items, nxt)

    def mark_stale_crashed(self, after: Duration) -> list[SessionInfo]:
        """Mark every active session silent for ``after`` as crashed; return them."""
        secs = maybe_seconds(after, "after")
        stale = list(_sessions.iter_sessions(self, status="active", stale_after=secs))
        return [_sessions.set_status(self, s.id, "crashed") for s in stale]

    # -- state ---------------------------------------------------------------
    def scope(self, scope: str | Scope) -> StateView:
        """State of ``'app'``, ``'user:<id>'``, ``'session:<id>'`` or ``'temp'``."""
        parsed = parse_scope(scope)
        if parsed.kind == "temp":
            return StateView(self, parsed, self._temp_backend)
        if parsed.kind == "session":
            return self.session(parsed.id).state
        return StateView(self, parsed)

    @property
    def app(self) -> StateView:
        """State shared by the whole application."""
        return self.scope("app")

    def user(self, user_id: str) -> StateView:
        """State of one user, shared by all their sessions."""
        return self.scope(Scope("user", user_id))

    @property
    def temp(self) -> StateView:
        """Scratch state of this process only; never written to the backend."""
        return self.scope("temp")

    # -- housekeeping --------------------------------------------------------
    def purge_expired(self, *, batch: int = 1000) -> int:
        """Delete expired data in batches of ``batch``; return how much went."""
        total = 0
        while n := self.backend.purge_expired(limit=batch):
            total += n
        return total

    def close(self) -> None:
        """Close the backend. Idempotent."""
        self.backend.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def open(  # noqa: A001 - mirrors the builtin on purpose: statekeel.open(url)
    url: str | None = None,
    *,
    migrate: bool = True,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    compress: str | None = None,
    transforms: list[Transform] | None = None,
    **backend_options: Any,
) -> Store:
    """Open a store. No URL: ``$STATEKEEL_URL``, else SQLite under ``./.statekeel/``.

    ``migrate=False`` opens without touching the schema (for read-only roles and
    ``statekeel migrate --check``).
    """
    url = url or os.environ.get("STATEKEEL_URL") or DEFAULT_URL
    backend = open_backend(url, migrate=migrate, **backend_options)
    codec = Codec(max_record_bytes=max_record_bytes, compress=compress, transforms=transforms)
    return Store(backend, codec)
