"""What the Redis backends read back: a record from its hash, and the Lua scripts they run by SHA.

Shared by the sync backend (:mod:`.backend`), the asyncio one (:mod:`.aio`) and the
one-round-trip reads of :mod:`.tail`, which the sync backend imports: so they live apart.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from ...protocol import Record
from ...protocol.integrity import verify_record
from .values import damaged

__all__ = ["RECORD_FIELDS", "Script", "alive", "opt_float", "record", "text"]

RECORD_FIELDS = ("d", "c", "v", "ca", "ua", "ea", "s")
"""A record's hash fields: data, codec, version, created, updated, expires, checksum."""


class Script:
    """A Lua script run by SHA, loaded again when the server lost it."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def opt_float(value: Any) -> float | None:
    return float(value) if value else None


def record(key: str, h: Sequence[Any]) -> Record | None:
    """The record from its hash fields (:data:`RECORD_FIELDS`), its checksum verified; None if absent."""
    data, codec, version, created, updated, expires, stored = h
    if version is None:
        return None
    try:
        if not isinstance(data, bytes):
            raise ValueError("its data field is missing")
        rec = Record(key, data, text(codec), int(version), float(created), float(updated), opt_float(expires))
        checksum = int(stored) if stored else None
    except (ValueError, TypeError, AttributeError) as exc:
        raise damaged(f"record {key!r}", exc, key) from None
    verify_record(key, rec.codec, data, rec.version, checksum)
    return rec


def alive(expires_at: float | None, now: float) -> bool:
    return expires_at is None or expires_at > now
