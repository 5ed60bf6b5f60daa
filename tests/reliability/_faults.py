"""Fault injection for the reliability suite: the n-th driver call fails, once or from then on.

The databases stay real; only the call into the driver fails:

* SQLite — ``execute`` on the backend's real ``sqlite3`` connection raises
  ``sqlite3.OperationalError("disk I/O error")`` (the connection is wrapped as it is opened);
* files — ``os.write``/``pwrite``/``fsync``/``fdatasync``/``replace``/``rename``/``ftruncate``/
  ``unlink`` in the files backend's modules raise ``OSError`` (ENOSPC on odd n, EIO on even n);
* PostgreSQL — another connection terminates the server process of the connection in use
  (``pg_terminate_backend``) at the n-th of two points per ``Cursor.execute``: before it (the
  statement meets a dead connection), or after it (the statement ran, the reply is lost);
* Redis — the n-th ``send_packed_command`` or ``read_response`` of a redis-py connection raises
  ``redis.ConnectionError``: a failed send means the command never left, a failed read means
  it ran and its reply was lost (the "may have been applied" case).

:class:`BatchWatch` wraps ``store.backend.apply`` and, around every batch, compares a full
dump of the store: a failed batch must leave it unchanged — or, only when the error says the
write may have been applied, exactly as the reference backend (memory) applies the batch.
"""

from __future__ import annotations

import errno
import os
import re
import sqlite3
import subprocess
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
import redis
import redis.connection

from statekeel import ConflictError, StatekeelError
from statekeel.backends.files import backend as files_backend
from statekeel.backends.files import io as files_io
from statekeel.backends.files import journal as files_journal
from statekeel.backends.memory import MemoryBackend
from statekeel.backends.sqlite import backend as sqlite_backend
from statekeel.backends.sqlite import connect as sqlite_connect
from statekeel.protocol import Backend, Entry, Load, LoadEntries, Op, Record

INJECTABLE = ("sqlite", "files", "postgres", "redis")
"""The backends whose driver calls can be made to fail (memory has no driver)."""

Dump = tuple[tuple[Any, ...], tuple[Any, ...]]
"""Every live record (key, data, codec, version, expires_at) and every log with its entries."""


class Fault:
    """Counts the calls at the injection points; fails the n-th (once) or every call from the n-th on."""

    def __init__(self) -> None:
        self.fail_at: int | None = None
        self.persistent = False
        self.calls = 0
        self.fired = 0
        self.sites: list[str] = []
        """What failed, in order (``execute COMMIT``, ``fsync``, ``send``…)."""
        self._paused = 0

    def arm(self, n: int, *, persistent: bool) -> None:
        self.fail_at, self.persistent, self.calls, self.fired, self.sites = n, persistent, 0, 0, []

    def disarm(self) -> None:
        self.fail_at = None

    def hit(self, site: str) -> bool:
        """True if this call must fail."""
        if self._paused or self.fail_at is None:
            return False
        self.calls += 1
        if self.calls == self.fail_at or (self.persistent and self.calls > self.fail_at):
            self.fired += 1
            self.sites.append(site)
            return True
        return False

    @contextmanager
    def paused(self) -> Iterator[None]:
        """No call fails or counts inside (the test's own dumps and checks)."""
        self._paused += 1
        try:
            yield
        finally:
            self._paused -= 1


# -- SQLite --------------------------------------------------------------------------
class _FaultyConnection:
    """A real ``sqlite3`` connection whose ``execute``/``commit`` fail on cue."""

    def __init__(self, conn: sqlite3.Connection, fault: Fault) -> None:
        self._conn = conn
        self._fault = fault

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        if self._fault.hit(f"execute {sql.split()[0]}"):
            raise sqlite3.OperationalError("disk I/O error")
        return self._conn.execute(sql, params)

    def commit(self) -> None:
        if self._fault.hit("commit"):
            raise sqlite3.OperationalError("disk I/O error")
        self._conn.commit()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


class _SqliteModule:
    """The ``sqlite3`` module as the SQLite backend sees it: ``connect`` wraps the connection."""

    def __init__(self, fault: Fault) -> None:
        self._fault = fault

    def connect(self, *args: Any, **kwargs: Any) -> _FaultyConnection:
        return _FaultyConnection(sqlite3.connect(*args, **kwargs), self._fault)

    def __getattr__(self, name: str) -> Any:
        return getattr(sqlite3, name)


# -- files ---------------------------------------------------------------------------
FILE_CALLS = ("write", "pwrite", "fsync", "fdatasync", "replace", "rename", "ftruncate", "unlink")


class _FaultyOS:
    """The ``os`` module as the files backend sees it: the write calls fail on cue."""

    def __init__(self, fault: Fault) -> None:
        self._fault = fault

    def __getattr__(self, name: str) -> Any:
        real = getattr(os, name)
        if name not in FILE_CALLS:
            return real

        def call(*args: Any, **kwargs: Any) -> Any:
            if self._fault.hit(name):
                code = errno.ENOSPC if (self._fault.fail_at or 0) % 2 else errno.EIO
                raise OSError(code, os.strerror(code))
            return real(*args, **kwargs)

        return call


# -- PostgreSQL ----------------------------------------------------------------------
def _install_postgres(monkeypatch: pytest.MonkeyPatch, fault: Fault, server_url: str) -> psycopg.Connection[Any]:
    real = psycopg.Cursor.execute
    admin = psycopg.connect(server_url, autocommit=True)

    def kill(conn: psycopg.Connection[Any]) -> None:
        real(admin.cursor(), "SELECT pg_terminate_backend(%s, 10000)", (conn.info.backend_pid,))

    def execute(self: psycopg.Cursor[Any], query: Any, params: Any = None, **kwargs: Any) -> Any:
        if self.connection is admin:
            return real(self, query, params, **kwargs)
        if fault.hit("send"):
            kill(self.connection)
        cursor = real(self, query, params, **kwargs)
        if fault.hit("reply"):  # the statement ran (outside a pipeline: committed); its reply is lost
            kill(self.connection)
            raise psycopg.OperationalError("injected: server closed the connection unexpectedly")
        return cursor

    monkeypatch.setattr(psycopg.Cursor, "execute", execute)
    return admin


# -- Redis ---------------------------------------------------------------------------
def _install_redis(monkeypatch: pytest.MonkeyPatch, fault: Fault) -> None:
    cls = redis.connection.AbstractConnection
    real_send: Callable[..., None] = cls.send_packed_command
    real_read: Callable[..., Any] = cls.read_response

    def send(self: Any, command: Any, check_health: bool = True) -> None:
        if fault.hit("send"):
            self.disconnect()
            raise redis.ConnectionError("injected: the connection broke before the command was sent")
        real_send(self, command, check_health)

    def read(self: Any, *args: Any, **kwargs: Any) -> Any:
        if fault.hit("read"):
            self.disconnect()  # the reply is lost with the connection
            raise redis.ConnectionError("injected: the connection broke before the reply arrived")
        return real_read(self, *args, **kwargs)

    monkeypatch.setattr(cls, "send_packed_command", send)
    monkeypatch.setattr(cls, "read_response", read)


def install(backend: str, monkeypatch: pytest.MonkeyPatch, fault: Fault, server_url: str = "") -> Callable[[], None]:
    """Make every store of ``backend`` fail when ``fault`` says so; returns the clean-up."""
    if backend == "postgres":
        return _install_postgres(monkeypatch, fault, server_url).close
    if backend == "sqlite":
        for module in (sqlite_backend, sqlite_connect):  # whichever calls sqlite3.connect()
            monkeypatch.setattr(module, "sqlite3", _SqliteModule(fault))
    elif backend == "files":
        for module in (files_io, files_journal, files_backend):
            monkeypatch.setattr(module, "os", _FaultyOS(fault))
    elif backend == "redis":
        _install_redis(monkeypatch, fault)
    else:
        raise ValueError(f"no fault injection for {backend!r}; choose from {INJECTABLE}")
    return lambda: None


# -- dumps and the reference -------------------------------------------------------------
def dump(backend: Backend) -> Dump:
    """Every live record and log of ``backend``, without timestamps (they differ by backend)."""
    records: list[tuple[Any, ...]] = []
    after: str | None = None
    while page := backend.scan("", after=after, limit=500):
        records += [(r.key, bytes(r.data), r.codec, r.version, r.expires_at) for r in page]
        after = page[-1].key
    logs: list[tuple[Any, ...]] = []
    after = None
    while infos := backend.scan_logs("", after=after, limit=500):
        for info in infos:
            entries = tuple((e.seq, bytes(e.data), e.codec) for e in backend.read(info.log))
            logs.append((info.log, info.first_seq, info.last_seq, info.expires_at, entries))
        after = infos[-1].log
    return tuple(records), tuple(logs)


def applied(before: Dump, ops: Sequence[Op]) -> Dump:
    """``before`` with ``ops`` applied by the reference backend (unchanged on a conflict)."""
    mem = MemoryBackend()
    loads: list[Op] = [Load(Record(k, d, c, v, 0.0, 0.0, exp)) for k, d, c, v, exp in before[0]]
    for log, _first, _last, exp, entries in before[1]:
        loads.append(LoadEntries(log, tuple(Entry(log, s, d, c, 0.0) for s, d, c in entries), exp))
    mem.apply(loads)
    try:
        mem.apply(list(ops))
    except ConflictError:
        return before
    return dump(mem)


MAYBE_APPLIED = re.compile(r"may (or may not )?have been applied|batch was committed")
"""How the message says the write may have been applied (Redis/PostgreSQL: the reply was lost;
files: the batch passed its commit point and is finished on the next access)."""


def says_maybe_applied(exc: BaseException) -> bool:
    """Whether the error tells the caller the write may have been applied: the typed flag,
    and the message saying so too (a flag nobody reads is not enough)."""
    flagged = bool(getattr(exc, "maybe_applied", False))
    assert flagged == (MAYBE_APPLIED.search(str(exc)) is not None), f"flag and message disagree: {exc!r}"
    return flagged


class BatchWatch:
    """Wraps ``store.backend.apply``; every failed batch is checked against full dumps."""

    def __init__(self, target: Any, reader: Callable[[], Dump], fault: Fault) -> None:
        self._real = target.apply
        self._read = reader
        self._fault = fault
        self.found: list[str] = []
        """Problems: half-applied batches, untyped errors."""
        self.failed = 0
        self.maybe_applied = 0
        """Failed batches whose error said they may have been applied…"""
        self.were_applied = 0
        """…and of those, how many were (fully)."""
        target.apply = self.apply

    def apply(self, ops: Sequence[Op], *, now: float | None = None) -> Any:
        with self._fault.paused():
            before = self._read()
        try:
            return self._real(ops, now=now)
        except StatekeelError as exc:
            self.failed += 1
            try:
                self._check_failed(before, ops, exc)
            except StatekeelError as unreadable:
                self.found.append(f"the store could not be read after a failed batch: {unreadable}")
            raise
        except Exception as exc:
            self.found.append(f"untyped error from a batch: {type(exc).__name__}: {exc}")
            raise

    def _check_failed(self, before: Dump, ops: Sequence[Op], exc: StatekeelError) -> None:
        with self._fault.paused():
            after = self._read()
        maybe = says_maybe_applied(exc)
        self.maybe_applied += maybe
        if after == before:
            return
        ops_text = ", ".join(type(op).__name__ for op in ops)
        ops_text += f"; call {self._fault.fail_at} failing at {'/'.join(self._fault.sites)}"
        if maybe:
            if after == applied(before, ops):
                self.were_applied += 1
                return
            self.found.append(f"batch [{ops_text}] failed with {type(exc).__name__} and was half applied")
            return
        how = "fully" if after == applied(before, ops) else "half"
        self.found.append(
            f"batch [{ops_text}] failed with {type(exc).__name__} ({str(exc)[:120]}) without saying it may "
            f"have been applied, yet the store changed ({how} applied)"
        )


@contextmanager
def small_disk(path: str, size: str = "2m") -> Iterator[bool]:
    """A ``size`` tmpfs mounted at ``path`` (True), or a plain folder where mounting is refused (False)."""
    os.makedirs(path, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path], capture_output=True, check=False
    ).returncode == 0
    try:
        yield mounted
    finally:
        if mounted and subprocess.run(["umount", path], capture_output=True, check=False).returncode:
            subprocess.run(["umount", "-l", path], capture_output=True, check=False)  # a handle still open
