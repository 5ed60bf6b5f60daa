"""The tables of the SQLite backend, and how a log's entries are numbered in them.

    statekeel_schema  version, applied_at             one row per applied migration
    sk_kv             key PK, data, codec, version, created_at, updated_at, expires_at, checksum
    sk_logs           id PK, name UNIQUE, first_seq, last_seq, created_at, updated_at, expires_at
    sk_entries        id PK (= log id << 32 | seq), data, codec, created_at, checksum

``checksum`` is :mod:`statekeel.protocol.integrity`'s per-record checksum (NULL:
written before schema version 2 and not back-filled).
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from ...protocol.integrity import entry_sum, record_sum

__all__ = ["LIVE", "MIGRATIONS", "SEQ_BITS", "SEQ_MAX", "SQL", "header", "register_functions", "rowid"]

# An entry's rowid packs its log and position: a log holds up to 2**32 - 1
# entries and a store up to 2**31 logs; range scans on the rowid are O(N).
SEQ_BITS = 32
SEQ_MAX = (1 << SEQ_BITS) - 1

# The index of a migration is the schema version it brings the store to, minus one.
_BACKFILL = (
    "-- back-fill: sk_*_sum() exist only on statekeel's own connections; run by hand, skip this\n"
    "-- statement (rows left without a checksum are read unchecked)\n"
)

MIGRATIONS: list[list[str]] = [
    [
        "CREATE TABLE statekeel_schema (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)",
        "CREATE TABLE sk_kv (key TEXT PRIMARY KEY, data BLOB NOT NULL, codec TEXT NOT NULL,"
        " version INTEGER NOT NULL, created_at REAL NOT NULL, updated_at REAL NOT NULL,"
        " expires_at REAL) WITHOUT ROWID",
        "CREATE INDEX sk_kv_expiry ON sk_kv (expires_at) WHERE expires_at IS NOT NULL",
        "CREATE TABLE sk_logs (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,"
        " first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL, created_at REAL NOT NULL,"
        " updated_at REAL NOT NULL, expires_at REAL)",
        "CREATE INDEX sk_logs_expiry ON sk_logs (expires_at) WHERE expires_at IS NOT NULL",
        # rowid = log_id << 32 | seq: one B-tree, no secondary index (see SEQ_BITS)
        "CREATE TABLE sk_entries (id INTEGER PRIMARY KEY, data BLOB NOT NULL,"
        " codec TEXT NOT NULL, created_at REAL NOT NULL)",
    ],
    [
        # per-record checksums; rows written before are back-filled by the
        # SQL functions of register_functions() (defined on every connection)
        "ALTER TABLE sk_kv ADD COLUMN checksum INTEGER",
        "ALTER TABLE sk_entries ADD COLUMN checksum INTEGER",
        _BACKFILL + "UPDATE sk_kv SET checksum = sk_record_sum(key, codec, data, version)",
        _BACKFILL + "UPDATE sk_entries SET checksum = sk_entry_sum((SELECT name FROM sk_logs"
        f" WHERE id = sk_entries.id >> {SEQ_BITS}), codec, data, id & {SEQ_MAX})",
    ],
]

LIVE = "(expires_at IS NULL OR expires_at > ?)"

SQL = sqlite3.Connection | sqlite3.Cursor
"""What runs a statement: reads use the connection, a batch one cursor for all its statements."""


def _record_sum_or_null(key: str, codec: str, data: object, version: int) -> int | None:
    """``sk_record_sum()``: NULL when ``data`` is not a blob (damage that no checksum can describe)."""
    return record_sum(key, str(codec), data, version) if isinstance(data, bytes) else None


def _entry_sum_or_null(log: str | None, codec: str, data: object, seq: int) -> int | None:
    """``sk_entry_sum()``: also NULL for an entry whose log row is gone (it is unreachable anyway)."""
    return entry_sum(log, str(codec), data, seq) if log is not None and isinstance(data, bytes) else None


def register_functions(c: sqlite3.Connection) -> None:
    """The SQL functions migration 2 back-fills checksums with (a few µs per connection)."""
    c.create_function("sk_record_sum", 4, _record_sum_or_null, deterministic=True)
    c.create_function("sk_entry_sum", 4, _entry_sum_or_null, deterministic=True)


def rowid(log_id: int, seq: int) -> int:
    return (log_id << SEQ_BITS) + seq  # + not |: seq = SEQ_MAX + 1 is the next log's start (an exclusive bound)


def header(c: SQL, log: str) -> tuple[Any, ...] | None:
    """(id, first_seq, last_seq, created_at, updated_at, expires_at) of a live log.

    ``sk_logs.last_seq`` only records trims of the whole log; the newest
    entry gives the real last seq and the last append time.
    """
    row = c.execute(
        "SELECT l.id, l.first_seq, l.last_seq, l.created_at, l.updated_at, l.expires_at, e.id, e.created_at"
        " FROM sk_logs l LEFT JOIN sk_entries e ON e.id = (SELECT max(id) FROM sk_entries"
        f" WHERE id BETWEEN l.id << {SEQ_BITS} AND (l.id << {SEQ_BITS}) + {SEQ_MAX}) WHERE l.name = ?",
        (log,),
    ).fetchone()
    if row is None or (row[5] is not None and row[5] <= time.time()):
        return None
    last_seq = max(row[2], (row[6] or 0) & SEQ_MAX)
    if last_seq < row[1]:
        return None
    return (row[0], row[1], last_seq, row[3], max(row[4], row[7] or 0), row[5])
