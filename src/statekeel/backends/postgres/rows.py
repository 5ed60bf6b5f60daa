"""Rows read back from PostgreSQL, checked against their checksums before anything returns them.

The ``checksum`` column is an ``integer`` holding the unsigned 32-bit sum of
:mod:`statekeel.protocol.integrity` in two's complement (see :func:`.sql.sealed`);
:func:`signed` and :func:`unsigned` convert between the two spellings.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from zlib import crc32

from psycopg.types.numeric import Int4, Int8

from ...protocol import Record
from ...protocol.integrity import MASK, base_sum, verify_entry, verify_record

__all__ = ["crc", "entries", "record", "signed", "sum_param", "unsigned"]

_SIGN = 0x80000000


def signed(checksum: int) -> int:
    """The unsigned 32-bit ``checksum`` as the ``integer`` column stores it."""
    return (checksum ^ _SIGN) - _SIGN


def unsigned(stored: int | None) -> int | None:
    """The column's value as the unsigned checksum (None: written before checksums)."""
    return None if stored is None else stored & MASK


def crc(key: str, codec: str, data: bytes) -> Int8:
    """:func:`base_sum` as a ``bigint`` parameter: always the same type, so one prepared plan."""
    return Int8(base_sum(key, codec, data))


def sum_param(checksum: int) -> Int4:
    """A whole checksum (version or seq known to the client) as the ``integer`` parameter."""
    return Int4(signed(checksum))


def record(row: tuple[Any, ...]) -> Record:
    """A ``key, data, codec, version, created_at, updated_at, expires_at, checksum`` row, verified."""
    key, data, codec, version, created, updated, expires, stored = row
    verify_record(key, codec, data, version, unsigned(stored))
    return Record(key, data, codec, version, created, updated, expires)


def entries(log: str, rows: Sequence[tuple[Any, ...]]) -> Sequence[tuple[Any, ...]]:
    """``seq, data, codec, created_at, checksum`` rows of ``log``, verified; returned as they are.

    Reloading a history verifies thousands of entries: the CRC of the
    ``log NUL codec NUL`` head is computed once per codec and continued over
    each entry's data (CRC-32 of a concatenation), which halves the cost of
    calling :func:`verify_entry` per entry. A mismatch is re-checked by it, so the
    error is the shared one.
    """
    heads: dict[str, int] = {}
    for seq, data, codec, _, stored in rows:
        if stored is None:
            continue
        head = heads.get(codec)
        if head is None:
            head = heads[codec] = base_sum(log, codec, b"")
        if (crc32(data, head) + seq) & MASK != stored & MASK:
            verify_entry(log, seq, codec, data, unsigned(stored))
    return rows
