"""Durable file operations and the batch journal of the files backend.

Every change to the store is a list of :class:`Action` — write a whole file,
append to a log at a known offset, delete a file — and :func:`commit` makes the
list durable and all-or-nothing:

* one action is atomic by itself: a write is temp file + fsync + rename + fsync
  of the folder; an append is one ``pwrite`` + ``fdatasync`` of lines whose
  ``more`` markers let readers drop a partial append; a delete is unlink +
  fsync of the folder;
* several actions are first written to the journal (``.journal`` in the store
  root, one JSON document framed by a head and a tail line that both carry its
  length and SHA-256) and fsynced — that is the commit point — then applied,
  fsynced, and the journal emptied and fsynced. Every action is idempotent
  (absolute contents, appends at a fixed offset), so a journal found on open is
  simply applied again. A journal cut short (no tail, or zero-filled bytes: the
  crash came before the commit point) is discarded, leaving the store exactly
  as before the batch; a complete journal whose checksum fails was damaged
  after its commit point and is refused (``StoreError``), never
  silently dropped, because the store may hold part of its batch.

A call that raises must leave the store unchanged: when applying fails (a full
disk), :class:`Undo` puts back every file the batch had changed — old files are
kept as hard links and renamed back, appends are cut off — so rolling back
needs no free space, and the journal is emptied.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field

from ...errors import StoreError, maybe_applied

__all__ = ["Action", "commit", "Journal", "Undo", "write_atomic", "fsync_dir", "TMP_SUFFIX"]

TMP_SUFFIX = ".tmp"
_MAGIC_V1 = b"statekeel-journal 1"
_MAGIC = b"statekeel-journal 2"
_END = b"statekeel-journal-end"


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


@dataclass
class Undo:
    """How to take back the changes of a batch that failed half-way (see the module docstring)."""

    steps: list[tuple[str, str, str | None, int]] = field(default_factory=list)
    """(kind, path, hard link to the old file or None, old size of an appended file or -1)."""

    def remember(self, action: Action, path: str) -> None:
        if action.kind == "append":
            size = os.path.getsize(path) if os.path.exists(path) else -1
            self.steps.append(("append", path, None, min(size, action.offset)))
            return
        keep: str | None = None
        if os.path.exists(path):
            keep = _tmp_name(os.path.dirname(path), os.path.basename(path))
            os.link(path, keep)
        self.steps.append((action.kind, path, keep, -1))

    def rollback(self) -> None:
        """Put every remembered file back as it was, newest change first; needs no free space."""
        dirty: set[str] = set()
        for kind, path, keep, size in reversed(self.steps):
            if kind == "append":
                _cut_to(path, size)
            elif keep is not None:
                os.replace(keep, path)
                _unlink_quietly(keep)  # rename() between two links of one file does nothing
            else:
                _unlink_quietly(path)
            dirty.add(os.path.dirname(path))
        self.steps.clear()
        sync_all(dirty)

    def forget(self) -> None:
        """The batch is durable: drop the hard links to the old files (best effort)."""
        for _, _, keep, _ in self.steps:
            if keep is not None:
                _unlink_quietly(keep)
        self.steps.clear()


def _cut_to(path: str, size: int) -> None:
    """Cut an appended file back to ``size`` bytes (``-1``: it did not exist)."""
    if size < 0:
        _unlink_quietly(path)
        return
    fd = os.open(path, os.O_WRONLY)
    try:
        os.ftruncate(fd, size)
        os.fsync(fd)
    finally:
        os.close(fd)


def damaged_journal(message: str) -> StoreError:
    """The journal was complete (past its commit point) but its bytes no longer match their checksum."""
    return StoreError(message)


class Journal:
    """The ``.journal`` file: empty, or one batch that must be (re)applied."""

    def __init__(self, root: str, fd: int) -> None:
        self.root = root
        self.fd = fd

    def pending(self) -> bool:
        return os.fstat(self.fd).st_size > 0

    def write(self, actions: list[Action]) -> None:
        """Write the batch and fsync it: the commit point. On failure the journal is emptied."""
        body = json.dumps(
            [{"kind": a.kind, "path": a.path, "text": a.text, "offset": a.offset} for a in actions],
            ensure_ascii=False,
        ).encode("utf-8")
        seal = b"%d %s\n" % (len(body), hashlib.sha256(body).hexdigest().encode())
        data = b"%s %s%s\n%s %s" % (_MAGIC, seal, body, _END, seal)
        try:
            _pwrite_all(self.fd, data, 0)
            os.ftruncate(self.fd, len(data))
            os.fdatasync(self.fd)
        except BaseException as exc:
            self.void(exc)
            raise

    def void(self, exc: BaseException) -> None:
        """Make sure the batch is never applied: empty the journal, or else mark it torn.

        NUL bytes mean "torn" to :meth:`load`, so overwriting the head with them
        voids the batch even when the file cannot be truncated or synced.
        """
        try:
            self.clear()
            return
        except OSError:
            pass
        try:
            _pwrite_all(self.fd, b"\0" * len(_MAGIC), 0)
        except OSError as again:
            raise maybe_applied(StoreError(
                f"a batch was committed but could neither be finished nor rolled back ({exc}; then {again}); "
                "it may have been applied: check before retrying, and free space or fix the disk"
            )) from exc

    def clear(self) -> None:
        os.ftruncate(self.fd, 0)
        os.fdatasync(self.fd)

    def load(self) -> list[Action] | None:
        """The journalled batch, or None if it is torn (never committed).

        Raises :class:`StoreError` when it was complete but its bytes changed since.
        """
        raw = os.pread(self.fd, os.fstat(self.fd).st_size, 0)
        body = _journal_body(raw)
        if body is None:
            return None
        try:
            return [Action(d["kind"], d["path"], d["text"], d["offset"]) for d in json.loads(body)]
        except (ValueError, KeyError, TypeError) as exc:  # only a journal written by another program
            raise damaged_journal(f"{self.root}/.journal does not hold a batch ({exc!r})") from exc

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


def _seal_ok(seal: bytes, body: bytes) -> bool:
    parts = seal.split(b" ")
    return len(parts) == 2 and parts[0] == b"%d" % len(body) and parts[1] == hashlib.sha256(body).hexdigest().encode()


def _journal_body(raw: bytes) -> bytes | None:
    """The body of a committed journal; None if torn; StoreError if damaged."""
    if b"\0" in raw:
        return None  # zero-filled by a crash, or voided by a failed write: never reached the commit point
    head, _, rest = raw.partition(b"\n")
    if head.startswith(_MAGIC_V1 + b" "):  # layout-1 journals: no tail, any mismatch reads as torn
        body = rest
        return body if _seal_ok(head[len(_MAGIC_V1) + 1 :], body) else None
    body, sep, tail = rest.rpartition(b"\n" + _END + b" ")
    if head.startswith(_MAGIC + b" ") and _seal_ok(head[len(_MAGIC) + 1 :], body):
        return body
    if sep and tail.endswith(b"\n") and _seal_ok(tail[:-1], body):
        return body  # the head line was damaged; the tail vouches for the body
    if not sep or not tail.endswith(b"\n"):
        return None  # cut short: never reached the commit point
    raise damaged_journal(
        "the batch journal (.journal) was fully written — past its commit point — but its bytes are damaged, "
        "so the store may hold part of that batch; it was kept, not applied: run `statekeel doctor` "
        "and restore the store from a backup (`statekeel doctor --repair` sets the journal aside)"
    )


def commit(root: str, journal: Journal, actions: list[Action]) -> None:
    """Make ``actions`` durable, all or nothing (see the module docstring).

    When applying fails, every change already made is rolled back and the
    journal emptied before the error propagates: a call that raised changed nothing.
    """
    if not actions:
        return
    undo = Undo()
    if len(actions) > 1:
        journal.write(actions)
    try:
        dirty: set[str] = set()
        for action in actions:
            undo.remember(action, os.path.join(root, action.path))
            run(root, action, dirty)
        sync_all(dirty)
    except BaseException as exc:
        _roll_back(journal, undo, exc, len(actions) > 1)
        raise
    if len(actions) > 1:
        try:
            journal.clear()
        except OSError:
            pass  # the batch is complete and durable; a journal left behind re-applies the same contents
    undo.forget()


def _roll_back(journal: Journal, undo: Undo, exc: BaseException, journalled: bool) -> None:
    try:
        undo.rollback()
    except OSError as again:
        raise maybe_applied(StoreError(
            f"a batch was committed but could neither be finished nor rolled back ({exc}; then {again}); "
            "it is finished the next time the store is used with free space — do not retry it"
        )) from exc
    if journalled:
        journal.void(exc)
