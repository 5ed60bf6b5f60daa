"""``sqlite:///path.db`` — the embedded default.

WAL journal; ``synchronous=FULL`` by default, so a batch that returned survives
power loss; ``?durability=normal`` trades the last few commits on power loss
(never on a process crash) for fewer fsyncs. Writes take ``BEGIN IMMEDIATE``,
so several processes can share one file: writers queue on the lock for up to
``?timeout=`` seconds (default 30), readers never block.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from ..errors import (
    ConfigurationError,
    ConflictError,
    MigrationRequiredError,
    NotAStoreError,
    SchemaTooNewError,
    StatekeelError,
    StoreError,
    UnavailableError,
    translate,
)
from ..protocol import (
    ANY,
    KEEP,
    Append,
    Backend,
    Delete,
    Entry,
    Expire,
    LogInfo,
    MigrationStatus,
    Op,
    OpResult,
    Put,
    Record,
    Touch,
    Trim,
    Load,
    LoadEntries,
    Rewrite,
)
from ..protocol.keys import prefix_end
from ._url import ParsedURL

# The index of a migration is the schema version it brings the store to, minus one.
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
        # rowid = log_id << 32 | seq: one B-tree, no secondary index (see _SEQ_BITS)
        "CREATE TABLE sk_entries (id INTEGER PRIMARY KEY, data BLOB NOT NULL,"
        " codec TEXT NOT NULL, created_at REAL NOT NULL)",
    ],
]

_LIVE = "(expires_at IS NULL OR expires_at > ?)"

# An entry's rowid packs its log and position: a log holds up to 2**32 - 1
# entries and a store up to 2**31 logs; range scans on the rowid are O(N).
_SEQ_BITS = 32
_SEQ_MAX = (1 << _SEQ_BITS) - 1


def _rowid(log_id: int, seq: int) -> int:
    return (log_id << _SEQ_BITS) | seq



def _map_error(exc: BaseException) -> StatekeelError | None:
    if not isinstance(exc, sqlite3.Error):
        return None
    text = str(exc)
    if "malformed" in text:
        return StoreError(
            f"the SQLite store is damaged ({text}); run `statekeel doctor URL` to see what is affected, "
            "and restore from a backup (`statekeel restore`)"
        )
    if "file is not a database" in text:
        return NotAStoreError(
            f"this file is not a SQLite database statekeel can use ({text}); "
            "point the URL at a new file or at an existing statekeel store"
        )
    if "no such table" in text:
        return MigrationRequiredError(
            f"the store's schema is missing or old ({text}); run `statekeel migrate URL`"
        )
    if "locked" in text or "busy" in text:
        return UnavailableError(
            f"the SQLite database stayed locked by another writer ({text}); "
            "retry, or raise ?timeout= in the URL"
        )
    if "unable to open" in text or "readonly" in text:
        return ConfigurationError(
            f"cannot open the SQLite file for writing ({text}); "
            "check that its folder exists and is writable"
        )
    return StoreError(f"SQLite error: {text}")


class SQLiteBackend(Backend):
    """One connection per backend, serialised by a lock; one file shared by processes."""

    def __init__(self, url: ParsedURL, *, migrate: bool = True) -> None:
        self.url = url.redacted
        self.path = url.sqlite_path()
        durability = url.option("durability", "full").lower()
        if durability not in ("full", "normal"):
            raise ConfigurationError(
                f"?durability={durability!r} is not valid; use 'full' (default) or 'normal'"
            )
        timeout = url.float_option("timeout", 30.0)
        if self.path != ":memory:":
            folder = os.path.dirname(os.path.abspath(self.path))
            os.makedirs(folder, exist_ok=True)
        self._lock = threading.RLock()
        with translate(_map_error):
            self._conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=timeout
            )
            self._conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            self._conn.execute("PRAGMA journal_mode = WAL").fetchone()
            self._conn.execute(f"PRAGMA synchronous = {durability.upper()}")
        if migrate:
            self.migrate()

    # -- plumbing ------------------------------------------------------------
    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock, translate(_map_error):
            yield self._conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock, translate(_map_error):
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    # -- reads ---------------------------------------------------------------
    def get(self, key: str, *, include_expired: bool = False) -> Record | None:
        sql = "SELECT key, data, codec, version, created_at, updated_at, expires_at FROM sk_kv WHERE key = ?"
        with self._read() as c:
            row = c.execute(sql, (key,)).fetchone()
        if row is None or include_expired or row[6] is None or row[6] > time.time():
            return Record(*row) if row else None
        return None

    def get_many(self, keys: Sequence[str]) -> list[Record | None]:
        if not keys:
            return []
        marks = ",".join("?" * len(keys))
        sql = (
            "SELECT key, data, codec, version, created_at, updated_at, expires_at FROM sk_kv"
            f" WHERE key IN ({marks}) AND {_LIVE}"
        )
        with self._read() as c:
            found = {r[0]: Record(*r) for r in c.execute(sql, (*keys, time.time()))}
        return [found.get(k) for k in keys]

    def scan(self, prefix: str, *, after: str | None = None, limit: int = 100) -> list[Record]:
        lo = prefix if after is None or after < prefix else after
        op = ">" if after is not None and after >= prefix else ">="
        sql = (
            "SELECT key, data, codec, version, created_at, updated_at, expires_at FROM sk_kv"
            f" WHERE key {op} ? AND key < ? AND {_LIVE} ORDER BY key LIMIT ?"
        )
        with self._read() as c:
            rows = c.execute(sql, (lo, prefix_end(prefix), time.time(), limit)).fetchall()
        return [Record(*r) for r in rows if r[0].startswith(prefix)]

    def _header(self, c: sqlite3.Connection, log: str) -> tuple[Any, ...] | None:
        """(id, first_seq, last_seq, created_at, updated_at, expires_at) of a live log.

        ``sk_logs.last_seq`` only records trims of the whole log; the newest
        entry gives the real last seq and the last append time.
        """
        row = c.execute(
            "SELECT l.id, l.first_seq, l.last_seq, l.created_at, l.updated_at, l.expires_at, e.id, e.created_at"
            " FROM sk_logs l LEFT JOIN sk_entries e ON e.id = (SELECT max(id) FROM sk_entries"
            f" WHERE id BETWEEN l.id << {_SEQ_BITS} AND (l.id << {_SEQ_BITS}) + {_SEQ_MAX}) WHERE l.name = ?",
            (log,),
        ).fetchone()
        if row is None or (row[5] is not None and row[5] <= time.time()):
            return None
        last_seq = max(row[2], (row[6] or 0) & _SEQ_MAX)
        if last_seq < row[1]:
            return None
        return (row[0], row[1], last_seq, row[3], max(row[4], row[7] or 0), row[5])

    def read(
        self,
        log: str,
        *,
        start: int = 1,
        stop: int | None = None,
        limit: int | None = None,
        reverse: bool = False,
    ) -> list[Entry]:
        with self._read() as c:
            head = self._header(c, log)
            if head is None:
                return []
            order = "DESC" if reverse else "ASC"
            lo = _rowid(head[0], max(start, 1))
            hi = _rowid(head[0], min(head[2] + 1 if stop is None else stop, _SEQ_MAX + 1))
            rows = c.execute(
                "SELECT id, data, codec, created_at FROM sk_entries WHERE id >= ? AND id < ?"
                f" ORDER BY id {order} LIMIT ?",
                (lo, hi, -1 if limit is None else limit),
            ).fetchall()
        if reverse:
            rows.reverse()
        return [Entry(log, r[0] & _SEQ_MAX, r[1], r[2], r[3]) for r in rows]

    def read_values(
        self, log: str, *, limit: int | None = None, reverse: bool = False
    ) -> list[tuple[bytes, str]]:
        with self._read() as c:
            head = self._header(c, log)
            if head is None:
                return []
            rows = c.execute(
                "SELECT data, codec FROM sk_entries WHERE id >= ? AND id < ?"
                f" ORDER BY id {'DESC' if reverse else 'ASC'} LIMIT ?",
                (_rowid(head[0], head[1]), _rowid(head[0], head[2] + 1), -1 if limit is None else limit),
            ).fetchall()
        if reverse:
            rows.reverse()
        return rows

    def log_info(self, log: str) -> LogInfo | None:
        with self._read() as c:
            head = self._header(c, log)
        return LogInfo(log, *head[1:]) if head else None

    def scan_logs(self, prefix: str, *, after: str | None = None, limit: int = 100) -> list[LogInfo]:
        lo = after if after is not None and after >= prefix else prefix
        op = ">" if after is not None and after >= prefix else ">="
        out: list[LogInfo] = []
        with self._read() as c:
            while len(out) < limit:
                names = [r[0] for r in c.execute(
                    f"SELECT name FROM sk_logs WHERE name {op} ? AND name < ? ORDER BY name LIMIT ?",
                    (lo, prefix_end(prefix), limit),
                )]
                for name in names:
                    head = self._header(c, name)
                    if head is not None and len(out) < limit:
                        out.append(LogInfo(name, *head[1:]))
                if len(names) < limit:
                    break
                lo, op = names[-1], ">"
        return out

    # -- writes --------------------------------------------------------------
    def apply(self, ops: Sequence[Op]) -> list[OpResult]:
        # The hot path: written out instead of `with self._write()` (saves two
        # generator-based context managers per chat turn).
        c = self._conn
        with self._lock:
            try:
                c.execute("BEGIN IMMEDIATE")
                try:
                    now = time.time()
                    results = [self._apply_one(c, op, now) for op in ops]
                except BaseException:
                    c.execute("ROLLBACK")
                    raise
                c.execute("COMMIT")
            except sqlite3.Error as exc:
                mapped = _map_error(exc)
                assert mapped is not None
                raise mapped from exc
        return results

    def _apply_one(self, c: sqlite3.Connection, op: Op, now: float) -> OpResult:
        if isinstance(op, Put):
            return self._put(c, op, now)
        if isinstance(op, Delete):
            return self._delete(c, op, now)
        if isinstance(op, Append):
            return self._append(c, op, now)
        if isinstance(op, Touch):
            return self._touch(c, op, now)
        if isinstance(op, Expire):
            return self._expire(c, op, now)
        if isinstance(op, Load):
            r = op.record
            c.execute(
                "INSERT OR REPLACE INTO sk_kv VALUES (?, ?, ?, ?, ?, ?, ?)",
                (r.key, r.data, r.codec, r.version, r.created_at, r.updated_at, r.expires_at),
            )
            return r
        if isinstance(op, LoadEntries):
            return self._load_entries(c, op, now)
        if isinstance(op, Rewrite):
            head = self._header(c, op.log)
            if head is None:
                return False
            return c.execute(
                "UPDATE sk_entries SET data = ?, codec = ? WHERE id = ?", (op.data, op.codec, _rowid(head[0], op.seq))
            ).rowcount > 0
        return self._trim(c, op)

    def _load_entries(self, c: sqlite3.Connection, op: LoadEntries, now: float) -> int:
        head = self._header(c, op.log)
        if head is None:
            if not op.entries:
                return 0
            dead = c.execute("SELECT id FROM sk_logs WHERE name = ?", (op.log,)).fetchone()
            if dead is not None:
                self._drop_log(c, dead[0])
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
            "INSERT INTO sk_entries VALUES (?, ?, ?, ?)",
            [(_rowid(log_id, e.seq), e.data, e.codec, e.created_at) for e in fresh],  # type: ignore[arg-type]
        )
        return len(fresh)

    def _current(self, c: sqlite3.Connection, key: str, now: float) -> tuple[int, float, Any] | None:
        row = c.execute(
            "SELECT version, created_at, expires_at FROM sk_kv WHERE key = ?", (key,)
        ).fetchone()
        if row is None or (row[2] is not None and row[2] <= now):
            return None
        return row  # type: ignore[no-any-return]

    def _put(self, c: sqlite3.Connection, op: Put, now: float) -> Record:
        row = c.execute(*self._put_sql(op, now)).fetchone()
        if row is None:
            cur = self._current(c, op.key, now)
            raise ConflictError(op.key, op.expect if op.expect is not ANY else None, cur[0] if cur else None)
        return Record(op.key, op.data, op.codec, row[0], row[1], now, row[2])

    @staticmethod
    def _put_sql(op: Put, now: float) -> tuple[str, tuple[Any, ...]]:
        """One statement per put: compare-and-set is its WHERE clause."""
        dead = "(sk_kv.expires_at IS NOT NULL AND sk_kv.expires_at <= :now)"
        keep = op.expires_at is KEEP
        expires = f"CASE WHEN {dead} THEN NULL ELSE sk_kv.expires_at END" if keep else ":exp"
        args = {"key": op.key, "data": op.data, "codec": op.codec, "now": now,
                "exp": None if keep else op.expires_at, "expect": op.expect}
        if isinstance(op.expect, int):
            return (
                "UPDATE sk_kv SET data = :data, codec = :codec, version = version + 1,"
                f" updated_at = :now, expires_at = {expires.replace('sk_kv.', '')}"
                f" WHERE key = :key AND version = :expect AND NOT {dead.replace('sk_kv.', '')}"
                " RETURNING version, created_at, expires_at",
                args,  # type: ignore[return-value]
            )
        guard = f" WHERE {dead}" if op.expect is None else ""
        return (
            "INSERT INTO sk_kv VALUES (:key, :data, :codec, 1, :now, :now, :exp)"
            " ON CONFLICT (key) DO UPDATE SET data = :data, codec = :codec,"
            f" version = CASE WHEN {dead} THEN 1 ELSE sk_kv.version + 1 END,"
            f" created_at = CASE WHEN {dead} THEN :now ELSE sk_kv.created_at END,"
            f" updated_at = :now, expires_at = {expires}{guard}"
            " RETURNING version, created_at, expires_at",
            args,  # type: ignore[return-value]
        )

    def _delete(self, c: sqlite3.Connection, op: Delete, now: float) -> bool:
        cur = self._current(c, op.key, now)
        if op.expect is not ANY and op.expect != (cur[0] if cur else None):
            raise ConflictError(op.key, op.expect, cur[0] if cur else None)
        c.execute("DELETE FROM sk_kv WHERE key = ?", (op.key,))
        return cur is not None

    def _append(self, c: sqlite3.Connection, op: Append, now: float) -> int:
        # The header is only read here: last_seq comes from the entries' primary
        # key, so an append dirties no page but the entries' own.
        row = c.execute(
            "SELECT id, expires_at, (SELECT max(id) FROM sk_entries WHERE id BETWEEN"
            f" sk_logs.id << {_SEQ_BITS} AND (sk_logs.id << {_SEQ_BITS}) + {_SEQ_MAX}), last_seq"
            " FROM sk_logs WHERE name = ?",
            (op.log,),
        ).fetchone()
        if row is None or (row[1] is not None and row[1] <= now):
            log_id, first = self._new_log(c, op, now), 1
        else:
            log_id, first = row[0], max((row[2] or 0) & _SEQ_MAX, row[3]) + 1
            if op.expires_at is not KEEP and op.expires_at != row[1]:
                c.execute("UPDATE sk_logs SET expires_at = ? WHERE id = ?", (op.expires_at, log_id))
        if first + len(op.items) > _SEQ_MAX:
            raise StoreError(f"log {op.log!r} is full ({_SEQ_MAX} entries); trim it or start a new one")
        base = _rowid(log_id, first)
        c.executemany(
            "INSERT INTO sk_entries VALUES (?, ?, ?, ?)",
            [(base + i, data, codec, now) for i, (data, codec) in enumerate(op.items)],
        )
        return first

    def _new_log(self, c: sqlite3.Connection, op: Append, now: float) -> int:
        """Create ``op.log`` (replacing an expired log of that name)."""
        dead = c.execute("SELECT id FROM sk_logs WHERE name = ?", (op.log,)).fetchone()
        if dead is not None:
            self._drop_log(c, dead[0])
        expires = None if op.expires_at is KEEP else op.expires_at
        log_id = c.execute(
            "INSERT INTO sk_logs (name, first_seq, last_seq, created_at, updated_at, expires_at)"
            " VALUES (?, 1, 0, ?, ?, ?)",
            (op.log, now, now, expires),
        ).lastrowid
        assert log_id is not None
        return log_id

    def _drop_log(self, c: sqlite3.Connection, log_id: int) -> None:
        c.execute("DELETE FROM sk_entries WHERE id BETWEEN ? AND ?", (_rowid(log_id, 0), _rowid(log_id, _SEQ_MAX)))
        c.execute("DELETE FROM sk_logs WHERE id = ?", (log_id,))

    def _touch(self, c: sqlite3.Connection, op: Touch, now: float) -> bool:
        sets, args = ("updated_at = ?", [now]) if op.expires_at is KEEP else (
            "updated_at = ?, expires_at = ?",
            [now, op.expires_at],
        )
        live = (now,)
        n = c.execute(f"UPDATE sk_kv SET {sets} WHERE key = ? AND {_LIVE}", (*args, op.key, *live)).rowcount
        if n:
            return True
        n = c.execute(f"UPDATE sk_logs SET {sets} WHERE name = ? AND {_LIVE}", (*args, op.key, *live)).rowcount
        return n > 0

    def _expire(self, c: sqlite3.Connection, op: Expire, now: float) -> int:
        bounds = (op.expires_at, op.prefix, prefix_end(op.prefix), now)
        n = c.execute(f"UPDATE sk_kv SET expires_at = ? WHERE key >= ? AND key < ? AND {_LIVE}", bounds).rowcount
        n += c.execute(
            f"UPDATE sk_logs SET expires_at = ? WHERE name >= ? AND name < ? AND {_LIVE}", bounds
        ).rowcount
        return n

    def _trim(self, c: sqlite3.Connection, op: Trim) -> int:
        head = self._header(c, op.log)
        if head is None:
            return 0
        before = min(op.before, head[2] + 1)
        n = c.execute(
            "DELETE FROM sk_entries WHERE id >= ? AND id < ?", (_rowid(head[0], 0), _rowid(head[0], before))
        ).rowcount
        c.execute(
            "UPDATE sk_logs SET first_seq = max(first_seq, ?), last_seq = ? WHERE id = ?",
            (before, head[2], head[0]),
        )
        return n

    # -- housekeeping --------------------------------------------------------
    def purge_expired(self, *, limit: int = 1000) -> int:
        with self._write() as c:
            now = time.time()
            n = c.execute(
                "DELETE FROM sk_kv WHERE key IN (SELECT key FROM sk_kv WHERE expires_at <= ? LIMIT ?)",
                (now, limit),
            ).rowcount
            ids = c.execute(
                "SELECT id FROM sk_logs WHERE expires_at <= ? LIMIT ?", (now, max(0, limit - n))
            ).fetchall()
            for (log_id,) in ids:
                self._drop_log(c, log_id)
        return n + len(ids)

    def _schema_version(self, c: sqlite3.Connection) -> int:
        tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "statekeel_schema" not in tables:
            if tables:
                raise NotAStoreError(
                    f"{self.path} already holds tables ({', '.join(sorted(tables))}) that are not "
                    "a statekeel store; use another file"
                )
            return 0
        return int(c.execute("SELECT max(version) FROM statekeel_schema").fetchone()[0] or 0)

    def migrate(self, *, check: bool = False) -> MigrationStatus:
        with self._read() as c:
            current = self._schema_version(c)
        target = len(MIGRATIONS)
        if current > target:
            raise SchemaTooNewError(
                f"{self.path} has schema version {current}, newer than this statekeel "
                f"understands ({target}); upgrade the statekeel package"
            )
        pending = [sql for step in MIGRATIONS[current:] for sql in step]
        if check or current == target:
            return MigrationStatus(current, target, pending)
        with self._write() as c:
            current = self._schema_version(c)  # another process may have migrated meanwhile
            for version in range(current + 1, target + 1):
                for sql in MIGRATIONS[version - 1]:
                    c.execute(sql)
                c.execute("INSERT INTO statekeel_schema VALUES (?, ?)", (version, time.time()))
        return MigrationStatus(target, target, [])

    def checkpoint_wal(self) -> None:
        """Fold the WAL back into the main file (used by backups and benchmarks)."""
        with self._read() as c:
            c.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    def integrity_check(self) -> list[str]:
        """SQLite's own integrity check; an empty list means healthy."""
        with self._read() as c:
            rows = [r[0] for r in c.execute("PRAGMA integrity_check")]
        return [] if rows == ["ok"] else rows

    def close(self) -> None:
        with self._lock:
            try:
                self._conn.close()
            except sqlite3.Error:
                pass
