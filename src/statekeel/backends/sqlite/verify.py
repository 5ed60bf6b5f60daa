"""Checksums checked on the way out: the history fast path, and the whole store for doctor.

Rows written before schema version 2 that were not back-filled have a NULL
checksum and are read unchecked (see :mod:`statekeel.protocol.integrity`).
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import repeat
from operator import itemgetter
from typing import Any

from ...errors import CorruptionError
from ...protocol import Entry, Record
from ...protocol.integrity import MASK, crc32, head, verify_entry, verify_record
from .schema import SEQ_MAX

__all__ = ["ENTRY_COLUMNS", "VALUE_COLUMNS", "entries_of", "record_of", "values_if_intact"]

def _wrong_type(key: str, seq: int | None, data: object) -> CorruptionError:
    """Damage that changed a stored value's type (SQLite keeps one per value): never bytes to decode."""
    what = f"record {key!r}" if seq is None else f"entry {seq} of log {key!r}"
    return CorruptionError(
        f"{what} is damaged: its data is stored as {type(data).__name__}, not bytes; run `statekeel doctor` "
        "to list every damaged record, then restore it from a backup or delete it",
        key, seq,
    )


def record_of(row: tuple[Any, ...]) -> Record:
    """The record of a ``(key, data, codec, version, created_at, updated_at, expires_at, checksum)`` row,
    once its checksum matched."""
    key, data, codec, version, created_at, updated_at, expires_at, stored = row
    if type(data) is not bytes:
        raise _wrong_type(key, None, data)
    if stored is not None and (crc32(data, head(key, codec)) + version) & MASK != stored:
        verify_record(key, codec, data, version, stored)  # raises, naming the record
    return Record(key, data, codec, version, created_at, updated_at, expires_at)


VALUE_COLUMNS = f"data, codec, (checksum - (id & {SEQ_MAX})) & {SEQ_MAX}"
"""An entry row for :func:`values_if_intact`: the checksum comes back with the seq already taken
off (SQL does that per row, in C), leaving the CRC to compare (NULL: written before checksums)."""

ENTRY_COLUMNS = f"{VALUE_COLUMNS}, id, created_at"
"""An entry row for :func:`entries_of`."""

_DATA, _CODEC, _CRC = itemgetter(0), itemgetter(1), itemgetter(2)


def entries_of(log: str, rows: list[Any]) -> list[Entry]:
    """The entries of :data:`ENTRY_COLUMNS` rows; raises :class:`CorruptionError` for a damaged one."""
    if not _intact(log, rows):
        _raise_first_damage(log, rows)
    return [Entry(log, r[3] & SEQ_MAX, r[0], r[1], r[4]) for r in rows]


def values_if_intact(log: str, rows: list[Any]) -> list[tuple[bytes, str]] | None:
    """``(data, codec)`` of :data:`VALUE_COLUMNS` rows if every checksum matched, else None
    (the caller re-reads with :func:`entries_of`, which names the damaged entry)."""
    if not _intact(log, rows):
        return None
    return list(zip(map(_DATA, rows), map(_CODEC, rows)))


def _intact(log: str, rows: list[Any]) -> bool:
    """Whether every row carries a checksum that matches its bytes.

    The hot read path (``history()``), so the rows are checked in bulk — C
    loops over the columns, one CRC per row, one list comparison — and only a
    mismatch or a row from before checksums takes the row-by-row walk.
    """
    if not rows:
        return True
    codecs = list(map(_CODEC, rows))
    first = codecs[0]
    if codecs.count(first) == len(codecs):
        heads: Iterable[int] = repeat(head(log, first))
    else:  # e.g. short-form messages, one codec name per role: a few distinct heads, mapped in C
        heads = map({c: head(log, c) for c in set(codecs)}.__getitem__, codecs)
    try:
        return list(map(crc32, map(_DATA, rows), heads)) == list(map(_CRC, rows))
    except TypeError:  # a value whose stored type is no longer a blob
        return False


def _raise_first_damage(log: str, rows: list[Any]) -> None:
    """Raise for the first row whose checksum fails; rows without one (NULL) are read unchecked."""
    for data, codec, crc, rid, _ in rows:
        seq = rid & SEQ_MAX
        if type(data) is not bytes:
            raise _wrong_type(log, seq, data)
        if crc is not None:
            verify_entry(log, seq, codec, data, (crc + seq) & MASK)
