"""A throwaway PostgreSQL cluster (``initdb`` + ``pg_ctl``) on a free loopback port."""

from __future__ import annotations

import os
import pwd
import re
import shlex
import shutil
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Self

from ._process import (
    DEFAULT_STARTUP_TIMEOUT,
    LOOPBACK,
    STOP_TIMEOUT,
    Server,
    ServerUnavailable,
    child_pids,
    failure,
    file_size,
    find_binary,
    is_executable,
    make_temp_dir,
    pid_alive,
    require,
    send_signal,
    wait_dead,
)

DEFAULT_PG_USER = "statekeel-pg"
"""System account that runs PostgreSQL when this process is root."""

_PG_HINT = (
    "install the PostgreSQL 15 server binaries (Debian/Ubuntu: "
    "`apt-get install postgresql-15`, which provides /usr/lib/postgresql/15/bin/initdb "
    "and pg_ctl), put them on PATH, or pass bin_dir="
)


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



class PostgresServer(Server):
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
    def datadir(self) -> Path:
        """The cluster's data directory (``PGDATA``)."""
        return require(self._root, "datadir") / "data"

    @property
    def socket_dir(self) -> Path:
        """The directory holding the server's Unix-domain socket."""
        return require(self._root, "socket_dir")

    @property
    def logfile(self) -> Path:
        """The server log written by ``pg_ctl -l``."""
        return require(self._root, "logfile") / "postgres.log"

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
        return pid if pid_alive(pid) else None

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
                self._start_on_free_port(self._requested_port, self._pg_ctl_start)
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
                self._run(["stop", "-w", "-t", str(int(STOP_TIMEOUT)), "-m", "immediate"])
            if self.is_running:
                self.kill()
        finally:
            self._remove_files()

    def restart(self) -> None:
        """Restart the server (``pg_ctl restart -m fast``) on the same port and data.

        Also starts a server that is not running, e.g. after :meth:`kill`.
        """
        require(self._root, "the cluster")
        offset = file_size(self.logfile)
        result = self._run(["restart", "-m", "fast", *self._start_args()])
        if result.returncode != 0:
            raise failure("PostgreSQL did not restart", self.logfile, offset, result.stdout)

    def stop_immediate(self) -> None:
        """``pg_ctl stop -m immediate``: every server process quits without a checkpoint, as in a
        crash (the next start runs crash recovery); unlike :meth:`kill`, PostgreSQL's own way."""
        done = self._run(["stop", "-w", "-m", "immediate"])
        if done.returncode != 0:
            raise ServerUnavailable(f"pg_ctl stop -m immediate failed: {(done.stdout + done.stderr).strip()}")

    def kill(self) -> None:
        """Crash the server: SIGKILL the postmaster and all its children.

        The data directory stays; :meth:`start` or :meth:`restart` brings the
        cluster back (with crash recovery) on the same port.
        """
        pid = self.pid
        if pid is None:
            return
        send_signal(pid, signal.SIGSTOP)  # no new children while we collect them
        victims = [pid, *child_pids(pid)]
        for victim in victims:
            send_signal(victim, signal.SIGKILL)
        if not wait_dead(victims, STOP_TIMEOUT):
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
        self._root = make_temp_dir("statekeel-pg-", self._account)
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
            if sibling is not None and is_executable(sibling):
                pg_ctl = str(sibling)  # same installation as initdb
            else:
                pg_ctl = find_binary("pg_ctl", dirs)
        if initdb is None or pg_ctl is None:
            missing = " and ".join(n for n, p in (("initdb", initdb), ("pg_ctl", pg_ctl)) if not p)
            where = self._bin_dir or "PATH, /usr/local/bin or /usr/lib/postgresql/*/bin"
            raise ServerUnavailable(f"PostgreSQL {missing} not found in {where}; {_PG_HINT}")
        return initdb, pg_ctl

    def _pg_ctl_start(self) -> None:
        """Run ``pg_ctl start`` and wait until the server accepts connections."""
        offset = file_size(self.logfile)
        result = self._run(["start", *self._start_args()])
        if result.returncode != 0:
            if self.is_running:  # e.g. timed out while still starting
                self._run(["stop", "-w", "-m", "immediate"])
            raise failure(
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
            raise failure(what, self._log_or_none()) from exc
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

