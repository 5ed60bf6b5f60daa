"""The SQLite backend itself: one connection, reads, batches (see :mod:`.writes`) and migrations."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from ...errors import ConfigurationError, NotAStoreError, SchemaTooNewError, translate
from ...protocol import Backend, Entry, LogInfo, MigrationStatus, Op, OpResult, Record
from ...protocol.keys import prefix_end
from .._dispatch import handlers
from .._url import ParsedURL
from .errors import map_error
from .schema import LIVE, MIGRATIONS, SEQ_MAX, header, rowid
from .writes import APPLY, drop_log

__all__ = ["SQLiteBackend"]


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
        with translate(map_error):
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
        with self._lock, translate(map_error):
            yield self._conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock, translate(map_error):
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
            f" WHERE key IN ({marks}) AND {LIVE}"
        )
        with self._read() as c:
            found = {r[0]: Record(*r) for r in c.execute(sql, (*keys, time.time()))}
        return [found.get(k) for k in keys]

    def scan(self, prefix: str, *, after: str | None = None, limit: int = 100) -> list[Record]:
        lo = prefix if after is None or after < prefix else after
        op = ">" if after is not None and after >= prefix else ">="
        sql = (
            "SELECT key, data, codec, version, created_at, updated_at, expires_at FROM sk_kv"
            f" WHERE key {op} ? AND key < ? AND {LIVE} ORDER BY key LIMIT ?"
        )
        with self._read() as c:
            rows = c.execute(sql, (lo, prefix_end(prefix), time.time(), limit)).fetchall()
        return [Record(*r) for r in rows if r[0].startswith(prefix)]

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
            head = header(c, log)
            if head is None:
                return []
            order = "DESC" if reverse else "ASC"
            lo = rowid(head[0], max(start, 1))
            hi = rowid(head[0], min(head[2] + 1 if stop is None else stop, SEQ_MAX + 1))
            rows = c.execute(
                "SELECT id, data, codec, created_at FROM sk_entries WHERE id >= ? AND id < ?"
                f" ORDER BY id {order} LIMIT ?",
                (lo, hi, -1 if limit is None else limit),
            ).fetchall()
        if reverse:
            rows.reverse()
        return [Entry(log, r[0] & SEQ_MAX, r[1], r[2], r[3]) for r in rows]

    def read_values(
        self, log: str, *, limit: int | None = None, reverse: bool = False
    ) -> list[tuple[bytes, str]]:
        with self._read() as c:
            head = header(c, log)
            if head is None:
                return []
            rows = c.execute(
                "SELECT data, codec FROM sk_entries WHERE id >= ? AND id < ?"
                f" ORDER BY id {'DESC' if reverse else 'ASC'} LIMIT ?",
                (rowid(head[0], head[1]), rowid(head[0], head[2] + 1), -1 if limit is None else limit),
            ).fetchall()
        if reverse:
            rows.reverse()
        return rows

    def log_info(self, log: str) -> LogInfo | None:
        with self._read() as c:
            head = header(c, log)
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
                    head = header(c, name)
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
        steps = handlers(APPLY, ops, "the sqlite:// backend")
        with self._lock:
            try:
                c.execute("BEGIN IMMEDIATE")
                try:
                    now = time.time()
                    results = [step(c, op, now) for step, op in zip(steps, ops)]
                except BaseException:
                    c.execute("ROLLBACK")
                    raise
                c.execute("COMMIT")
            except sqlite3.Error as exc:
                mapped = map_error(exc)
                assert mapped is not None
                raise mapped from exc
        return results

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
                drop_log(c, log_id)
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
