"""Plumbing the throwaway servers share: binaries, free ports, processes, logs, temp dirs.

Only the standard library is used.
"""

from __future__ import annotations

import atexit
import os
import pwd
import shutil
import signal
import socket
import stat
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

LOOPBACK = "127.0.0.1"
"""The only address the servers listen on."""

DEFAULT_STARTUP_TIMEOUT = 30.0
"""Seconds a server may take to accept connections before giving up."""

STOP_TIMEOUT = 30.0
POLL_INTERVAL = 0.02
_PORT_ATTEMPTS = 3
_LOG_TAIL_LINES = 25
_PORT_IN_USE = "Address already in use"

_T = TypeVar("_T")


class ServerUnavailable(Exception):
    """A test server cannot be started: a binary is missing or it did not come up."""


class PortInUse(ServerUnavailable):
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
            if is_executable(path):
                return str(path)
    return None


def free_port() -> int:
    """Return a TCP port on the loopback interface that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
    return port


def is_executable(path: Path) -> bool:
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


def file_size(path: Path) -> int:
    """Return the size of ``path`` in bytes, 0 when it does not exist."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def failure(what: str, log: Path | None, offset: int = 0, detail: str = "") -> ServerUnavailable:
    """Build the exception for a server that failed, quoting its log."""
    tail = _log_tail(log, offset)
    exc_type = PortInUse if _PORT_IN_USE in tail or _PORT_IN_USE in detail else ServerUnavailable
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


def pid_alive(pid: int) -> bool:
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


def child_pids(parent: int) -> list[int]:
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


def send_signal(pid: int, sig: signal.Signals) -> None:
    """Send ``sig`` to ``pid``, ignoring a process that is already gone."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def wait_dead(pids: Iterable[int], timeout: float) -> bool:
    """Wait until none of ``pids`` is alive; return whether that happened in time."""
    remaining = list(pids)
    deadline = time.monotonic() + timeout
    while remaining:
        remaining = [pid for pid in remaining if pid_alive(pid)]
        if not remaining:
            break
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL_INTERVAL)
    return True


def _world_traversable(path: Path) -> bool:
    """Tell whether every directory on ``path`` can be entered by any user."""
    for directory in (path, *path.parents):
        if not directory.stat().st_mode & stat.S_IXOTH:
            return False
    return True


def make_temp_dir(prefix: str, owner: pwd.struct_passwd | None) -> Path:
    """Create a private temporary directory, owned by ``owner`` when given."""
    base = Path(tempfile.gettempdir())
    if owner is not None and not _world_traversable(base):
        base = Path("/tmp")
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    if owner is not None:
        os.chown(path, owner.pw_uid, owner.pw_gid)
    return path



# --------------------------------------------------------------------------- base


class Server:
    """Context-manager plumbing, port picking and exit-time cleanup shared by the servers."""

    _port: int | None

    @property
    def port(self) -> int:
        """The TCP port the server listens on (127.0.0.1 only)."""
        return require(self._port, "port")

    @property
    def host(self) -> str:
        """The address the server listens on: always ``127.0.0.1``."""
        return LOOPBACK

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

    def _wait_until(self, answers: Callable[[], bool], process: Callable[[], Any], timeout: float,
                    interval: float = POLL_INTERVAL) -> None:  # fmt: skip
        """Poll ``answers()`` until True; ServerUnavailable when the ``process()`` (a Popen, or None)
        exits first or ``timeout`` seconds pass."""
        deadline = time.monotonic() + timeout
        while not answers():
            proc = process()
            if proc is None or proc.poll() is not None:
                raise ServerUnavailable("server exited")
            if time.monotonic() > deadline:
                raise ServerUnavailable("timed out")
            time.sleep(interval)

    def _start_on_free_port(self, requested: int | None, launch: Callable[[], None]) -> None:
        """Set ``self._port`` and ``launch()``, retrying on a new port if another process took it."""
        attempts = 1 if requested is not None else _PORT_ATTEMPTS
        for attempt in range(attempts):
            self._port = requested or free_port()
            try:
                launch()
                return
            except PortInUse:
                if attempt == attempts - 1:
                    raise


def require(value: _T | None, what: str) -> _T:
    """Return ``value``, or raise if the server has not been started."""
    if value is None:
        raise RuntimeError(f"{what} is only known while the server is started")
    return value

