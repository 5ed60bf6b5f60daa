"""Real, throwaway database servers for tests and benchmarks.

Two context managers start genuine server processes in a private temporary
directory, listening only on a free port of the loopback interface, and remove
everything again when they stop:

* :class:`PostgresServer` (:mod:`.postgres`) runs ``initdb`` and ``pg_ctl``
  (PostgreSQL 15 binaries).
* :class:`RedisServer` (:mod:`.redis`) runs ``redis-server`` (or
  ``valkey-server``) with an append-only file that is fsynced on every write.

Both can be crashed on purpose (:meth:`PostgresServer.kill`,
:meth:`RedisServer.kill`) and started again on the same port and data
directory, which is what fault-injection tests need. :class:`ServerPool`
(:mod:`.pool`) starts each at most once per test session, on first use.

PostgreSQL refuses to run as root.  When this process is root, the PostgreSQL
commands run as an unprivileged system account (``statekeel-pg`` by default,
created with ``useradd --system`` when missing) that owns the temporary
directory; the privilege drop uses :func:`subprocess.run`'s ``user``/``group``
arguments, so neither ``runuser`` nor ``su`` is needed.

Only the standard library is used.  A missing binary, or a server that does
not come up within the start-up timeout, raises :class:`ServerUnavailable`.

Example::

    with PostgresServer() as pg, RedisServer() as redis:
        run_tests(pg.url, redis.url)
"""

from __future__ import annotations

from ._process import DEFAULT_STARTUP_TIMEOUT, LOOPBACK, ServerUnavailable, find_binary, free_port
from .pool import ServerPool
from .postgres import DEFAULT_PG_USER, PostgresServer
from .redis import RedisServer

__all__ = [
    "DEFAULT_PG_USER",
    "DEFAULT_STARTUP_TIMEOUT",
    "LOOPBACK",
    "PostgresServer",
    "RedisServer",
    "ServerPool",
    "ServerUnavailable",
    "find_binary",
    "free_port",
]
