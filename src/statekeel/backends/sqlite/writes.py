"""What each op of a batch does to the SQLite tables, inside the batch's transaction.

Every handler takes the connection (a ``BEGIN IMMEDIATE`` transaction is open),
the op and the batch's ``now``, and returns the op's result; :data:`APPLY` has
one row per op type. A conflict raises, and the caller rolls the batch back.

Every row written gets its checksum (:mod:`statekeel.protocol.integrity`): a
put's version is numbered in SQL, so the CRC part comes in as a parameter and the
version is added there; an entry's seq is known here, so its checksum is whole.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from ...errors import ConflictError, InvalidInputError, StoreError
from ...protocol import (
    ANY,
    KEEP,
    Append,
    Delete,
    Entry,
    Expire,
    Load,
    LoadEntries,
    Op,
    OpResult,
    Put,
    Record,
    Rewrite,
    Touch,
    Trim,
)
from ...protocol.integrity import MASK, base_sum, crc32, entry_sum, head, record_sum
from ...protocol.keys import prefix_end
from .schema import LIVE, SEQ_BITS, SEQ_MAX, SQL, header, rowid

__all__ = ["APPLY", "drop_log"]


INT64_MAX = (1 << 63) - 1
"""SQLite's largest integer: no stored version can be above it."""


def _put(c: SQL, op: Put, now: float) -> Record:
    expect = op.expect
    if isinstance(expect, int) and not 0 <= expect <= INT64_MAX:
        cur = _current(c, op.key, now)  # no record can be at that version: as memory://, a conflict
        raise ConflictError(op.key, expect, cur[0] if cur else None)
    keep = op.expires_at is KEEP
    base = base_sum(op.key, op.codec, op.data)
    if isinstance(expect, int):
        args: tuple[Any, ...] = (op.key, op.data, op.codec, now, None if keep else op.expires_at, expect, base)
        row = c.execute(_PUT_SQL[keep, "cas"], args).fetchone()
    else:
        args = (op.key, op.data, op.codec, now, None if keep else op.expires_at, (base + 1) & MASK, base)
        row = c.execute(_PUT_SQL[keep, "create" if expect is None else "any"], args).fetchone()
    if row is None:
        cur = _current(c, op.key, now)
        raise ConflictError(op.key, expect if expect is not ANY else None, cur[0] if cur else None)
    return Record(op.key, op.data, op.codec, row[0], row[1], now, row[2])


def _put_sql(keep: bool, kind: str) -> str:
    """One statement per put: compare-and-set is its WHERE clause.

    Parameters by number (cheaper to bind than by name): ?1 key, ?2 data, ?3 codec,
    ?4 now, ?5 expires_at, ?6 the expected version ("cas") or the checksum at
    version 1 (otherwise), ?7 the checksum's CRC part, to which SQL adds the version.
    """
    dead = "(sk_kv.expires_at IS NOT NULL AND sk_kv.expires_at <= ?4)"
    expires = f"CASE WHEN {dead} THEN NULL ELSE sk_kv.expires_at END" if keep else "?5"
    if kind == "cas":
        return (
            "UPDATE sk_kv SET data = ?2, codec = ?3, version = version + 1,"
            " checksum = (?7 + version + 1) % 4294967296,"
            f" updated_at = ?4, expires_at = {expires.replace('sk_kv.', '')}"
            f" WHERE key = ?1 AND version = ?6 AND NOT {dead.replace('sk_kv.', '')}"
            " RETURNING version, created_at, expires_at"
        )
    guard = f" WHERE {dead}" if kind == "create" else ""
    return (
        "INSERT INTO sk_kv VALUES (?1, ?2, ?3, 1, ?4, ?4, ?5, ?6)"
        " ON CONFLICT (key) DO UPDATE SET data = ?2, codec = ?3,"
        f" version = CASE WHEN {dead} THEN 1 ELSE sk_kv.version + 1 END,"
        f" checksum = (?7 + CASE WHEN {dead} THEN 1 ELSE sk_kv.version + 1 END) % 4294967296,"
        f" created_at = CASE WHEN {dead} THEN ?4 ELSE sk_kv.created_at END,"
        f" updated_at = ?4, expires_at = {expires}{guard}"
        " RETURNING version, created_at, expires_at"
    )


_PUT_SQL = {(keep, kind): _put_sql(keep, kind) for keep in (False, True) for kind in ("cas", "create", "any")}
"""Every put statement, built once (by whether the expiry is kept, and the kind of expect)."""


def _current(c: SQL, key: str, now: float) -> tuple[int, float, Any] | None:
    row = c.execute(
        "SELECT version, created_at, expires_at FROM sk_kv WHERE key = ?", (key,)
    ).fetchone()
    if row is None or (row[2] is not None and row[2] <= now):
        return None
    return row  # type: ignore[no-any-return]


def _delete(c: SQL, op: Delete, now: float) -> bool:
    cur = _current(c, op.key, now)
    if op.expect is not ANY and op.expect != (cur[0] if cur else None):
        raise ConflictError(op.key, op.expect, cur[0] if cur else None)
    c.execute("DELETE FROM sk_kv WHERE key = ?", (op.key,))
    return cur is not None


def _append(c: SQL, op: Append, now: float) -> int:
    # The header is only read here: last_seq comes from the entries' primary
    # key, so an append dirties no page but the entries' own.
    row = c.execute(
        "SELECT id, expires_at, (SELECT max(id) FROM sk_entries WHERE id BETWEEN"
        f" sk_logs.id << {SEQ_BITS} AND (sk_logs.id << {SEQ_BITS}) + {SEQ_MAX}), last_seq"
        " FROM sk_logs WHERE name = ?",
        (op.log,),
    ).fetchone()
    if row is None or (row[1] is not None and row[1] <= now):
        log_id, first = _new_log(c, op, now), 1
    else:
        log_id, first = row[0], max((row[2] or 0) & SEQ_MAX, row[3]) + 1
        if op.expires_at is not KEEP and op.expires_at != row[1]:
            c.execute("UPDATE sk_logs SET expires_at = ? WHERE id = ?", (op.expires_at, log_id))
    if op.at is not None and op.at != first:
        raise ConflictError(op.log, op.at - 1, first - 1)
    if first + len(op.items) > SEQ_MAX:
        raise StoreError(f"log {op.log!r} is full ({SEQ_MAX} entries); trim it or start a new one")
    base = rowid(log_id, first)
    log = op.log
    # the checksum of entry first + i, spelled out (seal(base_sum(...)) is two calls per entry)
    c.executemany(
        "INSERT INTO sk_entries VALUES (?, ?, ?, ?, ?)",
        [(base + i, data, codec, now, (crc32(data, head(log, codec)) + first + i) & MASK)
         for i, (data, codec) in enumerate(op.items)],
    )
    return first


def _new_log(c: SQL, op: Append, now: float) -> int:
    """Create ``op.log`` (replacing an expired log of that name)."""
    dead = c.execute("SELECT id FROM sk_logs WHERE name = ?", (op.log,)).fetchone()
    if dead is not None:
        drop_log(c, dead[0])
    expires = None if op.expires_at is KEEP else op.expires_at
    log_id = c.execute(
        "INSERT INTO sk_logs (name, first_seq, last_seq, created_at, updated_at, expires_at)"
        " VALUES (?, 1, 0, ?, ?, ?)",
        (op.log, now, now, expires),
    ).lastrowid
    assert log_id is not None
    return log_id


def drop_log(c: SQL, log_id: int) -> None:
    """Delete a log's entries and its header row."""
    c.execute("DELETE FROM sk_entries WHERE id BETWEEN ? AND ?", (rowid(log_id, 0), rowid(log_id, SEQ_MAX)))
    c.execute("DELETE FROM sk_logs WHERE id = ?", (log_id,))


def _touch(c: SQL, op: Touch, now: float) -> bool:
    sets, args = ("updated_at = ?", [now]) if op.expires_at is KEEP else (
        "updated_at = ?, expires_at = ?",
        [now, op.expires_at],
    )
    live = (now,)
    if op.refresh is not None:  # a TTL refresh: only the version read, still expiring
        sql = f"UPDATE sk_kv SET {sets} WHERE key = ? AND {LIVE} AND version = ? AND expires_at IS NOT NULL"
        return c.execute(sql, (*args, op.key, *live, op.refresh)).rowcount > 0
    n = c.execute(f"UPDATE sk_kv SET {sets} WHERE key = ? AND {LIVE}", (*args, op.key, *live)).rowcount
    if n:
        return True
    n = c.execute(f"UPDATE sk_logs SET {sets} WHERE name = ? AND {LIVE}", (*args, op.key, *live)).rowcount
    return n > 0


def _expire(c: SQL, op: Expire, now: float) -> int:
    bounds = (op.expires_at, op.prefix, prefix_end(op.prefix), now)
    n = c.execute(f"UPDATE sk_kv SET expires_at = ? WHERE key >= ? AND key < ? AND {LIVE}", bounds).rowcount
    n += c.execute(
        f"UPDATE sk_logs SET expires_at = ? WHERE name >= ? AND name < ? AND {LIVE}", bounds
    ).rowcount
    return n


def _trim(c: SQL, op: Trim, now: float) -> int:
    head = header(c, op.log)
    if head is None:
        return 0
    before = max(0, min(op.before, head[2] + 1))
    n = c.execute(
        "DELETE FROM sk_entries WHERE id >= ? AND id < ?", (rowid(head[0], 0), rowid(head[0], before))
    ).rowcount
    c.execute(
        "UPDATE sk_logs SET first_seq = max(first_seq, ?), last_seq = ? WHERE id = ?",
        (before, head[2], head[0]),
    )
    return n


def _rewrite(c: SQL, op: Rewrite, now: float) -> bool:
    head = header(c, op.log)
    if head is None or not 0 < op.seq <= SEQ_MAX:
        return False
    return c.execute(
        "UPDATE sk_entries SET data = ?, codec = ?, checksum = ? WHERE id = ?",
        (op.data, op.codec, entry_sum(op.log, op.codec, op.data, op.seq), rowid(head[0], op.seq)),
    ).rowcount > 0


def _load(c: SQL, op: Load, now: float) -> Record:
    r = op.record
    if not 0 < r.version <= INT64_MAX:
        raise InvalidInputError(f"record {r.key!r} has version {r.version}; versions run from 1 to 2**63 - 1")
    c.execute(
        "INSERT OR REPLACE INTO sk_kv VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (r.key, r.data, r.codec, r.version, r.created_at, r.updated_at, r.expires_at,
         record_sum(r.key, r.codec, r.data, r.version)),
    )
    return r


def _load_entries(c: SQL, op: LoadEntries, now: float) -> int:
    for e in op.entries:
        if not 0 < e.seq <= SEQ_MAX:
            raise InvalidInputError(f"entry {e.seq} of log {op.log!r}: entry seqs run from 1 to {SEQ_MAX}")
    head = header(c, op.log)
    if head is None:
        if not op.entries:
            return 0
        dead = c.execute("SELECT id FROM sk_logs WHERE name = ?", (op.log,)).fetchone()
        if dead is not None:
            drop_log(c, dead[0])
        first = op.entries[0]
        log_id = c.execute(
            "INSERT INTO sk_logs (name, first_seq, last_seq, created_at, updated_at, expires_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (op.log, first.seq, first.seq - 1, first.created_at, first.created_at, op.expires_at),
        ).lastrowid
        last = first.seq - 1
    else:
        log_id, last = head[0], head[2]
        c.execute("UPDATE sk_logs SET expires_at = ? WHERE id = ?", (op.expires_at, log_id))
    fresh: list[Entry] = []
    for e in op.entries:  # like memory: only entries above the last seq so far, in order
        if e.seq > last:
            fresh.append(e)
            last = e.seq
    c.executemany(
        "INSERT INTO sk_entries VALUES (?, ?, ?, ?, ?)",
        [(rowid(log_id, e.seq), e.data, e.codec, e.created_at,  # type: ignore[arg-type]
          entry_sum(op.log, e.codec, e.data, e.seq)) for e in fresh],
    )
    return len(fresh)


APPLY: dict[type[Op], Callable[[sqlite3.Cursor, Any, float], OpResult]] = {
    Put: _put,
    Delete: _delete,
    Append: _append,
    Touch: _touch,
    Expire: _expire,
    Trim: _trim,
    Load: _load,
    LoadEntries: _load_entries,
    Rewrite: _rewrite,
}
"""The handler of each op type: one row per op."""
