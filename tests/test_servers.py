"""Tests for statekeel.testing.servers: real PostgreSQL and Redis processes.

Each test starts genuine servers on loopback ports and talks to them with
``psql`` or raw RESP over a socket, so no client library is needed.  Tests skip
(with the install hint) when the server binaries are missing.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import missing

from statekeel.testing import servers
from statekeel.testing.servers import (
    PostgresServer,
    RedisServer,
    ServerUnavailable,
    find_binary,
    free_port,
)

PSQL = find_binary("psql", ["/usr/local/bin", *map(str, Path("/usr/lib/postgresql").glob("*/bin"))])


# --------------------------------------------------------------------------- helpers


def psql(server: PostgresServer, sql: str) -> str:
    """Run ``sql`` with psql over TCP and return its unaligned output."""
    assert PSQL is not None
    result = subprocess.run(
        [PSQL, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1",
         "-h", "127.0.0.1", "-p", str(server.port), "-U", "postgres", "-d", "postgres", "-c", sql],
        capture_output=True, text=True, timeout=20,
        env={**os.environ, "PGCONNECT_TIMEOUT": "5"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def port_is_open(port: int) -> bool:
    """Tell whether something accepts TCP connections on 127.0.0.1:port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def resp(port: int, *args: str) -> bytes:
    """Send one RESP command over a fresh socket and return the raw reply line/bulk."""
    payload = f"*{len(args)}\r\n".encode()
    for arg in args:
        data = arg.encode()
        payload += b"$%d\r\n%s\r\n" % (len(data), data)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(payload)
        buffer = b""
        while not _complete(buffer):
            chunk = sock.recv(4096)
            assert chunk, f"connection closed after {buffer!r}"
            buffer += chunk
    return buffer


def _complete(buffer: bytes) -> bool:
    """Tell whether ``buffer`` holds one whole simple or bulk RESP reply."""
    if not buffer.endswith(b"\r\n"):
        return False
    if not buffer.startswith(b"$"):
        return True
    header, _, rest = buffer.partition(b"\r\n")
    length = int(header[1:])
    return length < 0 or len(rest) >= length + 2


@pytest.fixture
def pg() -> Iterator[PostgresServer]:
    """A running PostgresServer, skipped when PostgreSQL is not installed."""
    if PSQL is None:
        missing("psql not installed")
    try:
        server = PostgresServer(settings={"work_mem": "8MB"}).start()
    except ServerUnavailable as exc:
        if "not found" in str(exc):
            missing(str(exc))
        raise
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    """A running RedisServer, skipped when redis-server is not installed."""
    try:
        server = RedisServer().start()
    except ServerUnavailable as exc:
        if "not found" in str(exc):
            missing(str(exc))
        raise
    try:
        yield server
    finally:
        server.stop()


# --------------------------------------------------------------------------- helpers of the module


def test_find_binary_searches_path_then_extra_dirs(tmp_path: Path) -> None:
    assert find_binary("sh") is not None
    assert find_binary(["statekeel-no-such-binary"]) is None
    tool = tmp_path / "statekeel-fake-tool"
    tool.write_text("#!/bin/sh\n")
    # not executable yet
    assert find_binary(["statekeel-no-such-binary", tool.name], [tmp_path]) is None
    tool.chmod(0o755)
    assert find_binary(["statekeel-no-such-binary", tool.name], [tmp_path]) == str(tool)


def test_free_port_is_bindable_on_loopback() -> None:
    port = free_port()
    assert 1024 <= port <= 65535
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


# --------------------------------------------------------------------------- PostgreSQL


def test_postgres_answers_survives_restart_and_cleans_up(pg: PostgresServer) -> None:
    assert pg.url == f"postgresql://postgres@127.0.0.1:{pg.port}/postgres"
    assert psql(pg, "select 1") == "1"
    assert psql(pg, "show work_mem") == "8MB"
    assert psql(pg, "show listen_addresses") == "127.0.0.1"
    psql(pg, "create table t (v text); insert into t values ('before restart')")
    if os.geteuid() == 0:  # PostgreSQL refuses root: it runs as the system account
        assert pg.datadir.owner() == "statekeel-pg"

    old_pid = pg.pid
    pg.restart()
    assert pg.pid != old_pid
    assert psql(pg, "select v from t") == "before restart"

    root, port = pg.datadir.parent, pg.port
    pg.stop()
    assert not root.exists()
    assert not port_is_open(port)
    assert not pg.is_running
    pg.stop()  # idempotent


def test_postgres_kill_then_start_recovers_committed_rows(pg: PostgresServer) -> None:
    port, datadir = pg.port, pg.datadir
    psql(pg, "create table t (v int); insert into t values (42)")
    pg.kill()
    assert not pg.is_running
    assert not port_is_open(port)

    pg.start()
    assert (pg.port, pg.datadir) == (port, datadir)
    assert psql(pg, "select v from t") == "42"


def test_postgres_missing_binaries_raise_with_hint(tmp_path: Path) -> None:
    with pytest.raises(ServerUnavailable, match="initdb and pg_ctl not found") as info:
        PostgresServer(bin_dir=tmp_path).start()
    assert "PostgreSQL 15" in str(info.value)


# --------------------------------------------------------------------------- Redis


def test_redis_answers_ping(redis: RedisServer) -> None:
    assert redis.url == f"redis://127.0.0.1:{redis.port}/0"
    assert resp(redis.port, "PING") == b"+PONG\r\n"
    assert redis.dir.is_dir()


def test_redis_kill_then_start_replays_aof(redis: RedisServer) -> None:
    port, directory = redis.port, redis.dir
    assert resp(port, "SET", "statekeel:key", "survives kill -9") == b"+OK\r\n"
    redis.kill()
    assert not redis.is_running
    assert not port_is_open(port)

    redis.start()
    assert (redis.port, redis.dir) == (port, directory)
    assert resp(port, "GET", "statekeel:key") == b"$16\r\nsurvives kill -9\r\n"

    redis.stop()
    assert not directory.exists()
    assert not port_is_open(port)


def test_redis_context_manager_stops_server() -> None:
    if find_binary(["redis-server", "valkey-server"]) is None:
        missing("redis-server not installed")
    with RedisServer() as server:
        port, directory = server.port, server.dir
        assert resp(port, "PING") == b"+PONG\r\n"
    assert not directory.exists()
    assert not port_is_open(port)


def test_redis_missing_binary_raises_with_hint(tmp_path: Path) -> None:
    with pytest.raises(ServerUnavailable, match="apt-get install redis-server"):
        RedisServer(binary=tmp_path / "redis-server").start()


def test_redis_busy_port_raises_with_log_tail() -> None:
    if find_binary(["redis-server", "valkey-server"]) is None:
        missing("redis-server not installed")
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        server = RedisServer(port=squatter.getsockname()[1], startup_timeout=5)
        with pytest.raises(ServerUnavailable, match="Address already in use") as info:
            server.start()
    assert "last lines of" in str(info.value)
    assert not server.is_running


def test_redis_retries_when_picked_port_is_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    if find_binary(["redis-server", "valkey-server"]) is None:
        missing("redis-server not installed")
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        busy = squatter.getsockname()[1]
        ports = iter([busy, free_port()])
        monkeypatch.setattr(servers._process, "free_port", lambda: next(ports))
        with RedisServer() as server:
            assert server.port != busy
            assert resp(server.port, "PING") == b"+PONG\r\n"
