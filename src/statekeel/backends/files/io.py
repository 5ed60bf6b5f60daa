"""File changes of the files backend: :class:`Action`, applying them, and taking them back.

Every change to the store is a list of :class:`Action` — write a whole file,
append to a log at a known offset, delete a file. :mod:`.journal` makes such a
list durable with one append + ``fdatasync`` of the write-ahead journal; only
then are the files changed, *in place and without fsync* (:func:`run`):

* a write overwrites the file from offset 0 and cuts it to its new length (no
  temp file, no rename: a new inode per write costs more than the fsync it
  replaces, and ext4 flushes files replaced by rename);
* an append writes at its fixed offset and cuts the file there (dropping a torn
  tail left by a crash);
* a delete unlinks.

Each of them is absolute, so applying an action again — or a whole journal of
them again, in order — gives the same files: that is what makes replay safe.
The files reach the disk at the next checkpoint (:meth:`.journal.Journal.checkpoint`
fsyncs them and their folders before the journal is emptied); until then the
journal holds every change, and other processes see the files through the page cache.

A call that raises must leave the store unchanged: when applying fails (a full
disk), :class:`Undo` puts back every file the batch had changed — old contents
kept in memory and written back, appends cut off, deleted files kept as hard
links and renamed back — fsyncs what it restored, and the journal record is voided.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["Action", "run", "Undo", "write_atomic", "fsync_dir", "make_dirs", "sync_all", "TMP_SUFFIX"]

TMP_SUFFIX = ".tmp"


@dataclass(frozen=True, slots=True)
class Action:
    """One file change, relative to the store root."""

    kind: str
    """``write`` (replace the whole file), ``append`` (at ``offset``) or ``delete``."""
    path: str
    text: str = ""
    offset: int = 0


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: str) -> None:
    """fsync a file if it exists (a file deleted since is simply gone)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except (FileNotFoundError, NotADirectoryError):
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(path: str, dirty: set[str]) -> None:
    """``mkdir -p``; the parent of every folder created goes into ``dirty``."""
    if os.path.isdir(path):
        return
    parent = os.path.dirname(path)
    make_dirs(parent, dirty)
    try:
        os.mkdir(path)
    except FileExistsError:
        return
    dirty.add(parent)


def write_atomic(path: str, data: bytes, dirty: set[str]) -> None:
    """Replace ``path`` with ``data`` via a synced temp file in the same folder (files written
    outside the journal: the marker at creation, repairs, exports)."""
    folder, name = os.path.split(path)
    make_dirs(folder, dirty)
    tmp = _tmp_name(folder, name)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)  # a full disk must not leave temp files behind
        raise
    dirty.add(folder)


def _tmp_name(folder: str, name: str) -> str:
    """A hidden temp name beside ``name`` (ignored by readers, removed by repair)."""
    return os.path.join(folder, f".{name}.{secrets.token_hex(4)}{TMP_SUFFIX}")


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


def write_at(path: str, data: bytes, offset: int, dirty: set[str]) -> None:
    """The file becomes its first ``offset`` bytes followed by ``data`` (created if missing): idempotent.

    Not fsynced — the journal holds the change until a checkpoint syncs the file.
    """
    fd = _open_for_write(path, dirty)
    try:
        size = os.fstat(fd).st_size
        pwrite_all(fd, data, offset)
        if size > offset + len(data):
            os.ftruncate(fd, offset + len(data))
    finally:
        os.close(fd)


def _open_for_write(path: str, dirty: set[str]) -> int:
    try:
        return os.open(path, os.O_WRONLY)
    except FileNotFoundError:
        folder = os.path.dirname(path)
        make_dirs(folder, dirty)
        dirty.add(folder)
        return os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)


def delete(path: str, dirty: set[str]) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return
    dirty.add(os.path.dirname(path))


def run(root: str, action: Action, dirty: set[str]) -> None:
    """Apply one action (see the module docstring); ``dirty`` collects folders whose entries changed."""
    path = os.path.join(root, action.path)
    if action.kind == "delete":
        delete(path, dirty)
    else:
        write_at(path, action.text.encode("utf-8", "surrogatepass"), action.offset if action.kind == "append" else 0, dirty)


def sync_all(dirty: Iterable[str]) -> None:
    for folder in sorted(set(dirty)):
        if os.path.isdir(folder):
            fsync_dir(folder)


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except (FileNotFoundError, NotADirectoryError):
        return None


@dataclass
class Undo:
    """How to take back the changes of a batch that failed half-way (see the module docstring)."""

    steps: list[tuple[str, str, bytes | None, int, str | None]] = field(default_factory=list)
    """(kind, path, old contents of a written file, old size of an appended file or -1, hard link to a deleted file)."""

    def remember(self, action: Action, path: str) -> None:
        if action.kind == "append":
            size = os.path.getsize(path) if os.path.exists(path) else -1
            self.steps.append(("append", path, None, min(size, action.offset), None))
        elif action.kind == "write":
            self.steps.append(("write", path, _read(path), -1, None))
        else:
            keep: str | None = None
            if os.path.exists(path):
                keep = _tmp_name(os.path.dirname(path), os.path.basename(path))
                os.link(path, keep)
            self.steps.append(("delete", path, None, -1, keep))

    def rollback(self) -> None:
        """Put every remembered file back as it was, newest change first, and fsync it: the
        journal record is voided next, so nothing else would ever bring these files back."""
        dirty: set[str] = set()
        for kind, path, old, size, keep in reversed(self.steps):
            if kind == "append":
                _cut_to(path, size, dirty)
            elif kind == "write" and old is None:
                delete(path, dirty)
            elif kind == "write":
                assert old is not None
                write_at(path, old, 0, dirty)
                fsync_file(path)
            elif keep is not None:
                os.replace(keep, path)
                _unlink_quietly(keep)  # rename() between two links of one file does nothing
                dirty.add(os.path.dirname(path))
        self.steps.clear()
        sync_all(dirty)

    def forget(self) -> None:
        """The batch is durable: drop the hard links to deleted files (best effort)."""
        for *_, keep in self.steps:
            if keep is not None:
                _unlink_quietly(keep)
        self.steps.clear()


def _cut_to(path: str, size: int, dirty: set[str]) -> None:
    """Cut an appended file back to ``size`` bytes (``-1``: it did not exist)."""
    if size < 0:
        delete(path, dirty)
        return
    fd = os.open(path, os.O_WRONLY)
    try:
        os.ftruncate(fd, size)
        os.fsync(fd)
    finally:
        os.close(fd)
