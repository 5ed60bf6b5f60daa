"""A throwaway PostgreSQL with the pgvector extension, from the ``pgserver`` package's binaries.

Debian's PostgreSQL packages here have no pgvector; the ``pgserver`` wheel on PyPI
bundles a PostgreSQL build with it (``pgserver/pginstall/bin``). This server runs
those binaries exactly as :class:`~statekeel.testing.servers.PostgresServer` runs the
system ones — ``initdb`` in a private temp dir, ``pg_ctl`` on a free loopback port,
as an unprivileged account when this process is root — and creates the extension.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path
from typing import Self

from ._process import ServerUnavailable
from .postgres import PostgresServer

__all__ = ["PgvectorServer", "pgvector_bin_dir"]

_HINT = "install the test extra (pip install -e '.[test]'), which brings `pgserver` (PostgreSQL with pgvector)"


def pgvector_bin_dir() -> Path:
    """Where ``pgserver`` keeps its PostgreSQL binaries; ServerUnavailable when it is not installed."""
    spec = importlib.util.find_spec("pgserver")  # located, not imported: only its binaries are used
    if spec is None or spec.origin is None:
        raise ServerUnavailable(f"no PostgreSQL with pgvector: {_HINT}")
    bin_dir = Path(spec.origin).parent / "pginstall" / "bin"
    if not (bin_dir / "initdb").exists():
        raise ServerUnavailable(f"pgserver is installed but has no {bin_dir / 'initdb'}; reinstall it")
    return bin_dir


class PgvectorServer(PostgresServer):
    """A :class:`PostgresServer` whose binaries come with pgvector (``CREATE EXTENSION vector`` works)."""

    def start(self) -> Self:
        if self._bin_dir is None:
            self._bin_dir = pgvector_bin_dir()
            if os.geteuid() == 0:  # the unprivileged account runs them: from a place it can reach
                self._bin_dir = _shared_copy(self._bin_dir.parent) / "bin"
        return super().start()


def _shared_copy(install: Path) -> Path:
    """The bundled installation copied once under the temp dir, readable by every account.

    A virtualenv inside a clone under a private home (``/root``, mode 0700) cannot be reached
    by the account PostgreSQL runs as, whatever the files' own modes. The binaries find their
    shared libraries by a relative path (``$ORIGIN/../../../pgserver.libs``, as the wheel lays
    them out), so the copy keeps that layout: ``<copy>/pgserver/pginstall`` and ``<copy>/pgserver.libs``.
    """
    stamp = int((install / "bin" / "postgres").stat().st_mtime)
    target = Path(tempfile.gettempdir()) / f"statekeel-pgvector-{stamp}"
    with open(f"{target}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # test processes started together (xdist) copy it once
        if not (target / ".complete").exists():
            _copy(install, target)
    return target / "pgserver" / "pginstall"


def _copy(install: Path, target: Path) -> None:
    """Copy ``install`` (and the wheel's libraries beside it) to ``target``, which appears whole."""
    staging = Path(tempfile.mkdtemp(prefix="statekeel-pgvector-", dir=tempfile.gettempdir()))
    tree = staging / "tree"
    shutil.copytree(install, tree / "pgserver" / "pginstall", symlinks=True)
    libs = install.parent.parent / "pgserver.libs"
    if libs.is_dir():
        shutil.copytree(libs, tree / "pgserver.libs", symlinks=True)
    _make_readable(staging)
    (tree / ".complete").touch()
    shutil.rmtree(target, ignore_errors=True)  # an unfinished copy from an interrupted run
    os.rename(tree, target)
    shutil.rmtree(staging, ignore_errors=True)


def _make_readable(root: Path) -> None:
    """Let every account read and run the bundled installation (pip may install it 0700 under root)."""
    for path in (root, *root.rglob("*")):
        mode = path.stat().st_mode
        wanted = mode | 0o044 | (0o011 if path.is_dir() or mode & 0o100 else 0)
        if wanted != mode:
            try:
                os.chmod(path, wanted)
            except OSError:
                return  # not ours to change: PostgresServer reports the failure to start clearly
