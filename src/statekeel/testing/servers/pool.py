"""One PostgreSQL, one Redis and one DynamoDB-API server per test session, started on first use."""

from __future__ import annotations

import socket
from typing import TypeVar

from ._process import LOOPBACK, Server, ServerUnavailable
from .dynamodb import DynamoDBServer
from .postgres import PostgresServer
from .redis import RedisServer

_S = TypeVar("_S", PostgresServer, RedisServer, DynamoDBServer)


class ServerPool:
    """Starts each real server once, on first use; stops them all at the end."""

    class Missing(Exception):
        """A server could not be started and the run does not require it."""

    def __init__(self, *, required: bool) -> None:
        self.required = required
        self._servers: dict[type[Server], Server] = {}
        self._errors: dict[type[Server], str] = {}

    def postgres(self) -> PostgresServer:
        """The running :class:`PostgresServer`."""
        return self._get(PostgresServer)

    def redis(self) -> RedisServer:
        """The running :class:`RedisServer`."""
        return self._get(RedisServer)

    def dynamodb(self) -> DynamoDBServer:
        """The running :class:`DynamoDBServer` (moto); each store uses its own table."""
        return self._get(DynamoDBServer)

    def _get(self, cls: type[_S]) -> _S:
        server = self._servers.get(cls)
        if isinstance(server, cls):
            return server
        if cls in self._errors:
            raise self._fail(self._errors[cls])
        try:
            started = cls().start()
        except ServerUnavailable as exc:
            self._errors[cls] = str(exc)
            raise self._fail(str(exc)) from exc
        self._servers[cls] = started
        return started

    def _fail(self, message: str) -> Exception:
        if self.required:
            return RuntimeError(f"CI is set, so a missing server fails the run: {message}")
        return ServerPool.Missing(message)

    def flush_redis(self) -> None:
        """Empty every Redis database (raw RESP, no client library needed)."""
        with socket.create_connection((LOOPBACK, self.redis().port), timeout=10) as sock:
            sock.sendall(b"*1\r\n$8\r\nFLUSHALL\r\n")
            if not sock.recv(64).startswith(b"+OK"):
                raise RuntimeError("FLUSHALL failed on the test Redis")

    def stop(self) -> None:
        for server in self._servers.values():
            server.stop()
        self._servers.clear()
