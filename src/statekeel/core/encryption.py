"""Encryption at rest: AES-256-GCM envelope encryption as a codec transform.

Turned on with ``statekeel.open(url, encryption=Encryption(master_key=...))``.
Every value that goes through the codec — state values, history entries,
session metadata, notes, decisions, checkpoints, events — is encrypted with the
data key of its partition (``session/<id>``, ``user/<id>``, ``app/_``, …) and
stored with codec ``…+aesgcm``.

Values are sealed below the features, by :class:`~statekeel.core.sealed.SealedBackend`,
when a batch is applied — that is where a value's position is known.
Wire format: ``0x02 | key version (4 bytes) | nonce (12) | ciphertext+tag``; nonces come
from :class:`NonceSource` (a random per-process prefix and a counter).
The associated data binds the ciphertext to the record's full key (which
includes its scope, tenant and partition) and version, or to its log and seq,
and to the data key version, so a ciphertext copied to another record, moved to
another seq, swapped with another or restored over a newer version fails to
decrypt with :class:`~statekeel.errors.IntegrityError`. (Format ``0x01``, from
before positions were bound, is still read; ``statekeel keys reencrypt`` rewrites it.)

What stays in clear, because indexes and ordering need it: record keys (scope
kinds, session ids, user ids in ``user:<id>`` scopes, state key names), log
sequence numbers, versions, timestamps and expiry times, and codec names.

**An encrypted store stays encrypted.** The codec name is not authenticated, so
the store itself says it is encrypted: a marker record
(:data:`~statekeel.core.layout.ENCRYPTION_MARKER`, plain JSON holding the master
key id) written when a store is first opened with encryption. Opened without the
key, such a store is refused (:class:`KeyUnavailableError` naming the key id); and
opened with it, its sealed backend refuses any value whose codec name lacks the
``aesgcm`` step as planted (:class:`IntegrityError`) — except the records plain
by design (:func:`~statekeel.core.layout.stored_in_clear`) and, while ``statekeel
keys encrypt`` converts a plaintext store, the records it has not reached yet.
"""

from __future__ import annotations

import itertools
import json
import os
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Final

from ..codec import Codec
from ..errors import (
    ConflictError,
    CorruptionError,
    IntegrityError,
    KeyUnavailableError,
    MigrationRequiredError,
    NotAStoreError,
    SchemaTooNewError,
    StatekeelError,
)
from ..protocol import ANY, Backend, Put, keys
from . import keyring as _keyring
from . import layout
from .keyring import HOW_TO_SUPPLY, DataKey, Keyring, MasterKeys

__all__ = [
    "Cipher",
    "Encryption",
    "EncryptedStorePolicy",
    "conversion_in_progress",
    "expected_key_ids",
    "is_planted_plaintext",
    "prepare",
    "write_marker",
]

_FORMAT = 2
"""The sealed-value format written: 2 binds the position (1, unbound, is still read)."""


@dataclass
class Encryption:
    """How to encrypt: where the master key comes from and where data keys live.

    ``master_key``: 32 raw bytes, ``"env:NAME"`` (default ``env:STATEKEEL_MASTER_KEY``),
    ``"file:/path"``, key text (``BASE64`` or ``id:BASE64,old-id:BASE64``), or a
    callable returning one of those (plug a KMS in here).
    ``keystore_url``: a separate store for the wrapped data keys; keep it apart
    from the data so erasure also reaches backups of the data.
    """

    master_key: Any = "env:STATEKEEL_MASTER_KEY"
    keystore_url: str | None = None

    def keyring(self, data_backend: Backend) -> Keyring:
        from ..backends import open_backend

        keystore = open_backend(self.keystore_url) if self.keystore_url else data_backend
        return Keyring(MasterKeys.from_any(self.master_key), keystore)


class Cipher:
    """AES-256-GCM sealing of one stored value, bound to where it is stored.

    ``where`` is the record's or log's full key (tenant prefix included) and ``pos``
    its version (``kind`` ``b"r"``) or seq (``kind`` ``b"e"``): format 2 authenticates
    all of them, so a ciphertext swapped, moved or restored over a newer version
    fails. Format 1 (before positions were bound) is still read; ``statekeel keys
    reencrypt`` rewrites it as format 2.
    """

    name = "aesgcm"

    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring
        self._sealers: dict[str, tuple[Any, int, Callable[[bytes, bytes, int], bytes], str]] = {}
        """where -> (the data key's AEAD, its version, the sealer made for them, where's partition)."""

    @staticmethod
    def key_version(data: bytes) -> int:
        """The data key version a sealed value names."""
        return int.from_bytes(data[1:5], "big")

    @staticmethod
    def current_format(data: bytes) -> bool:
        """Whether a sealed value is in the format this code writes (position bound)."""
        return data[:1] == bytes([_FORMAT])

    def seal(self, data: bytes, where: str, kind: bytes, pos: int) -> bytes:
        return self.sealer(where)(data, kind, pos)

    def sealer(self, where: str, known: dict[str, DataKey] | None = None) -> Callable[[bytes, bytes, int], bytes]:
        """:meth:`seal` for values stored at ``where``: ``(data, kind, pos) -> sealed``, with the data key
        looked up and the associated data's fixed part built once (a batch seals several values;
        ``known`` holds the batch's current data key per partition, so it looks each up once)."""
        made = self._sealers.get(where)
        partition = keys.partition(where) if made is None else made[3]
        key = None if known is None else known.get(partition)
        if key is None:
            key = self.keyring.current(partition)
            if known is not None:
                known[partition] = key
        if made is not None and made[0] is key.aead and made[1] == key.version:
            return made[2]  # the same data key as last time: the same sealer
        head, aad, encrypt, nonce = bytes([_FORMAT]) + key.version.to_bytes(4, "big"), _aad(where, key.version), \
            key.aead.encrypt, nonces.next  # fmt: skip

        def seal(data: bytes, kind: bytes, pos: int) -> bytes:
            n = nonce()
            return head + n + encrypt(n, data, aad + kind + pos.to_bytes(8, "big"))

        if len(self._sealers) >= 4096:
            self._sealers.clear()
        self._sealers[where] = (key.aead, key.version, seal, partition)
        return seal

    def open(self, data: bytes, where: str, kind: bytes, pos: int) -> bytes:
        if len(data) < 33 or data[0] not in (1, _FORMAT):
            raise IntegrityError(f"the encrypted {_what(where, kind, pos)} is truncated or not in a known format")
        version = self.key_version(data)
        key = self.keyring.get(keys.partition(where), version)
        aad = _aad(where, version) if data[0] == 1 else _aad(where, version, kind, pos)
        try:
            return key.aead.decrypt(data[5:17], data[17:], aad)
        except _keyring.InvalidTag:
            raise IntegrityError(
                f"the encrypted {_what(where, kind, pos)} failed authentication: it was modified, moved, "
                "copied from another record or position, or an older copy was restored; it was not returned"
            ) from None


    def open_entries(self, where: str, entries: Sequence[tuple[bytes, int]]) -> list[bytes]:
        """:meth:`open` for many entries of the log at ``where`` (a whole-history reload): the data
        key of each version looked up once, the associated data's fixed part built once."""
        partition = keys.partition(where)
        found: dict[int, tuple[Any, bytes]] = {}
        out: list[bytes] = []
        for data, seq in entries:
            if len(data) < 33 or data[0] != _FORMAT:
                out.append(self.open(data, where, b"e", seq))  # format 1, or damaged: one at a time
                continue
            version = int.from_bytes(data[1:5], "big")
            known = found.get(version)
            if known is None:
                aead = self.keyring.get(partition, version).aead
                known = found[version] = (aead, _aad(where, version, b"e", 0)[:-8])
            try:
                out.append(known[0].decrypt(data[5:17], data[17:], known[1] + seq.to_bytes(8, "big")))
            except _keyring.InvalidTag:
                out.append(self.open(data, where, b"e", seq))  # raises, naming the entry
        return out

    def open_run(self, where: str, first: int, datas: Sequence[bytes]) -> list[bytes] | None:
        """:meth:`open` of entries ``first, first + 1, …`` of the log at ``where``, all or none: the
        reload of a history in C loops (no Python step per entry), under each data key version they
        name (a rotation not yet re-encrypted mixes two). None — nothing is raised — when one is not
        in this format or fails authentication: then the caller opens them one by one, which names
        the entry. A success proves the seqs too: each entry's associated data binds its seq."""
        if not datas:
            return []
        heads = list(map(_HEAD, datas))
        if min(map(len, datas)) < 33:
            return None
        partition, keyed = keys.partition(where), dict[bytes, tuple[Any, bytes]]()
        for head in set(heads):
            if head[0] != _FORMAT:
                return None
            version = int.from_bytes(head[1:5], "big")
            keyed[head] = (self.keyring.get(partition, version).aead, _aad(where, version, b"e", 0)[:-8])
        aeads, fixed = [k[0] for k in keyed.values()], [k[1] for k in keyed.values()]
        if len(keyed) == 1:
            aads = map(fixed[0].__add__, map(_SEQ.pack, range(first, first + len(datas))))
            opens = map(aeads[0].decrypt, map(_NONCE, datas), map(_BODY, datas), aads)
        else:
            index = {head: i for i, head in enumerate(keyed)}
            at = list(map(index.__getitem__, heads))
            aads = map(bytes.__add__, map(fixed.__getitem__, at), map(_SEQ.pack, range(first, first + len(datas))))
            opens = map(type(aeads[0]).decrypt, map(aeads.__getitem__, at), map(_NONCE, datas), map(_BODY, datas), aads)
        try:
            return list(opens)
        except _keyring.InvalidTag:
            return None


_HEAD, _NONCE, _BODY = itemgetter(slice(0, 5)), itemgetter(slice(5, 17)), itemgetter(slice(17, None))
"""A sealed value's format byte and key version, its nonce, its ciphertext and tag."""
_SEQ = struct.Struct(">Q")
"""A seq in the associated data (as ``pos.to_bytes(8, "big")``)."""


class NonceSource:
    """AES-GCM nonces that do not repeat under one key, without a system call per value.

    A nonce is a random 8-byte prefix drawn from the OS for this process, then a 4-byte counter
    (the deterministic construction of NIST SP 800-38D §8.2.1, with a random fixed field). The
    prefix is drawn again when the counter would wrap (every 2**32 values) and in a forked child
    (which would otherwise count on from its parent's state). Two processes share a prefix with
    probability about n²/2**65 for n prefixes drawn under one data key — negligible next to the
    2**-32 bound GCM asks of random 12-byte nonces, which this replaces at a tenth of the cost.
    """

    def __init__(self) -> None:
        self._state = self._fresh()
        self._lock = threading.Lock()

    @staticmethod
    def _fresh() -> tuple[bytes, Iterator[int]]:
        return os.urandom(8), itertools.count()

    def renew(self) -> None:
        """Draw a new prefix (and count again from 0)."""
        self._state = self._fresh()

    def next(self) -> bytes:
        prefix, counter = self._state  # one read: a concurrent renew() cannot pair our count with its prefix
        n = next(counter)  # atomic: itertools.count is advanced under the GIL
        if n >= _COUNTER_END:
            with self._lock:
                if self._state[1] is counter:
                    self.renew()
            return self.next()
        return prefix + n.to_bytes(4, "big")


_COUNTER_END: Final = 2**32

nonces = NonceSource()
"""This process's nonces (every data key's: a nonce is unique across keys too)."""
if hasattr(os, "register_at_fork"):  # POSIX: a child must not count on from its parent's nonces
    os.register_at_fork(after_in_child=nonces.renew)


def _aad(where: str, version: int, kind: bytes = b"", pos: int = 0) -> bytes:
    """Format 1: the key and data key version; format 2 adds the kind and position."""
    aad = b"statekeel\x00" + where.encode("utf-8") + b"\x00" + version.to_bytes(4, "big")
    return aad + kind + pos.to_bytes(8, "big") if kind else aad


def _what(where: str, kind: bytes, pos: int) -> str:
    return f"entry {pos} of log {where!r}" if kind == b"e" else f"record {where!r} (version {pos})"


def require_encryption(keyring: Keyring | None) -> Keyring:
    """The keyring, or the error saying how to give the key (key commands need one)."""
    if keyring is None:
        raise KeyUnavailableError("this needs the master key, and the store was opened without one: " + HOW_TO_SUPPLY)
    return keyring


# -- an encrypted store stays encrypted --------------------------------------------------
def is_planted_plaintext(codec: str, key: str) -> bool:
    """Whether a record of an encrypted store skips encryption though nothing writes it so."""
    return not codec.endswith("+aesgcm") and not layout.stored_in_clear(key)


class EncryptedStorePolicy:
    """The codec policy of an encrypted store (see the module docstring).

    ``locked``: the store was opened without its key (only doctor and migrate do that);
    the message says which key it needs. ``converting``: ``statekeel keys encrypt`` has
    not finished, so values still in plaintext are read rather than refused.
    """

    def __init__(self, *, locked: str | None = None, converting: bool = False) -> None:
        self.locked = locked
        self.converting = converting

    def check_encode(self, context: str) -> None:
        if self.locked is not None:
            raise KeyUnavailableError(self.locked)

    def check_decode(self, codec: str, context: str) -> None:
        if layout.stored_in_clear(context):
            return
        if self.locked is not None:
            raise KeyUnavailableError(self.locked)
        if not self.converting and not codec.endswith("+aesgcm"):
            raise IntegrityError(
                f"the record {context!r} is stored without encryption (codec {codec!r}) in an encrypted "
                "store: planted or tampered with; it was not returned. `statekeel doctor URL` lists every "
                "such record; if it is yours from before encryption was turned on, `statekeel keys encrypt URL` "
                "encrypts it in place"
            )


def _read_marker(backend: Backend) -> dict[str, Any] | None:
    rec = backend.get(layout.ENCRYPTION_MARKER)
    if rec is None:
        return None
    try:
        body = json.loads(rec.data)
    except ValueError:
        body = None
    return body if isinstance(body, dict) else {}  # a damaged marker still marks the store


def _legacy_key_ids(backend: Backend) -> list[str] | None:
    """A store encrypted before markers existed has a keystore of its own: the key ids it names."""
    page = backend.scan("keys/", limit=1)
    if not page:
        return None
    try:
        return sorted({str(v["master"]) for v in json.loads(page[0].data)["versions"].values()})
    except (ValueError, KeyError, TypeError, AttributeError):
        return []


def _probe(backend: Backend) -> tuple[bool, list[str] | None]:
    """(marked, ids): whether the marker is there, and the key ids the store expects ([] when
    unknown; None when it is not encrypted, or its schema cannot be read before a migration)."""
    try:
        marker = _read_marker(backend)
        if marker is None:
            return False, _legacy_key_ids(backend)
    except CorruptionError:
        return True, []  # the marker is there but damaged: still an encrypted store
    except (MigrationRequiredError, SchemaTooNewError, NotAStoreError):
        return False, None
    kid = marker.get("master_key_id")
    return True, [kid] if isinstance(kid, str) else []


def expected_key_ids(backend: Backend) -> list[str] | None:
    """The master key ids an encrypted store expects ([] when unknown; None: not encrypted)."""
    return _probe(backend)[1]


def write_marker(backend: Backend, master: MasterKeys, *, replace: bool = False) -> None:
    """Mark the store encrypted (``replace``: record a new master key id after rotation)."""
    body = {"encrypted": True, "format": 1, "master_key_id": master.current_id, "since": time.time()}
    try:
        backend.apply([Put(layout.ENCRYPTION_MARKER, json.dumps(body, sort_keys=True).encode(), "json",
                           ANY if replace else None)])
    except ConflictError:
        pass  # another process marked it first


def _needs(url: str, ids: list[str]) -> str:
    which = f" under master key id {' or '.join(map(repr, ids))}" if ids else ""
    return f"the store {url} is encrypted{which}: without its key it can be neither read nor written; " + HOW_TO_SUPPLY


def prepare(
    backend: Backend, encryption: Encryption | None, *, mark: bool, locked_ok: bool, only_if_marked: bool = False
) -> tuple[Keyring | None, EncryptedStorePolicy | None]:
    """The keyring and codec policy of ``backend`` as ``statekeel.open`` gets them.

    Without ``encryption``, an encrypted store is refused — or, with ``locked_ok``, opened
    locked. With it, a store not yet marked is marked (when ``mark``), or — ``only_if_marked``,
    for checks that must see a plaintext store as it is — opened without encryption.
    """
    marked, ids = _probe(backend)
    if encryption is not None and only_if_marked and ids is None:
        return None, None
    if encryption is None:
        if ids is None:
            return None, None
        if not locked_ok:
            raise KeyUnavailableError(_needs(backend.url, ids))
        return None, EncryptedStorePolicy(locked=_needs(backend.url, ids))
    try:
        keyring = encryption.keyring(backend)
    except KeyUnavailableError as exc:
        raise KeyUnavailableError(f"{exc}. {_needs(backend.url, ids).split(';')[0]}" if ids else str(exc)) from None
    if mark and not marked:
        write_marker(backend, keyring.master)
    return keyring, EncryptedStorePolicy()


def conversion_in_progress(storage: Backend, cipher: Cipher, codec: Codec) -> bool:
    """Whether ``statekeel keys encrypt`` is converting the store: its record is there and
    authentic (encrypted under this store's key, so nobody without the key can forge it)."""
    rec = storage.get(layout.ENCRYPTION_CONVERSION)
    if rec is None or not rec.codec.endswith("+aesgcm"):
        return False
    try:
        data = cipher.open(rec.data, rec.key, b"r", rec.version)
        return codec.decode(data, rec.codec.removesuffix("+aesgcm"), rec.key) is not None
    except StatekeelError:
        return False
