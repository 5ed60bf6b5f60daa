"""Real, throwaway database servers for tests and benchmarks.

Two context managers start genuine server processes in a private temporary
directory, listening only on a free port of the loopback interface, and remove
everything again when they stop:

* :class:`PostgresServer` runs ``initdb`` and ``pg_ctl`` (PostgreSQL 15 binaries).
* :class:`RedisServer` runs ``redis-server`` (or ``valkey-server``) with an
  append-only file that is fsynced on every write.

Both can be crashed on purpose (:meth:`PostgresServer.kill`,
:meth:`RedisServer.kill`) and started again on the same port and data
directory, which is what fault-injection tests need.

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

import atexit
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self, TypeVar

__all__ = [
    "DEFAULT_PG_USER",
    "DEFAULT_STARTUP_TIMEOUT",
    "PostgresServer",
    "RedisServer",
    "ServerUnavailable",
    "find_binary",
    "free_port",
]

LOOPBACK = "127.0.0.1"
"""The only address the servers listen on."""

DEFAULT_STARTUP_TIMEOUT = 30.0
"""Seconds a server may take to accept connections before giving up."""

DEFAULT_PG_USER = "statekeel-pg"
"""System account that runs PostgreSQL when this process is root."""

_STOP_TIMEOUT = 30.0
_PORT_ATTEMPTS = 3
_LOG_TAIL_LINES = 25
_POLL_INTERVAL = 0.02
_PORT_IN_USE = "Address already in use"

_T = TypeVar("_T")

_PG_HINT = (
    "install the PostgreSQL 15 server binaries (Debian/Ubuntu: "
    "`apt-get install postgresql-15`, which provides /usr/lib/postgresql/15/bin/initdb "
    "and pg_ctl), put them on PATH, or pass bin_dir="
)
_REDIS_HINT = (
    "install Redis (Debian/Ubuntu: `apt-get install redis-server`) or Valkey, "
    "or pass binary="
)


class ServerUnavailable(Exception):
    """A test server cannot be started: a binary is missing or it did not come up."""


class _PortInUse(ServerUnavailable):
    """The server lost the race for its freshly picked port; try another one."""


# --------------------------------------------------------------------------- helpers


def find_binary(
    names: str | Iterable[str],
    extra_dirs: Iterable[str | os.PathLike[str]] = (),
) -> str | None:
    """Return the path of the first executable found, or ``None``.

    Names are tried in order; for each name ``PATH`` is searched first, then
    ``extra_dirs`` in order.  A name containing a slash is checked as a path.
    """
    candidates = (names,) if isinstance(names, str) else tuple(names)
    dirs = tuple(Path(d) for d in extra_dirs)
    for name in candidates:
        found = shutil.which(name)
        if found is not None:
            return found
        for directory in dirs:
            path = directory / name
            if _is_executable(path):
                return str(path)
    return None


def free_port() -> int:
    """Return a TCP port on the loopback interface that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
    return port


def _is_executable(path: Path) -> bool:
    """Tell whether ``path`` is an executable regular file."""
    return path.is_file() and os.access(path, os.X_OK)


def _log_tail(path: Path | None, offset: int = 0) -> str:
    """Return the last lines of a log file written after byte ``offset``."""
    if path is None:
        return "(no log)"
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            data = handle.read()
    except OSError as exc:
        return f"(log {path} unreadable: {exc})"
    lines = data.decode("utf-8", "replace").splitlines()[-_LOG_TAIL_LINES:]
    return "\n".join(lines) if lines else "(log is empty)"


def _file_size(path: Path) -> int:
    """Return the size of ``path`` in bytes, 0 when it does not exist."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _failure(what: str, log: Path | None, offset: int = 0, detail: str = "") -> ServerUnavailable:
    """Build the exception for a server that failed, quoting its log."""
    tail = _log_tail(log, offset)
    exc_type = _PortInUse if _PORT_IN_USE in tail or _PORT_IN_USE in detail else ServerUnavailable
    parts = [what]
    if detail.strip():
        parts.append(f"output:\n{detail.strip()}")
    parts.append(f"last lines of {log}:\n{tail}")
    return exc_type("\n".join(parts))


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """Return ``(state, ppid)`` of a process from /proc, or ``None`` if it is gone."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = data[data.rindex(")") + 2 :].split()
    return fields[0], int(fields[1])


def _pid_alive(pid: int) -> bool:
    """Tell whether ``pid`` is a live process (zombies count as dead)."""
    if Path("/proc/self/stat").exists():
        info = _proc_stat(pid)
        return info is not None and info[0] not in ("Z", "X")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _child_pids(parent: int) -> list[int]:
    """Return the pids whose parent is ``parent`` (Linux /proc; else empty)."""
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    children = []
    for entry in proc.iterdir():
        if entry.name.isdigit():
            info = _proc_stat(int(entry.name))
            if info is not None and info[1] == parent:
                children.append(int(entry.name))
    return children


def _send_signal(pid: int, sig: signal.Signals) -> None:
    """Send ``sig`` to ``pid``, ignoring a process that is already gone."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _wait_dead(pids: Iterable[int], timeout: float) -> bool:
    """Wait until none of ``pids`` is alive; return whether that happened in time."""
    remaining = list(pids)
    deadline = time.monotonic() + timeout
    while remaining:
        remaining = [pid for pid in remaining if _pid_alive(pid)]
        if not remaining:
            break
        if time.monotonic() > deadline:
            return False
        time.sleep(_POLL_INTERVAL)
    return True


def _world_traversable(path: Path) -> bool:
    """Tell whether every directory on ``path`` can be entered by any user."""
    for directory in (path, *path.parents):
        if not directory.stat().st_mode & stat.S_IXOTH:
            return False
    return True


def _make_temp_dir(prefix: str, owner: pwd.struct_passwd | None) -> Path:
    """Create a private temporary directory, owned by ``owner`` when given."""
    base = Path(tempfile.gettempdir())
    if owner is not None and not _world_traversable(base):
        base = Path("/tmp")
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    if owner is not None:
        os.chown(path, owner.pw_uid, owner.pw_gid)
    return path


def _ensure_system_user(name: str) -> pwd.struct_passwd:
    """Return the account ``name``, creating it as a system user if missing."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    useradd = find_binary("useradd", ("/usr/sbin", "/sbin"))
    if useradd is None:
        raise ServerUnavailable(
            f"PostgreSQL cannot run as root and the user {name!r} does not exist; "
            f"`useradd` was not found to create it (create the user yourself or pass run_as=)"
        )
    cmd = [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    try:  # another process may have created it concurrently; only the outcome matters
        return pwd.getpwnam(name)
    except KeyError:
        raise ServerUnavailable(
            f"could not create system user {name!r} to run PostgreSQL "
            f"(it refuses to run as root): {result.stderr.strip()}"
        ) from None


def _postgres_bin_dirs() -> list[Path]:
    """Return directories that commonly hold PostgreSQL server binaries, newest first."""

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", path.parent.name))

    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    return [Path("/usr/local/bin"), *debian, Path("/usr/local/pgsql/bin")]


# --------------------------------------------------------------------------- base


class _Server:
    """Context-manager plumbing and exit-time cleanup shared by the servers."""

    def start(self) -> Self:
        """Start the server; see subclasses."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the server and delete its files; see subclasses."""
        raise NotImplementedError

    def _register_cleanup(self) -> None:
        """Make sure the server is stopped when the interpreter exits."""
        atexit.unregister(self.stop)
        atexit.register(self.stop)

    def _unregister_cleanup(self) -> None:
        """Undo :meth:`_register_cleanup` once the server is stopped."""
        atexit.unregister(self.stop)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _require(value: _T | None, what: str) -> _T:
    """Return ``value``, or raise if the server has not been started."""
    if value is None:
        raise RuntimeError(f"{what} is only known while the server is started")
    return value


# --------------------------------------------------------------------------- PostgreSQL


class PostgresServer(_Server):
    """A throwaway PostgreSQL cluster on a free loopback port.

    ``start()`` (or entering the ``with`` block) creates a temporary directory,
    runs ``initdb -A trust -U postgres`` in it and starts the server with
    ``pg_ctl``; ``stop()`` stops it (``-m immediate``) and deletes the directory.
    Connect as user ``postgres`` without a password via :attr:`url`.

    Args:
        bin_dir: directory holding ``initdb`` and ``pg_ctl``; by default PATH,
            /usr/local/bin and /usr/lib/postgresql/*/bin are searched.
        port: fixed port instead of a free one picked at start.
        run_as: account to run PostgreSQL as when this process is root
            (created if missing); ignored when not root.
        settings: extra server settings, passed as ``-c name=value``.
        startup_timeout: seconds to wait for the server to accept connections.
    """

    def __init__(
        self,
        *,
        bin_dir: str | os.PathLike[str] | None = None,
        port: int | None = None,
        run_as: str = DEFAULT_PG_USER,
        settings: Mapping[str, str] | None = None,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
    ) -> None:
        self._bin_dir = None if bin_dir is None else Path(bin_dir)
        self._requested_port = port
        self._run_as = run_as
        self._settings = dict(settings or {})
        self._timeout = startup_timeout
        self._root: Path | None = None
        self._port: int | None = None
        self._pg_ctl = ""
        self._account: pwd.struct_passwd | None = None

    # ----------------------------------------------------------------- properties

    @property
    def url(self) -> str:
        """``postgresql://postgres@127.0.0.1:PORT/postgres``."""
        return f"postgresql://postgres@{LOOPBACK}:{self.port}/postgres"

    @property
    def port(self) -> int:
        """The TCP port the server listens on (127.0.0.1 only)."""
        return _require(self._port, "port")

    @property
    def host(self) -> str:
        """The address the server listens on: always ``127.0.0.1``."""
        return LOOPBACK

    @property
    def datadir(self) -> Path:
        """The cluster's data directory (``PGDATA``)."""
        return _require(self._root, "datadir") / "data"

    @property
    def socket_dir(self) -> Path:
        """The directory holding the server's Unix-domain socket."""
        return _require(self._root, "socket_dir")

    @property
    def logfile(self) -> Path:
        """The server log written by ``pg_ctl -l``."""
        return _require(self._root, "logfile") / "postgres.log"

    @property
    def pid(self) -> int | None:
        """The postmaster's pid if it is running, else ``None``."""
        if self._root is None:
            return None
        try:
            first_line = (self.datadir / "postmaster.pid").read_text().split("\n", 1)[0]
            pid = int(first_line)
        except (OSError, ValueError):
            return None
        return pid if _pid_alive(pid) else None

    @property
    def is_running(self) -> bool:
        """Whether the postmaster is running."""
        return self.pid is not None

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> Self:
        """Create the cluster if needed and start it; a no-op when running.

        After :meth:`kill` this starts the same cluster on the same port, which
        then performs crash recovery.

        Raises:
            ServerUnavailable: the binaries are missing or the server did not
                come up within ``startup_timeout`` seconds.
        """
        if self.is_running:
            return self
        if self._root is None:
            self._create()
            try:
                self._start_on_free_port()
            except BaseException:
                self._remove_files()
                raise
        else:
            self._pg_ctl_start()
        self._register_cleanup()
        return self

    def stop(self) -> None:
        """Stop the server immediately (no checkpoint) and delete all its files."""
        self._unregister_cleanup()
        if self._root is None:
            return
        try:
            if self.is_running:
                self._run(["stop", "-w", "-t", str(int(_STOP_TIMEOUT)), "-m", "immediate"])
            if self.is_running:
                self.kill()
        finally:
            self._remove_files()

    def restart(self) -> None:
        """Restart the server (``pg_ctl restart -m fast``) on the same port and data.

        Also starts a server that is not running, e.g. after :meth:`kill`.
        """
        _require(self._root, "the cluster")
        offset = _file_size(self.logfile)
        result = self._run(["restart", "-m", "fast", *self._start_args()])
        if result.returncode != 0:
            raise _failure("PostgreSQL did not restart", self.logfile, offset, result.stdout)

    def kill(self) -> None:
        """Crash the server: SIGKILL the postmaster and all its children.

        The data directory stays; :meth:`start` or :meth:`restart` brings the
        cluster back (with crash recovery) on the same port.
        """
        pid = self.pid
        if pid is None:
            return
        _send_signal(pid, signal.SIGSTOP)  # no new children while we collect them
        victims = [pid, *_child_pids(pid)]
        for victim in victims:
            _send_signal(victim, signal.SIGKILL)
        if not _wait_dead(victims, _STOP_TIMEOUT):
            raise ServerUnavailable(f"PostgreSQL processes {victims} survived SIGKILL")
        # The dead postmaster may linger as an unreaped zombie, which the next
        # postmaster would mistake for a live one; every process is gone, so
        # drop its lock files (data directory and Unix socket).
        (self.datadir / "postmaster.pid").unlink(missing_ok=True)
        for lock in self.socket_dir.glob(".s.PGSQL.*.lock"):
            lock.unlink(missing_ok=True)

    # ----------------------------------------------------------------- internals

    def _create(self) -> None:
        """Find the binaries, make the temporary directory and run ``initdb``."""
        initdb, self._pg_ctl = self._find_binaries()
        self._account = _ensure_system_user(self._run_as) if os.geteuid() == 0 else None
        self._root = _make_temp_dir("statekeel-pg-", self._account)
        cmd = [initdb, "-D", str(self.datadir), "-A", "trust", "-U", "postgres",
               "--no-sync", "-E", "UTF8", "--locale=C"]  # fmt: skip
        try:
            result = self._execute(cmd, self._timeout)
        except BaseException:
            self._remove_files()
            raise
        if result.returncode != 0:
            self._remove_files()
            raise ServerUnavailable(f"initdb failed ({shlex.join(cmd)}):\n{result.stdout.strip()}")

    def _find_binaries(self) -> tuple[str, str]:
        """Return the paths of ``initdb`` and the ``pg_ctl`` beside it."""
        initdb: str | None
        pg_ctl: str | None
        if self._bin_dir is not None:
            initdb = shutil.which("initdb", path=str(self._bin_dir))
            pg_ctl = shutil.which("pg_ctl", path=str(self._bin_dir))
        else:
            dirs = _postgres_bin_dirs()
            initdb = find_binary("initdb", dirs)
            sibling = None if initdb is None else Path(initdb).resolve().parent / "pg_ctl"
            if sibling is not None and _is_executable(sibling):
                pg_ctl = str(sibling)  # same installation as initdb
            else:
                pg_ctl = find_binary("pg_ctl", dirs)
        if initdb is None or pg_ctl is None:
            missing = " and ".join(n for n, p in (("initdb", initdb), ("pg_ctl", pg_ctl)) if not p)
            where = self._bin_dir or "PATH, /usr/local/bin or /usr/lib/postgresql/*/bin"
            raise ServerUnavailable(f"PostgreSQL {missing} not found in {where}; {_PG_HINT}")
        return initdb, pg_ctl

    def _start_on_free_port(self) -> None:
        """Start a fresh cluster, retrying on a new port if another process took it."""
        attempts = 1 if self._requested_port is not None else _PORT_ATTEMPTS
        for attempt in range(attempts):
            self._port = self._requested_port or free_port()
            try:
                self._pg_ctl_start()
                return
            except _PortInUse:
                if attempt == attempts - 1:
                    raise

    def _pg_ctl_start(self) -> None:
        """Run ``pg_ctl start`` and wait until the server accepts connections."""
        offset = _file_size(self.logfile)
        result = self._run(["start", *self._start_args()])
        if result.returncode != 0:
            if self.is_running:  # e.g. timed out while still starting
                self._run(["stop", "-w", "-m", "immediate"])
            raise _failure(
                f"PostgreSQL failed to start on {LOOPBACK}:{self._port} "
                f"(start-up timeout {self._timeout:g} s)",
                self.logfile,
                offset,
                result.stdout,
            )

    def _start_args(self) -> list[str]:
        """Return the ``pg_ctl`` arguments shared by start and restart."""
        options = [
            f"-p {self.port}",
            f"-k {shlex.quote(str(self.socket_dir))}",
            f"-h {LOOPBACK}",
            "-c fsync=on",
            "-c max_connections=200",
            "-c shared_buffers=64MB",
            *(shlex.quote(f"-c{name}={value}") for name, value in self._settings.items()),
        ]
        return ["-w", "-t", str(max(1, round(self._timeout))), "-l", str(self.logfile),
                "-o", " ".join(options)]  # fmt: skip

    def _run(self, args: Sequence[str]) -> subprocess.CompletedProcess[str]:
        """Run ``pg_ctl ARGS -D DATADIR``."""
        return self._execute([self._pg_ctl, *args, "-D", str(self.datadir)], self._timeout + 30)

    def _execute(self, cmd: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
        """Run a PostgreSQL command, as the unprivileged account when root.

        stdout and stderr are merged into ``result.stdout``.
        """
        account = self._account
        try:
            return subprocess.run(
                list(cmd),
                cwd=self._root,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=timeout,
                check=False,
                user=None if account is None else account.pw_uid,
                group=None if account is None else account.pw_gid,
                extra_groups=None if account is None else [],
            )
        except subprocess.TimeoutExpired as exc:
            what = f"{shlex.join(cmd)} timed out after {timeout:g} s"
            raise _failure(what, self._log_or_none()) from exc
        except OSError as exc:
            raise ServerUnavailable(f"could not run {shlex.join(cmd)}: {exc}") from exc

    def _log_or_none(self) -> Path | None:
        """Return the log path, or ``None`` before the directory exists."""
        return None if self._root is None else self.logfile

    def _remove_files(self) -> None:
        """Delete the temporary directory and forget the port."""
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
        self._root = None
        self._port = None


# --------------------------------------------------------------------------- Redis


class RedisServer(_Server):
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
    def port(self) -> int:
        """The TCP port the server listens on (127.0.0.1 only)."""
        return _require(self._port, "port")

    @property
    def host(self) -> str:
        """The address the server listens on: always ``127.0.0.1``."""
        return LOOPBACK

    @property
    def dir(self) -> Path:
        """The server's working directory, holding the AOF and the log."""
        return _require(self._dir, "dir")

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
            self._dir = _make_temp_dir("statekeel-redis-", None)
            try:
                self._start_on_free_port()
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
                    process.wait(_STOP_TIMEOUT)
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

    def _start_on_free_port(self) -> None:
        """Start the server, retrying on a new port if another process took it."""
        attempts = 1 if self._requested_port is not None else _PORT_ATTEMPTS
        for attempt in range(attempts):
            self._port = self._requested_port or free_port()
            try:
                self._launch()
                return
            except _PortInUse:
                if attempt == attempts - 1:
                    raise

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
        offset = _file_size(self.logfile)
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
            raise _failure(
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
        deadline = time.monotonic() + self._timeout
        while not _redis_ping(self.port):
            process = self._process
            if process is None or process.poll() is not None:
                raise ServerUnavailable("server exited")
            if time.monotonic() > deadline:
                raise ServerUnavailable("timed out")
            time.sleep(_POLL_INTERVAL)

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
