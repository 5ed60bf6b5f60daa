"""Erasure of one data subject (the right to be forgotten).

``store.erase(subject="u-7")`` finds everything tagged with the subject — the
``user:u-7`` scope, every session opened with ``user="u-7"``, and any partition
bound to it with ``store.bind_subject`` — then:

1. with encryption on, destroys the data keys of those partitions
   (crypto-shredding): every ciphertext under them, including copies in WAL/AOF
   files and in backups, can no longer be decrypted (when the keystore is kept
   apart from the data, see :mod:`statekeel.core.keyring`);
2. makes the data unreadable at once and deletes it (expire + purge);
3. keeps an erasure record ``erasures/<id>`` with the time and the number of
   partitions erased, and a keyed digest of the subject (never the id itself).
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import dataclass

from ..core import Core, layout
from ..core.validate import check_name
from ..protocol import Delete, Expire, Put, keys
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


def _partitions(store: Core, subject: str) -> set[str]:
    """The subject's partitions as this store names them (without its tenant prefix)."""
    found = {layout.partition("user", subject)}
    found |= {layout.partition("session", s.id) for s in iter_sessions(store, user=subject)}
    if store.keyring is not None:
        tenant = store.codec.context_prefix  # the keyring's names carry the tenant prefix
        for name in store.keyring.subject_partitions(subject):
            first = name.split("/", 1)[0]
            if tenant and name.startswith(tenant):
                found.add(name[len(tenant) :])
            elif not tenant and "~" not in first:  # another tenant's partition
                found.add(name)
    return found


def erase_subject(store: Core, subject: str) -> Erasure:
    """Erase every record tagged with ``subject``; see the module docstring."""
    check_name(subject, "a data subject")
    erasure_id = uuid.uuid4().hex
    partitions = _partitions(store, subject)
    digest = (
        store.keyring.subject_digest(subject)
        if store.keyring is not None
        else hashlib.sha256(b"statekeel-subject\x00" + subject.encode()).hexdigest()[:32]
    )
    for partition in sorted(partitions):
        if store.keyring is not None:
            store.keyring.destroy(store.codec.context_prefix + partition, erasure_id)
        store.backend.apply([Expire(partition + "/", time.time())])
        kind, ident = keys.split(partition)[:2]
        if kind == "session":
            store.backend.apply([Delete(layout.session_index_key(ident))])
    store.purge_expired()
    now = time.time()
    body = {"at": now, "partitions": len(partitions), "subject_digest": digest, "crypto_shredded": store.keyring is not None}
    store.backend.apply([Put(layout.erasure_key(erasure_id), json.dumps(body).encode(), "json")])
    return Erasure(erasure_id, now, len(partitions), store.keyring is not None)
