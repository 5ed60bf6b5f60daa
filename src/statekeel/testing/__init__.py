"""statekeel's public conformance suite and test helpers.

* :mod:`statekeel.testing.plugin` — the pytest plugin (fixtures ``store``,
  ``store_url``, ``open_store``, ``backend_name``) that runs each conformance
  test once per backend;
* :mod:`statekeel.testing.conformance` — the tests every backend must pass;
* :mod:`statekeel.testing.servers` — real throwaway PostgreSQL and Redis servers.

``BACKENDS`` maps a backend name to a factory that returns the URL of a fresh,
empty store; :func:`register_backend` adds a third-party one.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["BACKENDS", "BackendContext", "ServerPool", "register_backend"]


class ServerPool:
    """Starts each real server once, on first use; stops them all at the end."""

    class Missing(Exception):
        """A server could not be started and the run does not require it."""

    def __init__(self, *, required: bool) -> None:
        self.required = required
        self._servers: dict[str, Any] = {}
        self._errors: dict[str, str] = {}

    def _get(self, kind: str) -> Any:
        from . import servers

        if kind in self._errors:
            raise self._fail(self._errors[kind])
        if kind not in self._servers:
            cls = servers.PostgresServer if kind == "postgres" else servers.RedisServer
            try:
                self._servers[kind] = cls().start()
            except servers.ServerUnavailable as exc:
                self._errors[kind] = str(exc)
                raise self._fail(str(exc)) from exc
        return self._servers[kind]

    def _fail(self, message: str) -> Exception:
        if self.required:
            return RuntimeError(f"CI is set, so a missing server fails the run: {message}")
        return ServerPool.Missing(message)

    def postgres(self) -> Any:
        """The running :class:`~statekeel.testing.servers.PostgresServer`."""
        return self._get("postgres")

    def redis(self) -> Any:
        """The running :class:`~statekeel.testing.servers.RedisServer`."""
        return self._get("redis")

    def flush_redis(self) -> None:
        """Empty every Redis database (raw RESP, no client library needed)."""
        server = self.redis()
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(b"*1\r\n$8\r\nFLUSHALL\r\n")
            if not sock.recv(64).startswith(b"+OK"):
                raise RuntimeError("FLUSHALL failed on the test Redis")

    def stop(self) -> None:
        for server in self._servers.values():
            server.stop()
        self._servers.clear()


@dataclass
class BackendContext:
    """What a backend factory gets: a private temp dir, the servers, a counter."""

    tmp_path: Path
    servers: ServerPool
    n: int


def _postgres(ctx: BackendContext) -> str:
    return f"{ctx.servers.postgres().url}?schema=sk_test_{ctx.n}"


def _redis(ctx: BackendContext) -> str:
    ctx.servers.flush_redis()
    return str(ctx.servers.redis().url)


BACKENDS: dict[str, Callable[[BackendContext], str]] = {
    "memory": lambda ctx: f"memory://test-{ctx.n}",
    "sqlite": lambda ctx: f"sqlite:///{ctx.tmp_path}/store.db",
    "files": lambda ctx: f"file://{ctx.tmp_path}/files-store",
    "postgres": _postgres,
    "redis": _redis,
}


def register_backend(name: str, factory: Callable[[BackendContext], str]) -> None:
    """Make ``name`` selectable with ``--statekeel-backends``."""
    BACKENDS[name] = factory
