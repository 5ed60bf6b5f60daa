"""The SQLite backend itself: one connection, reads, batches (see :mod:`.writes`) and migrations."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from ...errors import ConfigurationError, CorruptionError, NotAStoreError, SchemaTooNewError, translate
from ...protocol import Backend, Entry, LogInfo, MigrationStatus, Op, OpResult, Record
from ...protocol.checks import check_ops
from ...protocol.group import ThreadGroup
from ...protocol.keys import prefix_end
from .._closed import closed, release
from .._dispatch import handlers
from .._url import ParsedURL
from .connect import connect
from .errors import map_error
from .schema import LIVE, MIGRATIONS, SEQ_MAX, header, rowid
from .verify import ENTRY_COLUMNS, VALUE_COLUMNS, entries_of, record_of, values_if_intact
from .wal import wal_problems
from .writes import APPLY, INT64_MAX, drop_log
from .search import SQLiteMemoryIndex  # store.memory()'s native index (issue 16)

__all__ = ["SQLiteBackend"]

_RECORD = "key, data, codec, version, created_at, updated_at, expires_at, checksum"
"""The columns of a record row: a :class:`Record`'s fields, then the checksum (see :func:`record_of`)."""


def _limit(n: int) -> int:
    """A row limit SQLite can bind: beyond 64 bits means no limit; below 0, no rows (as memory://)."""
    return min(max(n, 0), INT64_MAX)


def _begin(c: sqlite3.Connection, cur: sqlite3.Cursor | None = None) -> None:
    """``BEGIN IMMEDIATE`` (on ``cur`` when given), first ending a transaction that an earlier
    failed ROLLBACK left open."""
    if c.in_transaction:
        _rollback(c)
    (cur or c).execute("BEGIN IMMEDIATE")


def _rollback(c: sqlite3.Connection) -> None:
    """Roll back after a failure — also a failed COMMIT, which leaves the transaction (and the
    write lock) open. Its own error is dropped: the caller re-raises the one that matters."""
    try:
        c.execute("ROLLBACK")
    except sqlite3.Error:
        pass


def _get_many(c: sqlite3.Connection, keys: Sequence[str]) -> list[Record | None]:
    """The live records at ``keys`` (None where there is none), aligned with them."""
    sql = f"SELECT {_RECORD} FROM sk_kv WHERE key IN ({','.join('?' * len(keys))}) AND {LIVE}"
    found = {r[0]: record_of(r) for r in c.execute(sql, (*keys, time.time()))}
    return [found.get(k) for k in keys]


def _values(c: sqlite3.Connection, log: str, limit: int | None, reverse: bool) -> list[tuple[bytes, str]] | None:
    """``(data, codec)`` of the entries ``read_values`` returns, or None if a row's checksum
    does not match or it has none (the caller reads entry by entry, naming the damaged one)."""
    head = header(c, log)
    if head is None:
        return []
    rows = c.execute(
        f"SELECT {VALUE_COLUMNS} FROM sk_entries WHERE id >= ? AND id < ?"
        f" ORDER BY id {'DESC' if reverse else 'ASC'} LIMIT ?",
        (rowid(head[0], head[1]), rowid(head[0], head[2] + 1), -1 if limit is None else _limit(limit)),
    ).fetchall()
    if reverse:
        rows.reverse()
    return values_if_intact(log, rows)


class SQLiteBackend(Backend):
    """One connection per backend, serialised by a lock; one file shared by processes."""

    OPTIONS = ("durability", "timeout")
    """The URL options this backend reads; any other is refused (a misspelt one must not be ignored)."""

    short_messages = True
    """Values are opaque blobs here: plain chat messages are stored as their content's bytes."""

    def __init__(self, url: ParsedURL, *, migrate: bool = True) -> None:
        self.url = url.redacted
        self.path = url.sqlite_path()
        url.refuse_unknown(self.OPTIONS)
        durability = url.option("durability", "full").lower()
        if durability not in ("full", "normal"):
            raise ConfigurationError(
                f"?durability={durability!r} is not valid; use 'full' (default) or 'normal'"
            )
        self._timeout = url.float_option("timeout", 30.0)
        if not 0 <= self._timeout <= 86_400:  # far longer is a mistake (1e300 wraps SQLite's busy timeout)
            raise ConfigurationError(f"?timeout= in {self.url} must be 0 to 86,400 seconds (a day), e.g. ?timeout=10")
        if self.path != ":memory:":
            self._refuse_damaged_wal()
        self._lock = threading.RLock()
        self._group = ThreadGroup(lambda: self._lock, self._commit)
        self._conn = connect(self.path, self._timeout, durability)
        if migrate:
            try:
                self.migrate()
            except BaseException:
                self.close()  # a half-open handle must not keep a lock on the file
                raise

    def _refuse_damaged_wal(self) -> None:
        """Refuse to open (and so to checkpoint or overwrite) a WAL whose committed data SQLite would drop.

        Cheap: nothing to do without a ``-wal`` file, O(1) when SQLite accepts every frame in it.
        """
        try:
            problems = wal_problems(self.path, min(self._timeout, 5.0))
        except (sqlite3.Error, OSError):
            return  # not openable as a database: connect() reports that, typed
        if problems:
            raise CorruptionError(
                f"{self.url} cannot be opened safely: {problems[0]}; `statekeel doctor` lists the problem",
                os.path.abspath(self.path) + "-wal",
            )

    # -- plumbing ------------------------------------------------------------
    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock, translate(map_error):
            yield self._conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock, translate(map_error):
            _begin(self._conn)
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException:
                _rollback(self._conn)
                raise

    # -- reads ---------------------------------------------------------------
    def get(self, key: str, *, include_expired: bool = False) -> Record | None:
        sql = f"SELECT {_RECORD} FROM sk_kv WHERE key = ?"
        with self._read() as c:
            row = c.execute(sql, (key,)).fetchone()
        if row is None or not (include_expired or row[6] is None or row[6] > time.time()):
            return None
        return record_of(row)

    def get_many(self, keys: Sequence[str]) -> list[Record | None]:
        if not keys:
            return []
        with self._read() as c:
            return _get_many(c, keys)

    def scan(self, prefix: str, *, after: str | None = None, limit: int = 100) -> list[Record]:
        lo = prefix if after is None or after < prefix else after
        op = ">" if after is not None and after >= prefix else ">="
        sql = f"SELECT {_RECORD} FROM sk_kv WHERE key {op} ? AND key < ? AND {LIVE} ORDER BY key LIMIT ?"
        with self._read() as c:
            rows = c.execute(sql, (lo, prefix_end(prefix), time.time(), _limit(limit))).fetchall()
        return [record_of(r) for r in rows if r[0].startswith(prefix)]

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
            lo = rowid(head[0], min(max(start, 1), SEQ_MAX + 1))
            hi = rowid(head[0], max(min(head[2] + 1 if stop is None else stop, SEQ_MAX + 1), 0))
            rows = c.execute(
                f"SELECT {ENTRY_COLUMNS} FROM sk_entries WHERE id >= ? AND id < ?"
                f" ORDER BY id {order} LIMIT ?",
                (lo, hi, -1 if limit is None else _limit(limit)),
            ).fetchall()
        if reverse:
            rows.reverse()
        return entries_of(log, rows)

    def read_values(
        self, log: str, *, limit: int | None = None, reverse: bool = False
    ) -> list[tuple[bytes, str]]:
        with self._read() as c:
            values = _values(c, log, limit, reverse)
        if values is None:  # damaged, or rows from before checksums: read() checks row by row
            return [(e.data, e.codec) for e in self.read(log, limit=limit, reverse=reverse)]
        return values

    def get_many_and_values_nowait(
        self, keys: Sequence[str], log: str, *, limit: int | None = None, reverse: bool = False
    ) -> tuple[list[Record | None], list[tuple[bytes, str]]] | None:
        """:meth:`get_many_and_values` now if this handle's connection is free, else None.

        For callers on an event loop (the OpenAI Agents session's ``get_items``), where a thread
        hop costs more than reading a few rows: never behind a write another thread is making
        on this connection (its fsync), and a read in WAL mode takes no lock that a writer of
        another process holds (only a WAL recovery after a crash elsewhere makes readers wait).
        None also for rows a checksum refuses or from before checksums: the caller's worker
        makes the normal call, which raises naming the damaged row. Not in the backend protocol,
        so the event-loop guard (:mod:`statekeel._loopguard`) does not stop it."""
        if not self._lock.acquire(blocking=False):
            return None
        try:
            with translate(map_error):
                records = _get_many(self._conn, keys) if keys else []
                values = _values(self._conn, log, limit, reverse)
        finally:
            self._lock.release()
        return None if values is None else (records, values)

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
                    (lo, prefix_end(prefix), _limit(limit)),
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
    def apply(self, ops: Sequence[Op], *, now: float | None = None) -> list[OpResult]:
        """One transaction; batches other threads of this process write meanwhile are committed
        with it (group commit, :class:`~statekeel.protocol.group.ThreadGroup`: one fsync for
        all). A batch with its own clock (``now``) is committed alone."""
        check_ops(ops, now)
        lock, group = self._lock, self._group
        if now is not None:
            with lock:
                return self._commit(ops, now)
        if not group.queue and lock.acquire(blocking=False):  # nobody waits: no queue (a thread alone)
            try:
                if not group.queue:
                    return self._commit(ops)
            finally:
                lock.release()
        return group.apply(ops)

    def _commit(self, ops: Sequence[Op], now: float | None = None) -> list[OpResult]:
        # The hot path: written out instead of `with self._write()` (saves two
        # generator-based context managers per chat turn), and every statement of
        # the batch runs on one cursor: `Connection.execute` makes (and frees) a
        # new cursor per statement, about 1 µs each, five per chat turn. The lock is held.
        steps = handlers(APPLY, ops, "the sqlite:// backend")
        c = self._conn
        try:
            cur = c.cursor()
            _begin(c, cur)
            try:
                clock = time.time() if now is None else now
                results = [step(cur, op, clock) for step, op in zip(steps, ops)]
                cur.execute("COMMIT")
            except BaseException:
                cur.close()  # a half-read statement must not outlive the batch
                _rollback(c)
                raise
        except (sqlite3.Error, UnicodeEncodeError, OverflowError) as exc:
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
                (now, _limit(limit)),
            ).rowcount
            ids = c.execute(
                "SELECT id FROM sk_logs WHERE expires_at <= ? LIMIT ?", (now, _limit(limit - n))
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

    def reclaim(self) -> tuple[int, int]:
        """Give the pages deletes freed back to the file system: ``PRAGMA incremental_vacuum`` on a
        store created with ``auto_vacuum = INCREMENTAL`` (every store since this statekeel); a full
        ``VACUUM`` when most of the file is free (it rewrites only what is kept, which is then
        cheaper) or the file predates incremental mode (it converts it)."""
        before = self._bytes_on_disk()
        with self._lock, translate(map_error):
            c = self._conn
            free, pages = c.execute("PRAGMA freelist_count").fetchone()[0], c.execute("PRAGMA page_count").fetchone()[0]
            if c.execute("PRAGMA auto_vacuum").fetchone()[0] != 2 or free * 2 > pages:
                # mostly free: rewriting what is kept is cheaper than moving it page by page
                c.execute("PRAGMA auto_vacuum = INCREMENTAL")
                c.execute("VACUUM")
            else:  # executescript steps it to the end (execute would free one page per step)
                c.executescript("PRAGMA incremental_vacuum;")
            c.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        return before, self._bytes_on_disk()

    def _bytes_on_disk(self) -> int:
        if self.path == ":memory:":
            return 0
        return sum(os.path.getsize(p) for p in (self.path, self.path + "-wal") if os.path.exists(p))

    def integrity_check(self) -> list[str]:
        """Committed data a damaged WAL would lose, and SQLite's own check; an empty list means
        healthy. (Rows failing their checksums are found by ``statekeel doctor``'s walk over every
        record and entry, on every backend.)"""
        with translate(map_error):
            problems = wal_problems(self.path, self._timeout) if self.path != ":memory:" else []
        with self._read() as c:
            rows = [r[0] for r in c.execute("PRAGMA integrity_check")]
            problems += [] if rows == ["ok"] else rows
        return problems

    # -- memory index (issue 16: the derived index lives in backends/sqlite/search.py) --
    def memory_index(self) -> SQLiteMemoryIndex:
        """The native memory index (FTS5), created on first use (see :mod:`.search`)."""
        index: SQLiteMemoryIndex | None = self.__dict__.get("_memory_index")
        if index is None:
            index = self.__dict__["_memory_index"] = SQLiteMemoryIndex(self)
        return index

    def close(self) -> None:
        """Close the connection; later calls raise StoreClosedError. Idempotent."""
        with self._lock:
            conn, self._conn = self._conn, closed(self.url)
            release(conn, sqlite3.Error)
