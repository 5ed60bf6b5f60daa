"""A throwaway Redis (or Valkey) server with an fsynced append-only file on a free loopback port."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Self

from ._process import (
    DEFAULT_STARTUP_TIMEOUT,
    LOOPBACK,
    STOP_TIMEOUT,
    Server,
    ServerUnavailable,
    failure,
    file_size,
    find_binary,
    make_temp_dir,
    require,
)

_REDIS_HINT = (
    "install Redis (Debian/Ubuntu: `apt-get install redis-server`) or Valkey, "
    "or pass binary="
)


class RedisServer(Server):
    """A throwaway Redis (or Valkey) server on a free loopback port.

    The server keeps an append-only file fsynced on every write
    (``--appendonly yes --appendfsync always``) and no RDB snapshots, so after
    :meth:`kill` a new :meth:`start` replays the AOF on the same port and
    directory.  ``stop()`` shuts it down and deletes the directory.

    Args:
        binary: path or name of the server executable; by default
            ``redis-server`` then ``valkey-server`` on PATH.
        port: fixed port instead of a free one picked at start.
        extra_args: more command-line arguments (``["--maxmemory", "64mb"]``);
            they come last, so they override the defaults.
        startup_timeout: seconds to wait for the server to answer PING.
    """

    def __init__(
        self,
        *,
        binary: str | os.PathLike[str] | None = None,
        port: int | None = None,
        extra_args: Sequence[str] = (),
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
    ) -> None:
        self._binary = None if binary is None else os.fspath(binary)
        self._requested_port = port
        self._extra_args = list(extra_args)
        self._timeout = startup_timeout
        self._dir: Path | None = None
        self._port: int | None = None
        self._executable = ""
        self._process: subprocess.Popen[bytes] | None = None

    # ----------------------------------------------------------------- properties

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://{LOOPBACK}:{self.port}/0"

    @property
    def dir(self) -> Path:
        """The server's working directory, holding the AOF and the log."""
        return require(self._dir, "dir")

    @property
    def logfile(self) -> Path:
        """The server log."""
        return self.dir / "redis.log"

    @property
    def pid(self) -> int | None:
        """The server's pid if it is running, else ``None``."""
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    @property
    def is_running(self) -> bool:
        """Whether the server process is running."""
        return self.pid is not None

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> Self:
        """Start the server and wait until it answers PING; a no-op when running.

        After :meth:`kill` this reuses the same port and directory, so the
        append-only file is replayed before the server answers.

        Raises:
            ServerUnavailable: the binary is missing or the server did not
                answer within ``startup_timeout`` seconds.
        """
        if self.is_running:
            return self
        if self._dir is None:
            self._executable = self._find_binary()
            self._dir = make_temp_dir("statekeel-redis-", None)
            try:
                self._start_on_free_port(self._requested_port, self._launch)
            except BaseException:
                self._remove_files()
                raise
        else:
            self._launch()
        self._register_cleanup()
        return self

    def stop(self) -> None:
        """Shut the server down (SIGTERM, then SIGKILL) and delete its directory."""
        self._unregister_cleanup()
        process = self._process
        try:
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    self.kill()
        finally:
            self._process = None
            self._remove_files()

    def kill(self) -> None:
        """Crash the server with SIGKILL; :meth:`start` brings it back with its data."""
        process = self._process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    # ----------------------------------------------------------------- internals

    def _find_binary(self) -> str:
        """Return the server executable's path."""
        names = [self._binary] if self._binary is not None else ["redis-server", "valkey-server"]
        found = find_binary(names)
        if found is None:
            raise ServerUnavailable(f"{' or '.join(names)} not found on PATH; {_REDIS_HINT}")
        return found

    def _command(self) -> list[str]:
        """Return the server command line."""
        return [
            self._executable,
            "--port", str(self.port),
            "--bind", LOOPBACK,
            "--dir", str(self.dir),
            "--appendonly", "yes",
            "--appendfsync", "always",
            "--save", "",
            "--daemonize", "no",
            "--protected-mode", "no",
            *self._extra_args,
        ]  # fmt: skip

    def _launch(self) -> None:
        """Start the process and wait for PING, or raise with the log tail."""
        offset = file_size(self.logfile)
        with self.logfile.open("ab") as log:
            try:
                self._process = subprocess.Popen(
                    self._command(),
                    cwd=self.dir,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as exc:
                raise ServerUnavailable(f"could not run {self._executable}: {exc}") from exc
        try:
            self._wait_ready()
        except ServerUnavailable:
            self.kill()
            raise failure(
                f"{Path(self._executable).name} did not answer PING on "
                f"{LOOPBACK}:{self._port} (start-up timeout {self._timeout:g} s)",
                self.logfile,
                offset,
            ) from None
        except BaseException:
            self.kill()
            raise

    def _wait_ready(self) -> None:
        """Poll with PING until ``+PONG`` (not ``-LOADING``) comes back."""
        self._wait_until(lambda: _redis_ping(self.port), lambda: self._process, self._timeout)

    def _remove_files(self) -> None:
        """Delete the temporary directory and forget the port."""
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
        self._dir = None
        self._port = None


def _redis_ping(port: int, timeout: float = 1.0) -> bool:
    """Send an inline PING over a raw socket; tell whether ``+PONG`` came back."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False
