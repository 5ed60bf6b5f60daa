"""The backend protocol: the few operations every backend implements.

Features (sessions, state, decisions, runs, checkpoints, events, notes) are
written once on top of these; a backend adds storage, never behaviour.

* versioned key-value records — :meth:`Backend.get`, :meth:`Backend.scan`;
* append-only logs numbered from 1 — :meth:`Backend.read`, :meth:`Backend.log_info`;
* every write goes through :meth:`Backend.apply`, an atomic batch of
  :class:`Put`, :class:`Delete`, :class:`Append`, :class:`Touch`, :class:`Expire`
  and :class:`Trim` operations: either all preconditions hold and all of it is
  durable when ``apply`` returns, or :class:`~statekeel.errors.ConflictError` is
  raised and nothing changed;
* expiry — records and logs carry ``expires_at``; expired data is never returned
  and :meth:`Backend.purge_expired` deletes it in bounded batches;
* migrations — :meth:`Backend.migrate` runs (or, with ``check=True``, only
  reports) the ordered schema migrations.

``memory`` (:mod:`statekeel.backends.memory`) is the reference implementation.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Callable, Final, Literal, Union

from . import keys
from ._slots import quick_init

__all__ = [
    "ANY",
    "KEEP",
    "Any_",
    "Keep",
    "Record",
    "Entry",
    "LogInfo",
    "Put",
    "Delete",
    "Append",
    "Touch",
    "Expire",
    "Trim",
    "Load",
    "LoadEntries",
    "Rewrite",
    "Op",
    "Backend",
    "BatchScope",
    "MigrationStatus",
    "keys",
    "op_target",
    "refreshable",
]


class Any_(enum.Enum):
    """Type of :data:`ANY`."""

    ANY = "ANY"


class Keep(enum.Enum):
    """Type of :data:`KEEP`."""

    KEEP = "KEEP"


ANY: Final = Any_.ANY
"""``expect=ANY``: write whatever version is stored (no compare-and-set)."""

KEEP: Final = Keep.KEEP
"""``expires_at=KEEP``: leave the stored expiry as it is."""

Expect = Union[int, None, Any_]
"""``None`` = must not exist; an int = must be exactly that version; ANY = no check."""

BatchScope = Literal["store", "partition"]
"""What one atomic batch may span: the whole store, or one partition."""

ExpiresAt = Union[float, None, Keep]
"""Seconds since the epoch, ``None`` = never, or KEEP = unchanged."""


@quick_init
@dataclass(frozen=True, slots=True)
class Record:
    """One versioned key-value record as the backend stores it."""

    key: str
    """Full backend key (see :mod:`statekeel.protocol.keys`)."""
    data: bytes
    """The encoded value."""
    codec: str
    """Name of the codec that encoded ``data`` (so old data stays readable)."""
    version: int
    """1 on creation, +1 on every put."""
    created_at: float
    """Seconds since the epoch when the key was first written."""
    updated_at: float
    """Seconds since the epoch of the last put or touch."""
    expires_at: float | None
    """Seconds since the epoch after which the record is gone; None = never."""


@quick_init
@dataclass(frozen=True, slots=True)
class Entry:
    """One element of an append-only log."""

    log: str
    """The log's key."""
    seq: int
    """Position in the log, from 1, without gaps."""
    data: bytes
    """The encoded value."""
    codec: str
    """Name of the codec that encoded ``data``."""
    created_at: float
    """Seconds since the epoch when it was appended."""


@quick_init
@dataclass(frozen=True, slots=True)
class LogInfo:
    """Summary of a log: its bounds and timestamps."""

    log: str
    """The log's key."""
    first_seq: int
    """Lowest sequence still stored (1 unless trimmed); ``last_seq + 1`` if empty."""
    last_seq: int
    """Highest sequence ever appended (0 if none)."""
    created_at: float
    """When the first entry was appended."""
    updated_at: float
    """When the last append (or touch) happened."""
    expires_at: float | None
    """When the whole log expires; None = never."""


@quick_init
@dataclass(frozen=True, slots=True)
class Put:
    """Write ``data`` at ``key`` if the stored version matches ``expect``."""

    key: str
    data: bytes
    codec: str
    expect: Expect = ANY
    expires_at: ExpiresAt = None


@quick_init
@dataclass(frozen=True, slots=True)
class Delete:
    """Remove ``key`` if the stored version matches ``expect``. Result: existed."""

    key: str
    expect: Expect = ANY


@quick_init
@dataclass(frozen=True, slots=True)
class Append:
    """Append ``items`` (data, codec) to ``log``. Result: the first new seq.

    ``at``: a precondition — the seq the first item must get (the log's last seq
    + 1, or 1 for a log that does not exist or has expired); another value raises
    :class:`~statekeel.errors.ConflictError` and nothing is written. Writers that
    bind a value to its position (encryption, hash chains) set it.
    """

    log: str
    items: tuple[tuple[bytes, str], ...]
    expires_at: ExpiresAt = KEEP
    at: int | None = None


@quick_init
@dataclass(frozen=True, slots=True)
class Touch:
    """Bump ``updated_at`` of a record or log (and its expiry). Result: existed.

    ``refresh``: a TTL refresh after a read — the version the reader saw. Only a live
    record still at that version and still expiring is touched; otherwise nothing
    changes and the result is False (never a conflict: a refresh that lost a race
    has nothing to do). A record rewritten since (a new version), deleted and put
    again without an expiry, or a log, is left as it is.
    """

    key: str
    expires_at: ExpiresAt = KEEP
    refresh: int | None = None


@quick_init
@dataclass(frozen=True, slots=True)
class Expire:
    """Set the expiry of every record and log under ``prefix``. Result: count."""

    prefix: str
    expires_at: float | None


@quick_init
@dataclass(frozen=True, slots=True)
class Trim:
    """Drop log entries with ``seq < before``. Result: how many were dropped."""

    log: str
    before: int


@quick_init
@dataclass(frozen=True, slots=True)
class Load:
    """Write ``record`` exactly as given — version, timestamps, expiry — with no
    check. For copy, import and restore only. Result: the record."""

    record: Record


@quick_init
@dataclass(frozen=True, slots=True)
class LoadEntries:
    """Write ``entries`` of ``log`` at their own seq and created_at, for copy/import.

    Creates the log if needed (numbering starts at ``entries[0].seq``); an
    entry whose seq is not above the log's last seq is skipped, so re-running
    a copy is idempotent. An entry numbered below 1 is refused with
    InvalidInputError and the batch writes nothing (:func:`.batch.check_entry_seqs`).
    ``expires_at`` is the log's expiry. Result: how many entries were written.
    """

    log: str
    entries: tuple[Entry, ...]
    expires_at: float | None = None


@quick_init
@dataclass(frozen=True, slots=True)
class Rewrite:
    """Replace the bytes of entry ``seq`` of ``log`` (same seq, same created_at).

    Only for re-encoding the same value (key rotation, re-encryption) — never
    for changing history. Result: True if the entry existed.
    """

    log: str
    seq: int
    data: bytes
    codec: str


Op = Union[Put, Delete, Append, Touch, Expire, Trim, Load, LoadEntries, Rewrite]
OpResult = Union[Record, bool, int]

_TARGET: Final[dict[type, Callable[[Any], str]]] = {
    Put: lambda op: op.key,
    Delete: lambda op: op.key,
    Touch: lambda op: op.key,
    Append: lambda op: op.log,
    Trim: lambda op: op.log,
    Rewrite: lambda op: op.log,
    LoadEntries: lambda op: op.log,
    Expire: lambda op: op.prefix,
    Load: lambda op: op.record.key,
}


def op_target(op: Op) -> str:
    """The key, log or prefix ``op`` writes (its partition is :func:`keys.partition` of it)."""
    return _TARGET[type(op)](op)


def refreshable(record: Record | None, refresh: int, now: float) -> bool:
    """Whether a :class:`Touch` with ``refresh`` applies to ``record`` at ``now``: there, at the
    version read, and still expiring (a record without an expiry was rewritten without a TTL)."""
    return (record is not None and record.version == refresh
            and record.expires_at is not None and record.expires_at > now)  # fmt: skip


@dataclass(frozen=True, slots=True)
class MigrationStatus:
    """Where a store's schema stands relative to the code."""

    current: int
    """The version recorded in the store (0 = empty store)."""
    target: int
    """The version this code expects."""
    pending: list[str] = field(default_factory=list)
    """The statements that migrating would run, in order."""

    @property
    def up_to_date(self) -> bool:
        return self.current == self.target


class Backend(abc.ABC):
    """What a storage engine implements. Everything else is written on top."""

    url: str
    """The URL the backend was opened with, password removed."""

    batch_scope: BatchScope = "store"
    """``"store"``: one :meth:`apply` may span partitions atomically; ``"partition"``:
    a batch must stay inside one partition (Redis Cluster) — callers split theirs."""

    short_messages: bool = False
    """Whether the store's codec writes plain chat messages in the short ``msg:<role>`` form
    (:mod:`statekeel.codec_msg`: the content's bytes, no JSON), which reloads without a JSON
    parse. For backends that keep values as opaque bytes; ones that embed ``json`` values in
    their own format (files, PostgreSQL's json column) keep the default. Every backend reads both."""

    @abc.abstractmethod
    def get(self, key: str, *, include_expired: bool = False) -> Record | None:
        """The record at ``key``, or None. Expired records only if asked for."""

    def get_many(self, keys: Sequence[str]) -> list[Record | None]:
        """Several records at once; backends may override for one round trip."""
        return [self.get(k) for k in keys]

    @abc.abstractmethod
    def scan(self, prefix: str, *, after: str | None = None, limit: int = 100) -> list[Record]:
        """Live records whose key starts with ``prefix``, in key order, after ``after``."""

    @abc.abstractmethod
    def read(
        self,
        log: str,
        *,
        start: int = 1,
        stop: int | None = None,
        limit: int | None = None,
        reverse: bool = False,
    ) -> list[Entry]:
        """Entries with ``start <= seq < stop``; ``reverse`` walks from the newest.

        Always returned in ascending ``seq`` order; ``limit`` counts from the
        newest end when ``reverse`` is true, so ``read(log, limit=20,
        reverse=True)`` is the last 20 entries in O(20).
        """

    def read_values(
        self, log: str, *, limit: int | None = None, reverse: bool = False
    ) -> list[tuple[bytes, str]]:
        """``(data, codec)`` of the entries :meth:`read` would return (whole log, or
        the last ``limit`` with ``reverse``) — a fast path that builds no Entry objects."""
        return [(e.data, e.codec) for e in self.read(log, limit=limit, reverse=reverse)]

    def get_many_and_values(
        self, keys: Sequence[str], log: str, *, limit: int | None = None, reverse: bool = False
    ) -> tuple[list[Record | None], list[tuple[bytes, str]]]:
        """:meth:`get_many` of ``keys`` and :meth:`read_values` of ``log`` together — a
        session's records and its history's tail, what a chat turn reloads. This default
        makes the two calls (not one snapshot) through ``self``, so the encryption, chain and
        tenant wrappers inherit it reading through themselves; a backend may override it where one
        round trip can answer both (Redis' asyncio backend does). A wrapper must never forward it
        to the backend it wraps: that would skip its own reads' opening, checks or scoping."""
        return self.get_many(keys), self.read_values(log, limit=limit, reverse=reverse)

    @abc.abstractmethod
    def log_info(self, log: str) -> LogInfo | None:
        """Bounds of ``log``, or None if it has no entries or has expired."""

    def log_info_many(self, logs: Sequence[str]) -> list[LogInfo | None]:
        """:meth:`log_info` of each of ``logs``, aligned with them — a listing of sessions
        reads a page of them. This default asks one at a time, and every backend inherits
        it; a backend overrides it where one round trip can answer for all (PostgreSQL)."""
        return [self.log_info(log) for log in logs]

    @abc.abstractmethod
    def scan_logs(self, prefix: str, *, after: str | None = None, limit: int = 100) -> list[LogInfo]:
        """Live, non-empty logs whose key starts with ``prefix``, in key order, after ``after``."""

    @abc.abstractmethod
    def apply(self, ops: Sequence[Op], *, now: float | None = None) -> list[OpResult]:
        """Run ``ops`` as one atomic, durable batch; results align with ``ops``.

        ``now``: the batch's clock (seconds since the epoch) — every timestamp it
        writes (``created_at``, ``updated_at``) and every liveness check uses it;
        None = ``time.time()``. Writers that authenticate timestamps choose it.
        """

    @abc.abstractmethod
    def purge_expired(self, *, limit: int = 1000) -> int:
        """Delete up to ``limit`` expired records/logs; return how many went."""

    @abc.abstractmethod
    def migrate(self, *, check: bool = False) -> MigrationStatus:
        """Bring the schema up to date, or with ``check`` only report what would run."""

    def close(self) -> None:
        """Release connections and files. Idempotent."""
