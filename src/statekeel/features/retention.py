"""Retention: per-session caps (messages, bytes, checkpoints kept) and store-wide ``gc``.

Caps are set per session (``store.session(id, retention=Retention(...))`` or
``session.set_retention(...)``, kept in the session's record) or as store
defaults (``store.set_retention(...)``, the record ``statekeel/retention``); a
session's own cap wins field by field. They are *applied* by
:func:`apply_retention` (``session.apply_retention()``) and store-wide by
:func:`gc` (``store.gc()``, ``statekeel gc``), never on the write path, so a
turn costs the same with or without caps:

* ``messages=N`` keeps the newest N visible messages (a trim, see :mod:`.lifecycle`);
* ``bytes=B`` keeps the newest messages whose stored bytes total at most B;
* ``checkpoints=K`` keeps the newest K checkpoints (pruned as ``prune_checkpoints``
  does: what is kept stays restorable).

``gc`` then deletes expired data (deleted sessions included) with
``purge_expired`` and, on SQLite, folds the write-ahead log into the file. Its
writes are maintenance: they neither heartbeat a session nor renew its TTL.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from typing import Any

from ..core import Core, SessionCore, layout
from ..core.validate import check_int, stored_seconds
from ..errors import ConflictError, InvalidInputError, NotFoundError
from ..protocol import Delete, Put, keys
from ..protocol.capabilities import SupportsWalCheckpoint
from . import checkpoint_prune
from .lifecycle import keep_last_cut, trim_before
from .maintenance import run_participants
from .session_index import put_meta

__all__ = [
    "GcReport", "Retention", "apply_retention", "count_sessions", "gc", "set_session_retention",
    "set_store_retention", "store_retention",
]

_PAGE = 500


@dataclass(frozen=True, slots=True)
class Retention:
    """Caps on what one session keeps; None = no cap."""

    messages: int | None = None
    """Keep the newest this many messages."""
    bytes: int | None = None
    """Keep the newest messages whose stored (encoded) bytes total at most this."""
    checkpoints: int | None = None
    """Keep the newest this many checkpoints."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                check_int(value, f"Retention({f.name}=)", minimum=1 if f.name == "bytes" else 0)

    def over(self, defaults: Retention) -> Retention:
        """These caps, each missing one taken from ``defaults``."""
        return Retention(*(getattr(self, f.name) if getattr(self, f.name) is not None else getattr(defaults, f.name)
                           for f in fields(self)))

    def to_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    @classmethod
    def of(cls, body: Any) -> Retention:
        """From a stored dict (unknown or bad fields, written by other versions, are ignored)."""
        if not isinstance(body, dict):
            return cls()
        least = {"messages": 0, "bytes": 1, "checkpoints": 0}
        return cls(**{k: v for k, v in body.items() if k in least and type(v) is int and v >= least[k]})


def _check(retention: Any) -> Retention:
    if not isinstance(retention, Retention):
        raise InvalidInputError(
            f"retention= takes statekeel.Retention(messages=, bytes=, checkpoints=), got {type(retention).__name__}"
        )
    return retention


# -- where caps are kept ------------------------------------------------------------------
def set_store_retention(core: Core, retention: Retention | None) -> None:
    """The store's default caps (None: none)."""
    key = layout.RETENTION_KEY
    if retention is None:
        core.backend.apply([Delete(key)])
        return
    data, codec = core.codec.encode(_check(retention).to_dict(), "store retention", key)
    core.backend.apply([Put(key, data, codec)])


def store_retention(core: Core) -> Retention:
    rec = core.backend.get(layout.RETENTION_KEY)
    return Retention() if rec is None else Retention.of(core.codec.decode(rec.data, rec.codec, rec.key))


def set_session_retention(core: Core, session_id: str, retention: Retention | None) -> None:
    """Keep ``retention`` in the session's record (None: the store defaults only)."""
    wanted = None if retention is None else _check(retention).to_dict()
    for _ in range(100):
        rec = core.backend.get(layout.session_meta_key(session_id))
        if rec is None:
            raise NotFoundError(f"no session {session_id!r}; open it with store.session(id) first")
        body = dict(core.codec.decode(rec.data, rec.codec, rec.key))
        if body.get("retention") == wanted:
            return
        body["retention"] = wanted
        try:
            put_meta(core, session_id, body, rec.version, rec.expires_at)
            return
        except ConflictError:
            continue
    raise ConflictError(layout.session_meta_key(session_id), None, None)


# -- applying them ------------------------------------------------------------------------
def apply_retention(core: Core, session_id: str, defaults: Retention | None = None) -> tuple[int, int]:
    """Apply a session's caps now; returns (messages dropped, checkpoints dropped)."""
    rec = core.backend.get(layout.session_meta_key(session_id))
    if rec is None:
        return 0, 0
    body = core.codec.decode(rec.data, rec.codec, rec.key)
    caps = Retention.of(body.get("retention")).over(defaults if defaults is not None else store_retention(core))
    sc = SessionCore(core, session_id, body.get("user"), stored_seconds(body.get("ttl")), rec.expires_at)
    sc.activity = False  # housekeeping is not the agent being alive
    cuts = [c for c in (None if caps.messages is None else keep_last_cut(sc, caps.messages),
                        None if caps.bytes is None else _bytes_cut(sc, caps.bytes)) if c is not None]
    messages = trim_before(sc, max(cuts)) if cuts else 0
    checkpoints = 0
    if caps.checkpoints is not None:
        checkpoints = checkpoint_prune.prune(sc, keep_last=caps.checkpoints)
    return messages, checkpoints


def _bytes_cut(sc: SessionCore, budget: int) -> int | None:
    """The smallest ``before`` keeping the newest entries within ``budget`` stored bytes."""
    info = sc.backend.log_info(sc.keys.history)
    if info is None:
        return None
    total, stop = 0, info.last_seq + 1
    while stop > info.first_seq:
        page = sc.backend.read(sc.keys.history, start=info.first_seq, stop=stop, limit=_PAGE, reverse=True)
        if not page:
            return None
        for e in reversed(page):
            total += len(e.data)
            if total > budget:
                return e.seq + 1
        stop = page[0].seq
    return None


@dataclass
class GcReport:
    """What one ``gc`` did."""

    sessions: int = 0
    """Sessions looked at."""
    messages_dropped: int = 0
    checkpoints_dropped: int = 0
    purged: int = 0
    """Expired records and logs deleted (deleted and expired sessions among them)."""
    seconds: float = 0.0
    participants: dict[str, int] = field(default_factory=dict)
    """What each maintenance participant removed (:mod:`.maintenance`), e.g. ``{"langgraph": 12}``:
    checkpoints of LangGraph threads beyond ``Retention(checkpoints=K)``."""


def _session_ids(core: Core) -> Iterator[str]:
    after: str | None = None
    while page := core.backend.scan(layout.SESSION_INDEX_PREFIX, after=after, limit=_PAGE):
        yield from (keys.split(r.key)[-1] for r in page)
        after = page[-1].key


def count_sessions(core: Core) -> int:
    """How many sessions the listing holds (for a progress bar)."""
    return sum(1 for _ in _session_ids(core))


def gc(core: Core, progress: Callable[[str], None] | None = None) -> GcReport:
    """Apply every session's caps and the maintenance participants' (LangGraph threads), delete
    expired data, fold the SQLite WAL into the file."""
    t0 = time.perf_counter()
    report = GcReport()
    defaults = store_retention(core)
    for sid in _session_ids(core):
        messages, checkpoints = apply_retention(core, sid, defaults)
        report.sessions += 1
        report.messages_dropped += messages
        report.checkpoints_dropped += checkpoints
        if progress is not None:
            progress(sid)
    report.participants = run_participants(core)
    report.purged = core.purge_expired()
    if isinstance(core.backend, SupportsWalCheckpoint):
        core.backend.checkpoint_wal()
    report.seconds = time.perf_counter() - t0
    return report

