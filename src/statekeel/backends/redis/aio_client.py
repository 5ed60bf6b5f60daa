"""The asyncio client of the Redis backend (:mod:`.aio`): one per event loop, and its connections.

Two things make a call cheaper than redis-py's client makes it, without changing what a call
means: a command's write is bounded by ``?timeout=`` with a timer, not a Task (``_send_in_time``),
and the everyday command — ``EVALSHA`` of a batch — goes out on a connection the loop keeps
between its calls (:meth:`LoopClient.evalsha`), not one fetched from redis-py's blocking pool
each time (its condition variable, timeout and observability hooks: ~16 µs a call).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Final

import redis.asyncio as aredis
from redis import exceptions as rx
from redis.asyncio import connection as aconnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from .backend import RedisBackend

__all__ = ["LoopClient"]


async def _send_in_time(
    conn: aconnection.AbstractConnection, send: Callable[[Any, bool], Awaitable[None]], command: Any, check: bool
) -> None:
    """redis-py's write of one command under ``?timeout=``, without its ``asyncio.wait_for``.

    ``wait_for`` wraps every write in a new Task, scheduled a loop turn later: ~30 µs of
    CPU per command (most of the gap to a client without a timeout). ``asyncio.timeout``
    bounds the same write with a timer only; a write that does not finish in time still
    drops the connection (redis-py's own handler) and raises redis-py's TimeoutError.
    """
    timeout = conn.socket_timeout
    if not timeout:
        return await send(command, check)
    # no timer at all for a small command on a connection already up (no handshake to read) and
    # without health checks (no PING to read): such a write cannot wait, see _AT_ONCE
    at_once = conn.is_connected and not conn.health_check_interval and _drains_at_once(command)
    conn.socket_timeout = None  # this write only: the read after it keeps the timeout
    try:
        if at_once:
            await send(command, check)
        else:
            async with asyncio.timeout(timeout):
                await send(command, check)
    except TimeoutError:
        raise rx.TimeoutError("Timeout writing to socket") from None
    finally:
        conn.socket_timeout = timeout


_AT_ONCE: Final = 16 * 1024
"""Bytes a write may hold and never wait: asyncio pauses a transport's writer (``drain()`` waits)
only past 64 KiB buffered, and a connection's buffer is empty when a command is sent (the reply to
the one before it was read). A command this small is bounded by the read's timeout after it."""


def _drains_at_once(command: Any) -> bool:
    """Whether writing ``command`` (redis-py's packed chunks) cannot wait on ``drain()``."""
    if isinstance(command, (bytes, str)):
        return len(command) <= _AT_ONCE
    size = 0
    for chunk in command:
        size += len(chunk)
    return size <= _AT_ONCE


class _Connection(aconnection.Connection):
    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        await _send_in_time(self, super().send_packed_command, command, check_health)


class _SSLConnection(aconnection.SSLConnection):
    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        await _send_in_time(self, super().send_packed_command, command, check_health)


class _UnixConnection(aconnection.UnixDomainSocketConnection):
    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        await _send_in_time(self, super().send_packed_command, command, check_health)


_CONNECTIONS: dict[str, type[aconnection.AbstractConnection]] = {
    "Connection": _Connection,
    "SSLConnection": _SSLConnection,
    "UnixDomainSocketConnection": _UnixConnection,
}


class _Pool(aconnection.BlockingConnectionPool):
    """redis-py's blocking pool, never handing out a connection the server closed while it was idle.

    The pool checks an idle connection before handing it out (EOF seen, or bytes nobody asked for:
    reconnect) — except, in redis-py 8, when "maintenance notifications" are on, and their default
    ``"auto"`` counts as on: a connection closed by Redis' ``timeout`` setting, a proxy or a load
    balancer is handed out, and a plain redis-py client's next command on it fails (retries are
    off here: it would be "may or may not have been applied"). The check is made here whatever
    that setting says.
    """

    async def ensure_connection(self, connection: aconnection.AbstractConnection) -> None:
        await super().ensure_connection(connection)
        if await _unclean(connection):
            await connection.disconnect()
            await connection.connect()  # type: ignore[no-untyped-call]  # redis-py leaves it untyped


async def _unclean(conn: aconnection.AbstractConnection) -> bool:
    """Whether ``conn`` saw its end (EOF) or holds bytes no command asked for."""
    check = getattr(conn, "can_read", None) or conn.can_read_destructive  # redis-py 8 / before
    try:
        return bool(await check())
    except (rx.ConnectionError, rx.TimeoutError, OSError):
        return True


def _async_client(sync: RedisBackend) -> aredis.Redis:
    """A ``redis.asyncio`` client with the sync client's connection settings.

    A blocking pool: more coroutines than ``max_connections`` wait (up to ``?timeout=``)
    for a free connection, where the plain pool raised "Too many connections" at once.
    """
    pool = sync._redis.connection_pool
    kwargs = dict(pool.connection_kwargs)
    kwargs["retry"] = Retry(NoBackoff(), 0)  # never re-send a batch whose reply was lost
    kind = _CONNECTIONS[pool.connection_class.__name__]
    apool = _Pool(
        connection_class=kind, max_connections=pool.max_connections, timeout=kwargs.get("socket_timeout") or 10.0,
        **kwargs,
    )  # fmt: skip
    return aredis.Redis(connection_pool=apool)


class LoopClient:
    """One event loop's ``redis.asyncio`` client, and the connections its EVALSHAs keep.

    A connection an EVALSHA used is *parked* here when the call ends (it stays checked out of
    redis-py's pool) and the next EVALSHA takes it back after the pool's own check that it is
    connected and holds no stray reply — two list operations instead of the pool's round of
    locks. What keeps the pool fair to everyone else: at most half of its connections are ever
    parked (the other commands of the backend — reads, pipelines — use the pool as before and
    always find room), and a connection is handed back to the pool, not parked, while an EVALSHA
    waits there for one, or when it is disconnected or due a reconnect. Closing the client
    disconnects every connection of its pool, the parked ones with them.
    """

    __slots__ = ("keep", "parked", "redis", "waiting")

    def __init__(self, sync: RedisBackend) -> None:
        self.redis = _async_client(sync)
        pool = self.redis.connection_pool
        self.parked: list[aconnection.AbstractConnection] = []
        self.waiting = 0
        """EVALSHAs waiting in the pool for a connection: an ending call hands its own back to them."""
        self.keep = pool.max_connections // 2
        """How many connections may be parked."""

    async def evalsha(self, *args: Any) -> Any:
        """``EVALSHA args…``, without redis-py's command wrapper.

        ``Redis.execute_command`` wraps each call in its retry loop (retries are off here: a batch
        whose reply was lost is never re-sent), observability hooks and response-callback look-ups.
        The connection does the rest as it does for redis-py: a write or read that fails or is
        cancelled drops the connection (its reply would be left unread: it is connected afresh
        before its next use), an error reply is raised as redis-py's exception (``NoScriptError``
        included).
        """
        pool = self.redis.connection_pool
        conn = await self._connection(pool)
        try:
            await conn.send_packed_command(conn.pack_command("EVALSHA", *args))
            return await conn.read_response()
        finally:
            if self.waiting or len(self.parked) >= self.keep or not conn.is_connected or _due(conn):
                await pool.release(conn)
            else:
                self.parked.append(conn)

    async def _connection(self, pool: Any) -> aconnection.AbstractConnection:
        if self.parked:
            conn = self.parked.pop()
            try:
                await pool.ensure_connection(conn)  # connected, not closed by the server, nothing unread
            except BaseException:
                await pool.release(conn)
                raise
            return conn
        self.waiting += 1
        try:
            found: aconnection.AbstractConnection = await pool.get_connection()
            return found
        finally:
            self.waiting -= 1

    async def aclose(self) -> None:
        self.parked.clear()  # still checked out of the pool: closing it disconnects them too
        await self.redis.aclose(close_connection_pool=True)  # the pool is ours: the client leaves one it was given open


def _due(conn: aconnection.AbstractConnection) -> bool:
    """Whether redis-py wants ``conn`` reconnected (a maintenance notification moved the server)."""
    due = getattr(conn, "should_reconnect", None)
    return bool(due()) if due is not None else False
