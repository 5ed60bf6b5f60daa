"""Rows read back from PostgreSQL, checked against their checksums before anything returns them.

The ``checksum`` column is an ``integer`` holding the unsigned 32-bit sum of
:mod:`statekeel.protocol.integrity` in two's complement (see :func:`.sql.sealed`);
:func:`signed` and :func:`unsigned` convert between the two spellings.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import itemgetter
from typing import Any, cast

from psycopg import adapt, adapters, pq
from psycopg.types.numeric import Int4, Int8
from psycopg.types.string import ByteaBinaryLoader

from ...protocol import Record
from ...protocol.integrity import MASK, base_sum, crc32, head, verify_entry, verify_record

__all__ = ["crc", "entries", "in_order", "json_as_bytes", "record", "signed", "sum_param", "unsigned", "values_if_intact"]

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


def json_as_bytes(target: adapt.AdaptersMap) -> None:
    """Load ``json`` columns as the bytes stored, with the C ``bytea`` loader.

    A ``json`` value's binary form is its text, which is what a reload hands to
    the codec: the server sends the column as it is stored (no ``convert_to``
    copy) and the client neither parses it (psycopg's default) nor decodes it to
    ``str``. Only the backend's own cursor gets this loader; its statements never
    return ``json`` to anything but :func:`values_if_intact`.
    """
    target.register_loader("json", _BYTES)


_BYTES = adapters.get_loader(adapters.types["bytea"].oid, pq.Format.BINARY) or ByteaBinaryLoader
"""psycopg's ``bytea`` binary loader: the C one when psycopg's C extension is installed."""
_DATA, _DOC, _CODEC, _CRC = itemgetter(0), itemgetter(1), itemgetter(2), itemgetter(3)
_JSON = "json"


def values_if_intact(log: str, rows: Sequence[tuple[Any, ...]]) -> list[tuple[bytes, str]] | None:
    """``(data, codec)`` of ``read_values`` rows (``data, doc, codec or NULL for json, crc``) if
    every CRC matched, else None.

    SQL already took the seq off each checksum, so the check is C loops over the
    columns — one CRC per row, one list comparison — not a Python loop per row
    (a reload verifies thousands). A history is all ``data`` (short messages) or
    all ``doc`` (plain JSON) as a rule; only a mix costs a Python loop. A NULL
    checksum (a row from before checksums) never compares equal: the caller's
    slower path reads it unchecked.
    """
    if not rows:
        return []
    n = len(rows)
    datas = list(map(_DATA, rows))
    missing = datas.count(None)
    if missing == n:
        datas = list(map(_DOC, rows))
    elif missing:
        datas = [data if data is not None else doc for data, doc in zip(datas, map(_DOC, rows))]
    stored: list[str | None] = list(map(_CODEC, rows))
    missing = stored.count(None)
    codecs = [_JSON] * n if missing == n else [c or _JSON for c in stored] if missing else cast(list[str], stored)
    heads = {c: head(log, c) for c in set(codecs)}
    if list(map(crc32, datas, map(heads.__getitem__, codecs))) != list(map(_CRC, rows)):
        return None
    return list(zip(datas, codecs))


def in_order(keys: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> list[Record | None]:
    """``get_many``'s rows as records in the order of ``keys`` (None: not found)."""
    found = {r[0]: record(r) for r in rows}
    return [found.get(k) for k in keys]
