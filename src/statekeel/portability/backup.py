"""Online backup and restore of a SQLite store, with SQLite's own backup API.

``backup_sqlite`` opens a second connection to the store's file and copies every
page in one step, inside one read transaction: the backup is the store as of
one instant, while writers keep writing (WAL mode lets them; they are never
blocked). It is written to a temp file beside the target, checked with
``PRAGMA integrity_check``, fsynced and renamed into place, so a backup file
that exists is complete. ``restore_sqlite`` copies a backup into the store
through SQLite's locking, so processes that have the store open see either the
old or the restored data, never a mix.

For other backends, copy to SQLite: ``copy_store(url, "sqlite:///backup.db")``.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import time
from dataclasses import dataclass
from urllib.parse import quote

from ..backends import parse
from ..backends.sqlite import MIGRATIONS
from ..errors import (
    ConfigurationError,
    InvalidInputError,
    NotAStoreError,
    SchemaTooNewError,
    StatekeelError,
    StoreError,
    translate,
)
from ._walk import opened

__all__ = ["BackupReport", "backup_sqlite", "restore_sqlite"]


@dataclass
class BackupReport:
    """What a backup or restore copied."""

    source: str
    target: str
    bytes: int
    records: int
    entries: int
    schema_version: int
    seconds: float


def _map(exc: BaseException) -> StatekeelError | None:
    if isinstance(exc, sqlite3.Error):
        return StoreError(f"SQLite backup failed: {exc}; check the paths and free disk space, then retry")
    return None


def _sqlite_path(url: str, what: str) -> str:
    parsed = parse(url)
    if parsed.scheme != "sqlite":
        raise ConfigurationError(
            f"{what} needs a sqlite:/// URL, got {parsed.redacted}; for other backends use "
            "copy_store(url, 'sqlite:///backup.db') or `statekeel copy`"
        )
    path = parsed.sqlite_path()
    if path == ":memory:":
        raise ConfigurationError(f"{parsed.redacted} is an in-memory database; there is no file to {what}")
    return os.path.abspath(path)


def _describe(conn: sqlite3.Connection, where: str) -> tuple[int, int, int]:
    """(schema version, records, entries) of a statekeel SQLite database, or a typed error."""
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as exc:
        raise NotAStoreError(f"{where} is not a SQLite database ({exc})") from exc
    if "statekeel_schema" not in tables:
        raise NotAStoreError(f"{where} is not a statekeel SQLite store (no statekeel_schema table)")
    version = int(conn.execute("SELECT max(version) FROM statekeel_schema").fetchone()[0] or 0)
    if version > len(MIGRATIONS):
        raise SchemaTooNewError(
            f"{where} has schema version {version}, newer than this statekeel understands "
            f"({len(MIGRATIONS)}); upgrade the statekeel package"
        )
    records = int(conn.execute("SELECT count(*) FROM sk_kv").fetchone()[0])
    entries = int(conn.execute("SELECT count(*) FROM sk_entries").fetchone()[0])
    return version, records, entries


def _check(conn: sqlite3.Connection, where: str) -> None:
    rows = [r[0] for r in conn.execute("PRAGMA integrity_check")]
    if rows != ["ok"]:
        raise StoreError(f"{where} fails SQLite's integrity check: {'; '.join(rows[:5])}")


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def backup_sqlite(url: str, file: str | os.PathLike[str], *, overwrite: bool = False) -> BackupReport:
    """Write a consistent copy of the SQLite store at ``url`` to ``file`` while it is in use."""
    began = time.perf_counter()
    source = _sqlite_path(url, "back up")
    target = os.path.abspath(os.fspath(file))
    if not os.path.exists(source):
        raise ConfigurationError(f"there is no SQLite store at {source}; check the URL")
    if os.path.exists(target) and not overwrite:
        raise InvalidInputError(f"{target} already exists; choose a new file or pass overwrite=True (--overwrite)")
    tmp = os.path.join(os.path.dirname(target), f".{os.path.basename(target)}.{secrets.token_hex(4)}.partial")
    try:
        with translate(_map):
            src = sqlite3.connect(source, timeout=30)
            try:
                _describe(src, source)
                dst = sqlite3.connect(tmp)
                try:
                    src.backup(dst)  # pages=-1: all pages in one step, one read transaction
                    dst.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
                    _check(dst, tmp)
                    version, records, entries = _describe(dst, tmp)
                finally:
                    dst.close()
            finally:
                src.close()
            _fsync(tmp)
            os.replace(tmp, target)
            _fsync(os.path.dirname(target))
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return BackupReport(url, target, os.path.getsize(target), records, entries, version, time.perf_counter() - began)


def restore_sqlite(file: str | os.PathLike[str], url: str, *, overwrite: bool = False) -> BackupReport:
    """Copy the backup ``file`` into the SQLite store at ``url``.

    A store that already holds data is only replaced with ``overwrite=True``;
    processes using it see the old data or the restored data, never a mix.
    """
    began = time.perf_counter()
    source = os.path.abspath(os.fspath(file))
    target = _sqlite_path(url, "restore")
    if not os.path.isfile(source):
        raise InvalidInputError(f"there is no backup file at {source!a}")
    if not _utf8(source):
        raise InvalidInputError(f"the backup file name {source!a} is not valid UTF-8; rename the file first")
    with translate(_map):
        src = sqlite3.connect(f"file:{quote(source)}?mode=ro", uri=True)
        try:
            _check(src, source)
            version, records, entries = _describe(src, source)
            _refuse_to_clobber(target, overwrite)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            dst = sqlite3.connect(target, timeout=30)
            try:
                src.backup(dst)
                dst.execute("PRAGMA journal_mode = WAL").fetchone()
            finally:
                dst.close()
        finally:
            src.close()
    with opened(url):  # opens like any store would: migrations, if the backup is older
        pass
    return BackupReport(str(source), url, os.path.getsize(target), records, entries, version, time.perf_counter() - began)


def _refuse_to_clobber(target: str, overwrite: bool) -> None:
    if not os.path.exists(target) or os.path.getsize(target) == 0 or overwrite:
        return
    conn = sqlite3.connect(target, timeout=30)
    try:
        _, records, entries = _describe(conn, target)
    finally:
        conn.close()
    if records or entries:
        raise InvalidInputError(
            f"{target} already holds a store with {records} records and {entries} log entries; "
            "pass overwrite=True (--overwrite) to replace it with the backup"
        )


def _utf8(path: str) -> bool:
    """Whether ``path`` is text SQLite's URI can carry (a name from non-UTF-8 bytes is not)."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
