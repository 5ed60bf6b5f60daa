"""Encryption at rest: AES-256-GCM envelope encryption as a codec transform.

Turned on with ``statekeel.open(url, encryption=Encryption(master_key=...))``.
Every value that goes through the codec — state values, history entries,
session metadata, notes, decisions, checkpoints, events — is encrypted with the
data key of its partition (``session/<id>``, ``user/<id>``, ``app/_``, …) and
stored with codec ``…+aesgcm``.

Wire format: ``0x01 | key version (4 bytes) | nonce (12) | ciphertext+tag``.
The associated data binds the ciphertext to the record's full key (which
includes its scope, tenant and partition) and the data key version, so a
ciphertext copied to another record fails to decrypt with
:class:`~statekeel.errors.IntegrityError`.

What stays in clear, because indexes and ordering need it: record keys (scope
kinds, session ids, user ids in ``user:<id>`` scopes, state key names), log
sequence numbers, versions, timestamps and expiry times, and codec names.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag

from ..errors import IntegrityError, StoreError
from ..protocol import Backend, keys
from .keyring import Keyring, MasterKeys

__all__ = ["Encryption", "AesGcmTransform"]

_FORMAT = 1


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


class AesGcmTransform:
    """The ``aesgcm`` codec step."""

    name = "aesgcm"

    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring

    @staticmethod
    def _aad(context: str, version: int) -> bytes:
        return b"statekeel\x00" + context.encode("utf-8") + b"\x00" + version.to_bytes(4, "big")

    def encode(self, data: bytes, context: str) -> bytes:
        key = self.keyring.current(keys.partition(context))
        nonce = os.urandom(12)
        sealed = key.aead.encrypt(nonce, data, self._aad(context, key.version))
        return bytes([_FORMAT]) + key.version.to_bytes(4, "big") + nonce + sealed

    def decode(self, data: bytes, context: str) -> bytes:
        if len(data) < 33 or data[0] != _FORMAT:
            raise IntegrityError(f"the encrypted record {context!r} is truncated or not in a known format")
        version = int.from_bytes(data[1:5], "big")
        key = self.keyring.get(keys.partition(context), version)
        try:
            return key.aead.decrypt(data[5:17], data[17:], self._aad(context, version))
        except InvalidTag:
            raise IntegrityError(
                f"the encrypted record {context!r} failed authentication: it was modified, or copied "
                "from another record; it was not returned"
            ) from None


def require_encryption(keyring: Keyring | None) -> Keyring:
    if keyring is None:
        raise StoreError("this store was opened without encryption=; open it with statekeel.Encryption(...)")
    return keyring
