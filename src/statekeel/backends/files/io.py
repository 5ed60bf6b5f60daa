"""Durable file operations and the batch journal of the files backend.

Every change to the store is a list of :class:`Action` — write a whole file,
append to a log at a known offset, delete a file — and :func:`commit` makes the
list durable and all-or-nothing:

* one action is atomic by itself: a write is temp file + fsync + rename + fsync
  of the folder; an append is one ``pwrite`` + ``fdatasync`` of lines whose
  ``more`` markers let readers drop a partial append; a delete is unlink +
  fsync of the folder;
* several actions are first written to the journal (``.journal`` in the store
  root, one JSON document with its length and SHA-256) and fsynced — that is
  the commit point — then applied, fsynced, and the journal emptied and
  fsynced. Every action is idempotent (absolute contents, appends at a fixed
  offset), so a journal found on open is simply applied again; a torn journal
  (checksum mismatch) means the crash came before the commit point and is
  discarded, leaving the store exactly as before the batch.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Action", "commit", "Journal", "write_atomic", "fsync_dir", "TMP_SUFFIX"]

TMP_SUFFIX = ".tmp"
_MAGIC = b"statekeel-journal 1"


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
    """Replace ``path`` with ``data`` via a synced temp file in the same folder."""
    folder, name = os.path.split(path)
    make_dirs(folder, dirty)
    tmp = os.path.join(folder, f".{name}.{secrets.token_hex(4)}{TMP_SUFFIX}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        _write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dirty.add(folder)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


def append_at(path: str, data: bytes, offset: int, dirty: set[str]) -> None:
    """Write ``data`` at ``offset`` and cut the file there: idempotent, fsynced."""
    folder = os.path.dirname(path)
    make_dirs(folder, dirty)
    created = not os.path.exists(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size > offset:  # a torn or incomplete append left behind: drop it first
            os.ftruncate(fd, offset)
            os.fdatasync(fd)
        _pwrite_all(fd, data, offset)
        if size > offset + len(data):
            os.ftruncate(fd, offset + len(data))
        os.fdatasync(fd)
    finally:
        os.close(fd)
    if created:
        dirty.add(folder)


def delete(path: str, dirty: set[str]) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return
    dirty.add(os.path.dirname(path))


def run(root: str, action: Action, dirty: set[str]) -> None:
    path = os.path.join(root, action.path)
    if action.kind == "write":
        write_atomic(path, action.text.encode("utf-8"), dirty)
    elif action.kind == "append":
        append_at(path, action.text.encode("utf-8"), action.offset, dirty)
    else:
        delete(path, dirty)


def sync_all(dirty: Iterable[str]) -> None:
    for folder in sorted(set(dirty)):
        if os.path.isdir(folder):
            fsync_dir(folder)


class Journal:
    """The ``.journal`` file: empty, or one batch that must be (re)applied."""

    def __init__(self, root: str, fd: int) -> None:
        self.root = root
        self.fd = fd

    def pending(self) -> bool:
        return os.fstat(self.fd).st_size > 0

    def write(self, actions: list[Action]) -> None:
        body = json.dumps(
            [{"kind": a.kind, "path": a.path, "text": a.text, "offset": a.offset} for a in actions],
            ensure_ascii=False,
        ).encode("utf-8")
        head = b"%s %d %s\n" % (_MAGIC, len(body), hashlib.sha256(body).hexdigest().encode())
        _pwrite_all(self.fd, head + body, 0)
        os.ftruncate(self.fd, len(head) + len(body))
        os.fdatasync(self.fd)

    def clear(self) -> None:
        os.ftruncate(self.fd, 0)
        os.fdatasync(self.fd)

    def load(self) -> list[Action] | None:
        """The journalled batch, or None if the journal is torn (never committed)."""
        size = os.fstat(self.fd).st_size
        raw = os.pread(self.fd, size, 0)
        head, _, body = raw.partition(b"\n")
        parts = head.split(b" ")
        if len(parts) != 4 or b" ".join(parts[:2]) != _MAGIC or not parts[2].isdigit():
            return None
        if int(parts[2]) != len(body) or hashlib.sha256(body).hexdigest().encode() != parts[3]:
            return None
        return [Action(d["kind"], d["path"], d["text"], d["offset"]) for d in json.loads(body)]

    def recover(self) -> str:
        """Finish or discard what a crashed writer left; say which (empty: nothing)."""
        if not self.pending():
            return ""
        actions = self.load()
        if actions is None:
            self.clear()
            return "discarded a batch journal that was torn before its commit point (nothing had been applied)"
        dirty: set[str] = set()
        for action in actions:
            run(self.root, action, dirty)
        sync_all(dirty)
        self.clear()
        return f"re-applied a committed batch of {len(actions)} file changes that a crashed writer left unfinished"


def commit(root: str, journal: Journal, actions: list[Action]) -> None:
    """Make ``actions`` durable, all or nothing (see the module docstring)."""
    if not actions:
        return
    dirty: set[str] = set()
    if len(actions) == 1:
        run(root, actions[0], dirty)
        sync_all(dirty)
        return
    journal.write(actions)
    for action in actions:
        run(root, action, dirty)
    sync_all(dirty)
    journal.clear()
