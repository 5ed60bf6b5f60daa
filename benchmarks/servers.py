"""Throw-away local PostgreSQL / Redis servers for the benchmark.

Prefers ``statekeel.testing.servers`` (the project's own fixtures); falls back to
the minimal implementations below (loopback only, temp data dir, removed on exit).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError("server did not start in time")


class _FallbackRedis:
    """redis-server with appendonly yes / appendfsync always, no RDB snapshots."""

    def __enter__(self):
        exe = shutil.which("redis-server")
        if not exe:
            raise RuntimeError("redis-server not found")
        self.dir = tempfile.mkdtemp(prefix="skb-redis-")
        port = _free_port()
        self.proc = subprocess.Popen(
            [exe, "--port", str(port), "--bind", "127.0.0.1", "--dir", self.dir, "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--protected-mode", "yes"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_port(port, self.proc)
        self.url = f"redis://127.0.0.1:{port}/0"
        return self

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


class _FallbackPostgres:
    """initdb + postgres on a temp dir (as the 'postgres' OS user when run as root)."""

    def __enter__(self):
        for tool in ("initdb", "postgres"):
            if not shutil.which(tool):
                raise RuntimeError(f"{tool} not found")
        self.dir = tempfile.mkdtemp(prefix="skb-pg-")
        pre = []
        if os.geteuid() == 0:
            import pwd

            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            pre = ["runuser", "-u", "postgres", "--"]
        data = os.path.join(self.dir, "data")
        subprocess.run(pre + ["initdb", "-D", data, "-U", "postgres", "-A", "trust", "--no-sync"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        port = _free_port()
        self.proc = subprocess.Popen(
            pre + ["postgres", "-D", data, "-p", str(port), "-c", "listen_addresses=127.0.0.1",
                   "-c", f"unix_socket_directories={self.dir}", "-c", "fsync=on",
                   "-c", "synchronous_commit=on"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_port(port, self.proc)
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        return self

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait(30)
        shutil.rmtree(self.dir, ignore_errors=True)


def postgres_server():
    try:
        from statekeel.testing.servers import PostgresServer
    except Exception:  # noqa: BLE001 - not written yet, or statekeel half-built
        return _FallbackPostgres(), "benchmarks.servers fallback"
    return PostgresServer(), "statekeel.testing.servers"


def redis_server():
    try:
        from statekeel.testing.servers import RedisServer
    except Exception:  # noqa: BLE001 - not written yet, or statekeel half-built
        return _FallbackRedis(), "benchmarks.servers fallback"
    return RedisServer(), "statekeel.testing.servers"
