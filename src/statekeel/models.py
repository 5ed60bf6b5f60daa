"""The typed records the public API returns."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

__all__ = ["Item", "Message", "SessionInfo", "SessionStatus", "Page", "to_datetime"]

T = TypeVar("T")
SessionStatus = Literal["active", "waiting", "completed", "crashed"]
SESSION_STATUSES: tuple[str, ...] = ("active", "waiting", "completed", "crashed")


_UTC = dt.timezone.utc
_LATEST = dt.datetime.max.replace(tzinfo=_UTC)
_EARLIEST = dt.datetime.min.replace(tzinfo=_UTC)


def to_datetime(ts: float | None) -> dt.datetime | None:
    """Epoch seconds as an aware UTC datetime (None stays None).

    Never raises: a stored time that no datetime can hold (NaN, infinity or
    1e300, written as an expiry by versions that accepted such a ttl) reads as
    None for NaN and as the latest / earliest datetime otherwise, so listings
    keep working; ``statekeel doctor`` is where damaged records are reported.
    """
    if ts is None:
        return None
    try:
        return dt.datetime.fromtimestamp(ts, _UTC)
    except (OverflowError, ValueError, OSError):
        if ts != ts:  # NaN
            return None
        return _LATEST if ts > 0 else _EARLIEST


@dataclass(frozen=True, slots=True)
class Item:
    """A stored value with its version and timestamps."""

    key: str
    """The key within its scope."""
    value: Any
    """The decoded value."""
    version: int
    """1 when created, +1 on every write; pass it as ``expect=`` for compare-and-set."""
    created_at: dt.datetime
    """When the key was first written (UTC)."""
    updated_at: dt.datetime
    """When it was last written (UTC)."""
    expires_at: dt.datetime | None
    """When it stops being readable (UTC); None = never."""


@dataclass(frozen=True, slots=True)
class Message:
    """One entry of a session's history."""

    seq: int
    """Position in the history, from 1."""
    value: Any
    """What was appended."""
    created_at: dt.datetime
    """When it was appended (UTC)."""


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """What the store knows about a session."""

    id: str
    """The session id."""
    user: str | None
    """The user the session belongs to, if given."""
    status: SessionStatus
    """active, waiting (for user input: never stale), completed or crashed."""
    created_at: dt.datetime
    """When the session was created (UTC)."""
    updated_at: dt.datetime
    """Last append, state write or heartbeat (UTC): what stale detection looks at."""
    expires_at: dt.datetime | None
    """When the session expires (UTC); None = never."""
    ttl: float | None
    """Seconds of inactivity after which it expires; None = never."""

    def is_stale(self, after: float, now: dt.datetime | None = None) -> bool:
        """True when active but silent for more than ``after`` seconds."""
        now = now or dt.datetime.now(dt.timezone.utc)
        return self.status == "active" and (now - self.updated_at).total_seconds() > after


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a listing; pass ``next`` as ``after=`` to get the following one."""

    items: Sequence[T]
    """The items on this page."""
    next: str | None
    """Cursor for the next page, or None when this was the last."""

    def __iter__(self) -> Iterator[T]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)
