"""Checksums on the hot paths, with the CRC of ``key NUL codec NUL`` remembered.

A chat turn writes the same log and state keys again and again, so the part
of :func:`~statekeel.protocol.integrity.base_sum` that covers the key and codec
is cached; only the data is CRC'd per row. Same formula, same results.
"""

from __future__ import annotations

from zlib import crc32

from ...protocol.integrity import MASK, base_sum

__all__ = ["fast_base", "fast_sum", "head"]

_HEADS: dict[tuple[str, str], int] = {}
_MAX_HEADS = 4096
"""Cache bound: beyond it the cache starts again (a dict clear is cheaper than an LRU)."""


def head(key: str, codec: str) -> int:
    """``base_sum(key, codec, b"")``: the CRC of ``key NUL codec NUL``, remembered."""
    found = _HEADS.get((key, codec))
    if found is None:
        if len(_HEADS) >= _MAX_HEADS:
            _HEADS.clear()
        found = _HEADS[(key, codec)] = base_sum(key, codec, b"")
    return found


def fast_base(key: str, codec: str, data: bytes) -> int:
    """``base_sum(key, codec, data)``, without re-encoding a key and codec seen before."""
    return crc32(data, _HEADS.get((key, codec)) or head(key, codec))  # (a head CRC of 0 is only slower)


def fast_sum(key: str, codec: str, data: bytes, n: int) -> int:
    """``seal(base_sum(key, codec, data), n)``: a record's (n = version) or entry's (n = seq) checksum."""
    return (crc32(data, _HEADS.get((key, codec)) or head(key, codec)) + n) & MASK
