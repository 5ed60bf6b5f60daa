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

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from . import Backend

__all__ = [
    "SupportsIntegrityCheck",
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
class SupportsReclaim(Protocol):
    """The backend can give space freed by deletes back to the file system (SQLite: vacuum)."""

    def reclaim(self) -> tuple[int, int]:
        """Give freed space back; ``(bytes before, bytes after)`` on disk."""
        ...


_ALL: tuple[type, ...] = (
    SupportsTenants, SupportsIntegrityCheck, SupportsRepair, SupportsWalCheckpoint, SupportsReclaim,
)


def capabilities_of(backend: object) -> list[str]:
    """Names of the optional capabilities ``backend`` declares, for diagnostics."""
    return [c.__name__ for c in _ALL if isinstance(backend, c)]
