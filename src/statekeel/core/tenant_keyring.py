"""A tenant's share of the keyring: its own partitions' data keys and nothing else.

``store.tenant(name).keyring`` is a :class:`TenantKeyring`. The keystore is
shared by every tenant (records ``keys/<tenant~partition>``), so handing a
tenant the whole :class:`~statekeel.core.keyring.Keyring` would hand it the
keystore backend (every tenant's records, the SQLite path, the pool) and the
master keys. This view forwards only what a tenant's own data needs — binding
and erasing a data subject, finding a record's data key — for partitions
under the tenant's prefix, and refuses (``UsageError``) what belongs to the whole
store: its ``keystore`` and ``master`` keys, and what walks every partition
(re-wrapping under a new master key, re-encryption): those run on the store.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NoReturn

from ..errors import UsageError
from ..protocol import Backend
from .keyring import DataKey, Keyring, MasterKeys

__all__ = ["TenantKeyring"]


class TenantKeyring(Keyring):
    """The data keys of the partitions under ``prefix`` (a tenant's key prefix)."""

    def __init__(self, whole: Keyring, prefix: str) -> None:
        # no super().__init__(): this view has no keystore or master keys of its own to expose
        self._whole = whole
        self.prefix = prefix
        """The tenant's key prefix (``acme~``); every partition this view touches starts with it."""

    def _own(self, partition: str) -> str:
        if not partition.startswith(self.prefix):
            raise UsageError(
                f"the data key of {partition!r} belongs to another tenant or to the store; a tenant "
                f"handle reaches only the keys of its own partitions ({self.prefix}…)"
            )
        return partition

    def _whole_store(self, what: str) -> NoReturn:
        raise UsageError(
            f"this is a tenant handle; {what} belongs to the whole store (every tenant's data keys), so run "
            "it on the store itself: `statekeel keys rotate|reencrypt|encrypt URL`, or the same functions "
            "on statekeel.open(url)"
        )

    # -- the whole store's: refused, so whole-store code fails clearly, not with AttributeError --
    @property
    def master(self) -> MasterKeys:  # type: ignore[override]
        """Refused: the master keys wrap every tenant's data keys."""
        self._whole_store("the master key")

    @property
    def keystore(self) -> Backend:  # type: ignore[override]
        """Refused: the keystore holds every tenant's data keys."""
        self._whole_store("the keystore")

    # -- the tenant's own keys -----------------------------------------------------
    def current(self, partition: str) -> DataKey:
        return self._whole.current(self._own(partition))

    def get(self, partition: str, version: int) -> DataKey:
        return self._whole.get(self._own(partition), version)

    def subject_digest(self, subject: str) -> str:
        return self._whole.subject_digest(subject)

    def bind(self, partition: str, subject: str) -> None:
        self._whole.bind(self._own(partition), subject)

    def subject_partitions(self, subject: str) -> list[str]:
        """The subject's partitions in this tenant only (other tenants may know the same subject)."""
        return [p for p in self._whole.subject_partitions(subject) if p.startswith(self.prefix)]

    def destroy(self, partition: str, erasure_id: str) -> None:
        self._whole.destroy(self._own(partition), erasure_id)

    def forget_cache(self) -> None:
        self._whole.forget_cache()

    # -- whole-keystore operations: refused -----------------------------------------
    def partitions(self) -> Sequence[str]:
        self._whole_store("listing every partition's data key (key rotation, re-encryption)")

    def rewrap(self, partition: str) -> bool:
        self._whole_store("re-wrapping data keys under the current master key (keys rotate)")

    def new_version(self, partition: str) -> int:
        self._whole_store("adding data key versions (keys reencrypt)")

    def begin_reencrypt(self, partition: str) -> int:
        self._whole_store("re-encryption (keys reencrypt)")

    def end_reencrypt(self, partition: str) -> None:
        self._whole_store("re-encryption (keys reencrypt)")
