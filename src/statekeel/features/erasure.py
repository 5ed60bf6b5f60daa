"""Erasure of one data subject (the right to be forgotten).

``store.erase(subject="u-7")`` finds everything tagged with the subject — the
``user:u-7`` scope, every session opened with ``user="u-7"``, and any partition
(or memory namespace) tagged with ``store.bind_subject`` — then:

1. makes the data unreadable at once (expire), the tagged partitions first: they
   are found without reading any data, so a listing of sessions (which reads
   them) never meets one whose key an interrupted erasure already destroyed;
2. with encryption on, destroys the data keys of those partitions
   (crypto-shredding): every ciphertext under them, including copies in WAL/AOF
   files and in backups, can no longer be decrypted (when the keystore is kept
   apart from the data, see :mod:`statekeel.core.keyring`);
3. deletes the data (purge), folds SQLite's WAL and rewrites Redis's AOF, which
   still held the destroyed keys;
4. keeps an erasure record ``erasures/<id>`` with the time and the number of
   partitions erased, and a keyed digest of the subject (never the id itself).

Every step can be done again: an erasure cut short (a crash) is finished by running it again.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass

from ..core import Core, layout
from ..core.keyring import names_under, plain_subject_digest
from ..core.tenant_keyring import TenantKeyring
from ..core.validate import check_name
from ..protocol import Delete, Expire, Put, keys
from ..protocol.capabilities import SupportsLogRewrite, SupportsWalCheckpoint
from .memory.native import index_of
from .session_index import iter_sessions

__all__ = ["Erasure", "erase_subject"]


@dataclass(frozen=True)
class Erasure:
    """What an erasure did (the personal data itself is not kept)."""

    id: str
    """The erasure record's id."""
    at: float
    """When it happened (epoch seconds)."""
    partitions: int
    """How many partitions (scopes, sessions) were erased."""
    crypto_shredded: bool
    """Whether data keys were destroyed (encryption on)."""


def _named(name: str) -> str:
    """A tag's partition: ``run:<id>`` as bound before ``bind_subject`` translated it, else ``name``."""
    kind, sep, ident = name.partition(":")
    return keys.join(kind, ident) if sep and ident and "/" not in name else name


def _tagged(store: Core, subject: str) -> set[str]:
    """The partitions (and key prefixes) tagged with the subject, as this store names them (without
    its tenant prefix): read from the keystore and the store's tags, not from the data."""
    found = set(_tagged_in_store(store, subject))
    if store.keyring is not None:
        tenant = store.codec.context_prefix  # the keyring's names carry the tenant prefix
        for name in store.keyring.subject_partitions(subject):
            first = name.split("/", 1)[0]
            if tenant and name.startswith(tenant):
                found.add(name[len(tenant) :])
            elif not tenant and "~" not in first:  # another tenant's partition
                found.add(name)
    return {_named(name) for name in found}


def _listed(store: Core, subject: str) -> set[str]:
    """The subject's user scope and the sessions opened with ``user=subject`` (read from the data)."""
    found = {layout.partition("user", subject)}
    return found | {layout.partition("session", s.id) for s in iter_sessions(store, user=subject)}


def _tagged_in_store(store: Core, subject: str) -> list[str]:
    """What ``bind_subject`` tagged in a store without encryption (kept in the store itself; also
    found after ``statekeel keys encrypt``, whose keyring keys its digests differently)."""
    return names_under(store.backend, layout.subject_prefix(plain_subject_digest(subject)))


def _clear_memory_index(store: Core, prefix: str) -> None:
    """Drop the native index rows (text, vectors) of the memories under ``prefix``: expiring the
    records leaves them, and they are derived from the erased data."""
    index = index_of(store)
    if index is not None:
        index.clear(prefix)


def _fold_write_ahead_logs(store: Core) -> None:
    """Fold the data's and the keystore's write-ahead logs into their files (SQLite's WAL), or rewrite
    them (Redis's AOF): until then they still hold the destroyed data keys, wrapped, beside the data
    they decrypt. A tenant handle reaches neither (the store's own ``erase`` does)."""
    keystore = store.keyring.keystore if store.keyring is not None and not isinstance(store.keyring, TenantKeyring) else None
    for backend in {id(b): b for b in (store.storage, keystore)}.values():  # the keystore is often the store
        if isinstance(backend, SupportsWalCheckpoint):
            backend.checkpoint_wal()
        if isinstance(backend, SupportsLogRewrite):
            backend.rewrite_log()


def _hide(store: Core, partition: str) -> None:
    """Make ``partition`` (or a key prefix inside one) unreadable at once: expired, unlisted, unindexed."""
    store.backend.apply([Expire(partition + "/", time.time())])
    if partition.startswith(layout.MEMORY_PREFIX):  # the words a native search index keeps of them
        _clear_memory_index(store, partition + "/")
    parts = keys.split(partition)
    if parts[0] == "session" and len(parts) == 2:
        store.backend.apply([Delete(layout.session_index_key(parts[1]))])


def erase_subject(store: Core, subject: str) -> Erasure:
    """Erase every record tagged with ``subject``; see the module docstring."""
    check_name(subject, "a data subject")
    erasure_id = uuid.uuid4().hex
    tagged = _tagged(store, subject)
    for partition in sorted(tagged):
        _hide(store, partition)
    partitions = tagged | _listed(store, subject)
    for partition in sorted(partitions - tagged):
        _hide(store, partition)
    if store.keyring is not None:
        for partition in sorted(partitions):
            if keys.partition(partition) == partition:  # a prefix inside one shares its key: kept
                store.keyring.destroy(store.codec.context_prefix + partition, erasure_id)
    store.purge_expired()
    _fold_write_ahead_logs(store)
    digest = store.keyring.subject_digest(subject) if store.keyring is not None else plain_subject_digest(subject)
    now = time.time()
    body = {"at": now, "partitions": len(partitions), "subject_digest": digest, "crypto_shredded": store.keyring is not None}
    store.backend.apply([Put(layout.erasure_key(erasure_id), json.dumps(body).encode(), "json")])
    return Erasure(erasure_id, now, len(partitions), store.keyring is not None)
