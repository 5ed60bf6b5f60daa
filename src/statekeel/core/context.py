"""The core every feature is written on: one backend, one codec, the keyring.

Features take a :class:`Core`, never a :class:`~statekeel.store.Store`: the store
is the public façade built on top of them, so features never import it.
"""

from __future__ import annotations

from collections import Counter

from ..codec import Codec
from ..errors import InvalidInputError
from ..protocol import ANY, Backend, Put, keys
from ..security.guard import SecretGuard
from . import layout
from .keyring import Keyring, plain_subject_digest
from .chained import ChainedBackend
from .sealed import SealedBackend
from .validate import check_int, check_name

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
        name = _partition_of(partition_of)
        check_name(subject, "a data subject")
        if self.keyring is not None:  # the keyring names partitions with this store's tenant prefix
            self.keyring.bind(self.codec.context_prefix + name, subject)
        else:  # no keystore: the tag is a record of the store's own (a tenant's in its key space)
            self.backend.apply([Put(layout.subject_key(plain_subject_digest(subject), name), b"{}", "json", ANY)])

    def purge_expired(self, *, batch: int = 1000) -> int:
        """Delete expired data in batches of ``batch`` (an int >= 1); return how much went."""
        check_int(batch, "batch", minimum=1)
        total = 0
        while n := self.backend.purge_expired(limit=batch):
            total += n
        return total


def _partition_of(scope_or_partition: str) -> str:
    """``'user:u'`` -> ``user/u`` (``session:``, ``run:`` alike); a partition (or a key prefix
    inside one, such as a memory namespace) as it is. Anything else would tag nothing erasure finds."""
    check_name(scope_or_partition, "a scope or partition")
    kind, sep, ident = scope_or_partition.partition(":")
    if sep and kind in ("user", "session", "run"):
        return keys.join(kind, check_name(ident, f"a {kind} id"))
    if not all(scope_or_partition.split("/")) or "/" not in scope_or_partition:
        raise InvalidInputError(
            f"bind_subject takes 'user:<id>', 'session:<id>', 'run:<id>' or a partition such as "
            f"'events/<stream>', got {scope_or_partition!r}"
        )
    return scope_or_partition
