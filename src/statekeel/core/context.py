"""The core every feature is written on: one backend, one codec, the keyring.

Features take a :class:`Core`, never a :class:`~statekeel.store.Store`: the store
is the public façade built on top of them, so features never import it.
"""

from __future__ import annotations

from collections import Counter

from ..codec import Codec
from ..protocol import Backend, keys
from ..security.guard import SecretGuard
from .keyring import Keyring
from .chained import ChainedBackend
from .sealed import SealedBackend
from .validate import check_int

__all__ = ["Core"]


class Core:
    """A backend with the codec that encodes what goes into it."""

    def __init__(self, backend: Backend, codec: Codec | None = None, keyring: Keyring | None = None) -> None:
        self.backend = backend
        self.codec = codec or Codec(guard=SecretGuard())  # the same default as statekeel.open()
        self.keyring = keyring
        """Data keys when the store was opened with ``encryption=``."""
        self.chain_locked: str | None = None
        """Why a tamper-evident store's chain is not checked (opened for maintenance without its key)."""
        self.stats: Counter[str] = Counter()
        """Counters such as ``cas_retries`` (compare-and-set conflicts retried by update)."""

    @property
    def storage(self) -> Backend:
        """The backend as stored: for an encrypted store, beneath the sealing (sealed values, no
        position bookkeeping) — for maintenance, verification and tests that tamper with storage."""
        below = self.backend
        while isinstance(below, (SealedBackend, ChainedBackend)):
            below = below.storage
        return below

    @property
    def sealing(self) -> SealedBackend | None:
        """The encryption layer of an encrypted store (None: not encrypted)."""
        below = self.backend
        while isinstance(below, ChainedBackend):
            below = below.storage
        return below if isinstance(below, SealedBackend) else None

    def bind_subject(self, partition_of: str, subject: str) -> None:
        """Tag a scope (``'user:u'``, ``'session:s'``) or partition with a data subject for erasure."""
        if self.keyring is not None:  # the keyring names partitions with this store's tenant prefix
            self.keyring.bind(self.codec.context_prefix + _partition_of(partition_of), subject)

    def purge_expired(self, *, batch: int = 1000) -> int:
        """Delete expired data in batches of ``batch`` (an int >= 1); return how much went."""
        check_int(batch, "batch", minimum=1)
        total = 0
        while n := self.backend.purge_expired(limit=batch):
            total += n
        return total


def _partition_of(scope_or_partition: str) -> str:
    kind, sep, ident = scope_or_partition.partition(":")
    if sep and kind in ("user", "session"):
        return keys.join(kind, ident)
    return scope_or_partition
