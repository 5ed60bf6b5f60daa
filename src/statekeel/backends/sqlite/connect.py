"""Opening the one connection of a SQLite backend: folder, pragmas, WAL mode.

Several processes may open a new file at the same moment. Switching it to WAL
takes an exclusive lock for which SQLite does not call its busy handler, so
one of them can get "database is locked" at once instead of after ``timeout``:
:func:`connect` retries that switch with backoff until the timeout is used up.
"""

from __future__ import annotations

import os
import sqlite3
import time

from ...errors import ConfigurationError, translate
from .errors import map_error
from .schema import register_functions
from ...protocol.jitter import JITTER

__all__ = ["connect"]


def connect(path: str, timeout: float, durability: str) -> sqlite3.Connection:
    """An autocommit connection in WAL mode with ``synchronous = durability``."""
    if path != ":memory:":
        _make_folder(path)
    with translate(map_error):
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=timeout)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            if conn.execute("PRAGMA page_count").fetchone()[0] == 0:  # a new file: pages freed by deletes
                conn.execute("PRAGMA auto_vacuum = INCREMENTAL")     # can be given back, bit by bit
            _wal_mode(conn, timeout)
            conn.execute(f"PRAGMA synchronous = {durability.upper()}")
            register_functions(conn)
        except BaseException:
            conn.close()
            raise
    return conn


def _make_folder(path: str) -> None:
    """Create the file's folder, or say plainly why it cannot be (e.g. a file is in the way)."""
    folder = os.path.dirname(os.path.abspath(path))
    blocker = folder
    while blocker and not os.path.isdir(blocker) and not os.path.exists(blocker):
        blocker = os.path.dirname(blocker)
    if os.path.exists(blocker) and not os.path.isdir(blocker):
        raise ConfigurationError(
            f"cannot create the SQLite file {path}: {blocker} is a file, not a folder; "
            "choose a path whose parent folders are folders"
        )
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot create the folder {folder} for the SQLite file ({exc.strerror or exc}); "
            "check the path and its permissions"
        ) from exc


def _wal_mode(conn: sqlite3.Connection, timeout: float) -> None:
    """``PRAGMA journal_mode = WAL``, retried while another opener holds the lock."""
    deadline, pause = time.monotonic() + timeout, 0.005
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL").fetchone()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(min(pause * JITTER.uniform(0.5, 1.5), max(0.0, deadline - time.monotonic())))
        pause = min(pause * 2, 0.2)
