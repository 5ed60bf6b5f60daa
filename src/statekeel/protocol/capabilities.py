"""Optional backend capabilities, declared as runtime-checkable protocols.

The :class:`~statekeel.protocol.Backend` ABC is what every backend must do.
What only some backends can do is named here; callers test for a capability
with ``isinstance(backend, SupportsRepair)``, never by probing attribute names,
and wrappers (tenant views) declare exactly the capabilities they forward.

Batch scope is a declared attribute, not a protocol: :attr:`Backend.batch_scope`
is ``"store"`` when one batch may span partitions atomically, ``"partition"``
when it must stay inside one (Redis Cluster).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from . import Backend

__all__ = [
    "IndexRow",
    "MemoryIndex",
    "SupportsIntegrityCheck",
    "SupportsLogRewrite",
    "SupportsMemoryIndex",
    "SupportsReclaim",
    "SupportsRepair",
    "SupportsTenants",
    "SupportsWalCheckpoint",
    "capabilities_of",
]


@runtime_checkable
class SupportsTenants(Protocol):
    """The backend enforces tenant isolation natively (PostgreSQL: row-level security)."""

    def for_tenant(self, name: str) -> Backend:
        """A backend that sees and writes only tenant ``name``'s data."""
        ...


@runtime_checkable
class SupportsIntegrityCheck(Protocol):
    """The backend can check its own storage (``statekeel doctor``)."""

    def integrity_check(self) -> list[str]:
        """Problems found in the stored data; empty when healthy."""
        ...


@runtime_checkable
class SupportsRepair(Protocol):
    """The backend can repair damage that :meth:`integrity_check` reports (``doctor --repair``)."""

    def repair(self) -> str:
        """Repair what can be repaired; a sentence saying what was done."""
        ...


@runtime_checkable
class SupportsWalCheckpoint(Protocol):
    """The backend keeps a write-ahead log it can fold into the main file (SQLite)."""

    def checkpoint_wal(self) -> None:
        """Move everything in the write-ahead log into the database file."""
        ...


@runtime_checkable
class SupportsLogRewrite(Protocol):
    """The server keeps an append-only log of every write it can rewrite from its current data (Redis: the AOF)."""

    def rewrite_log(self) -> None:
        """Rewrite the log, and wait until it is done, so values deleted before no longer appear in it."""
        ...


@runtime_checkable
class SupportsReclaim(Protocol):
    """The backend can give space freed by deletes back to the file system (SQLite: vacuum)."""

    def reclaim(self) -> tuple[int, int]:
        """Give freed space back; ``(bytes before, bytes after)`` on disk."""
        ...


@dataclass(frozen=True, slots=True)
class IndexRow:
    """What a native memory index keeps of one memory record (derived data: the record rules)."""

    key: str
    version: int
    digest: str
    """The content hash of the record's text: a hit is checked against the record by (version, digest)."""
    expires_at: float | None
    terms: str
    """The searchable words, already normalised by the memory feature, space-separated."""
    metadata: dict[str, Any]
    embedder: str | None
    """``<embedder name>#<dimension>`` of ``vector``; None without one."""
    vector: bytes | None
    """Little-endian float32 unit vector, or None (text-only item)."""


@runtime_checkable
class MemoryIndex(Protocol):
    """A derived full-text and vector index of memory records (SQLite FTS5, PostgreSQL tsvector).

    Every method scopes by key ``prefix`` and ``where`` — exact metadata values (a list: any of
    them), only str/int/float/bool/None — and skips rows expired at ``now``. The writer updates
    a row *before* its record (and removes one after): a crash in between leaves a row the
    records do not back, which the caller's check of every hit against its record (version,
    digest) catches. Never authoritative; ``statekeel memory reindex`` rebuilds it.
    """

    def upsert(self, rows: Sequence[IndexRow]) -> None: ...

    def remove(self, keys: Sequence[str]) -> None: ...

    def clear(self, prefix: str) -> int: ...

    def text_stats(self, prefix: str, where: dict[str, Any], terms: Sequence[str], now: float
                   ) -> tuple[int, float, dict[str, int]]:
        """``(rows, mean number of terms, rows containing each term)``."""
        ...

    def text_matches(self, prefix: str, where: dict[str, Any], terms: Sequence[str], now: float, limit: int
                     ) -> list[tuple[str, int, str, str]]:
        """``(key, version, digest, terms)`` of the ``limit`` rows containing any of ``terms`` that the
        database's own ranking puts first (the caller scores them exactly), in key order."""
        ...

    def vectors(self, prefix: str, where: dict[str, Any], now: float
                ) -> list[tuple[str, int, str, str | None, bytes | None]]:
        """``(key, version, digest, embedder, vector)`` of every row, in key order."""
        ...

    def embedders(self, prefix: str, where: dict[str, Any], now: float) -> list[str | None]:
        """The distinct ``embedder`` values of the rows (None: rows without a vector)."""
        ...

    def nearest(self, prefix: str, where: dict[str, Any], vector: bytes, embedder: str, limit: int, now: float
                ) -> list[tuple[str, int, str, float]] | None:
        """``(key, version, digest, cosine)`` of the ``limit`` rows nearest ``vector``, computed by
        the database (pgvector); None when it cannot (the caller ranks :meth:`vectors` itself)."""
        ...



@runtime_checkable
class SupportsMemoryIndex(Protocol):
    """The backend keeps a native memory index (``store.memory(...)`` search pushes down to it)."""

    def memory_index(self) -> MemoryIndex:
        """The index, created on first use."""
        ...


_ALL: tuple[type, ...] = (
    SupportsTenants, SupportsIntegrityCheck, SupportsRepair, SupportsWalCheckpoint, SupportsReclaim,
    SupportsMemoryIndex, SupportsLogRewrite,
)


def capabilities_of(backend: object) -> list[str]:
    """Names of the optional capabilities ``backend`` declares, for diagnostics."""
    return [c.__name__ for c in _ALL if isinstance(backend, c)]
