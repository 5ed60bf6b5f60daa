"""The write-ahead (redo) journal of the files backend, and :func:`commit`.

``.journal`` in the store root (journal format 3)::

    statekeel-journal 3 <epoch> <applied> <batches>\\n        fixed-width header (hex numbers)
    statekeel-batch <epoch> <n> <length> <crc32>\\n           one record per batch …
    <body: the batch's file actions>
    \\nstatekeel-batch-end <length> <crc32>\\n

Each ``apply`` batch is ONE write of a self-checking record and ONE
``fdatasync``: that is the commit point. The files are then changed in place,
without fsync (:mod:`.io`), under the same exclusive ``flock``, and the header's
``applied`` offset is advanced (not synced: it tells the *other processes* of
this boot, through the page cache, that no writer died half-way). A checkpoint —
every :data:`CHECKPOINT_BATCHES` batches or :data:`CHECKPOINT_BYTES` bytes, and
at close — fsyncs every file the records touched and their folders, then starts
a new *epoch*: the header's epoch is incremented and synced, which voids every
older record at once. The file is never truncated: the next records overwrite
the old ones in place, so an ``fdatasync`` flushes data only (no size change to
commit) and the journal never gives back disk space it will need again.

Recovery. A record belongs to the journal only if it carries the header's epoch
and its checksum (over epoch, number and body) holds; parsing stops at the first
one that does not. Every action is absolute (whole contents, an append at a
fixed offset, a delete), so replaying the epoch's records in order is
idempotent: a record applied twice leaves the same files. The first lock a
process takes replays the whole epoch and checkpoints it (after a power loss
the page cache — and the ``applied`` offset — cannot be trusted, and every
process alive now started after it); later locks replay only a record found at
``applied`` (a writer killed between its commit point and the end of its
changes). A torn record (cut short, never acknowledged) ends the journal; a
complete record whose checksum fails, or anything followed by a valid record of
the epoch, is damage after a commit point and is refused (``StoreError``),
never silently dropped. Journals of formats 1 and 2 (one batch, written by
earlier versions) are still read and finished.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from zlib import crc32

from ...errors import StoreError, maybe_applied
from . import io as _io
from .io import Action, Undo, fsync_dir, fsync_file, pwrite_all

__all__ = ["Journal", "commit", "journal_batches", "CHECKPOINT_BATCHES", "CHECKPOINT_BYTES", "HEAD_LEN", "damaged_journal"]

CHECKPOINT_BATCHES = 1000
CHECKPOINT_BYTES = 2 << 20
"""A checkpoint (fsync of the files, a new epoch) after this many batches or bytes."""

_GROW_MIN, _GROW_MAX = 64 << 10, 1 << 20
"""The journal file grows ahead of its records by doubling, from 64 KiB, by at most 1 MiB at a time."""

_MAGIC = b"statekeel-journal 3 "
HEAD_LEN = len(_MAGIC) + 16 + 1 + 16 + 1 + 8 + 1 + 8 + 1
_REC = b"statekeel-batch "
_END = b"\nstatekeel-batch-end "
_HEAD_RE = re.compile(rb"statekeel-batch ([0-9a-f]{16}) (\d{1,12}) (\d{1,12}) ([0-9a-f]{8})")
_HEADER_RE = re.compile(rb"(statekeel-journal 3 ([0-9a-f]{16}) ([0-9a-f]{16}) ([0-9a-f]{8})) ([0-9a-f]{8})\n")
_LEGACY = (b"statekeel-journal 1 ", b"statekeel-journal 2 ")


def damaged_journal(message: str) -> StoreError:
    """The journal was complete (past its commit point) but its bytes no longer match their checksum."""
    return StoreError(message)


_DAMAGED = (
    "the batch journal (.journal) holds a batch that was fully written — past its commit point — but whose "
    "bytes are damaged, so the store may hold part of that batch; it was kept, not applied: run `statekeel "
    "doctor` and restore the store from a backup (`statekeel doctor --repair` sets the journal aside)"
)


# -- record bodies -------------------------------------------------------------------
def encode_body(actions: list[Action]) -> bytes:
    """``<kind> <offset> <length> <path>\\n<bytes>`` per action: no escaping of the contents."""
    parts: list[bytes] = []
    for a in actions:
        data = a.text.encode("utf-8", "surrogatepass")
        parts.append(b"%s %d %d %s\n" % (a.kind.encode(), a.offset, len(data), a.path.encode("utf-8", "surrogatepass")))
        parts.append(data)
    return b"".join(parts)


def decode_body(body: bytes) -> list[Action]:
    """The actions of a record whose checksum matched; StoreError if a foreign program wrote it."""
    out: list[Action] = []
    pos = 0
    try:
        while pos < len(body):
            nl = body.index(b"\n", pos)
            kind, offset, length, path = body[pos:nl].split(b" ", 3)
            n = int(length)
            data = body[nl + 1 : nl + 1 + n]
            if kind not in (b"write", b"append", b"delete") or len(data) != n:
                raise ValueError(f"bad action {body[pos:nl]!r}")
            out.append(Action(kind.decode(), path.decode("utf-8", "surrogatepass"),
                              data.decode("utf-8", "surrogatepass"), int(offset)))
            pos = nl + 1 + n
    except (ValueError, UnicodeError) as exc:
        raise damaged_journal(f".journal holds a record that is not a batch ({exc}); {_DAMAGED}") from exc
    return out


def _record(epoch: int, n: int, body: bytes) -> bytes:
    prefix = b"%016x %d" % (epoch, n)
    seal = b"%d %08x" % (len(body), crc32(body, crc32(prefix)))
    return b"%s%s %s\n%s%s%s\n" % (_REC, prefix, seal, body, _END, seal)


@dataclass(frozen=True, slots=True)
class Rec:
    """One record of the current epoch: where it lies in the journal, and its body."""

    start: int
    end: int
    body: bytes


def _record_at(raw: bytes, pos: int, epoch: int) -> Rec | None:
    """The record at ``pos`` if it is one of ``epoch`` and intact; None where the journal ends.

    A complete record that fails its checksum (its tail line is where its head says)
    is damage after the commit point: :class:`StoreError`.
    """
    nl = raw.find(b"\n", pos, pos + 80)
    m = _HEAD_RE.fullmatch(raw, pos, nl) if nl >= 0 else None
    if m is None or int(m[1], 16) != epoch:
        return None  # torn, or what an earlier epoch left: the end (see parse() for damage)
    length, crc = int(m[3]), int(m[4], 16)
    b0, b1 = nl + 1, nl + 1 + length
    tail = b"%s%d %08x\n" % (_END, length, crc)
    if b1 <= len(raw) and crc32(raw[b0:b1], crc32(raw[pos + len(_REC) : m.end(2)])) == crc:
        return Rec(pos, b1 + len(tail), raw[b0:b1])  # head and checksum vouch for it (a damaged tail is harmless)
    if raw[b1 : b1 + len(tail)] == tail and b"\0" not in raw[b0:b1]:
        raise damaged_journal(f"the record at byte {pos} of .journal fails its checksum; {_DAMAGED}")
    return None  # cut short or zero-filled: torn, never acknowledged


def _later_record(raw: bytes, pos: int, epoch: int) -> bool:
    """Is there an intact record of ``epoch`` after ``pos``? (Then what ends the journal at ``pos`` is damage.)"""
    mark = _REC + b"%016x " % epoch
    at = raw.find(mark, pos + 1)
    while at >= 0:
        try:
            if _record_at(raw, at, epoch) is not None:
                return True
        except StoreError:
            return True
        at = raw.find(mark, at + 1)
    return False


def parse(raw: bytes) -> tuple[list[Rec], int, int]:
    """(records of the current epoch, where they end, the epoch) of a format-3 journal.

    Raises :class:`StoreError` for damage: an unreadable header, a record failing its
    checksum, or a valid record of the epoch after the point where the records stop.
    """
    head = _header_match(raw)
    if head is None:
        raise damaged_journal(f"the header line of .journal is damaged; {_DAMAGED}")
    epoch = int(head[2], 16)
    recs: list[Rec] = []
    pos = HEAD_LEN
    while (rec := _record_at(raw, pos, epoch)) is not None:
        recs.append(rec)
        pos = rec.end
    if _later_record(raw, pos, epoch):
        raise damaged_journal(f"the journal's records stop at byte {pos}, yet a later one is intact; {_DAMAGED}")
    return recs, pos, epoch


def _is_v3(raw: bytes) -> bool:
    return not raw.startswith(_LEGACY)


# -- journals of formats 1 and 2 (one batch; written by earlier versions) ----------------------
def _seal_ok(seal: bytes, body: bytes) -> bool:
    parts = seal.split(b" ")
    return len(parts) == 2 and parts[0] == b"%d" % len(body) and parts[1] == hashlib.sha256(body).hexdigest().encode()


def legacy_body(raw: bytes) -> bytes | None:
    """The body of a committed format 1/2 journal; None if torn; StoreError if damaged."""
    if b"\0" in raw:
        return None  # zero-filled by a crash, or voided by a failed write: never reached the commit point
    head, _, rest = raw.partition(b"\n")
    if head.startswith(_LEGACY[0]):  # format-1 journals: no tail, any mismatch reads as torn
        return rest if _seal_ok(head[len(_LEGACY[0]) :], rest) else None
    body, sep, tail = rest.rpartition(b"\nstatekeel-journal-end ")
    if head.startswith(_LEGACY[1]) and _seal_ok(head[len(_LEGACY[1]) :], body):
        return body
    if sep and tail.endswith(b"\n") and _seal_ok(tail[:-1], body):
        return body  # the head line was damaged; the tail vouches for the body
    if not sep or not tail.endswith(b"\n"):
        return None  # cut short: never reached the commit point
    raise damaged_journal(_DAMAGED)


def _legacy_actions(body: bytes) -> list[Action]:
    try:
        return [Action(d["kind"], d["path"], d["text"], d["offset"]) for d in json.loads(body)]
    except (ValueError, KeyError, TypeError) as exc:  # only a journal written by another program
        raise damaged_journal(f".journal does not hold a batch ({exc!r})") from exc


class Journal:
    """The ``.journal`` file. Every method runs under the store's flock (writes: exclusive)."""

    def __init__(self, root: str, fd: int) -> None:
        self.root = root
        self.fd = fd
        self.epoch = 0
        self.size = 0
        """Where the next record goes: the end of the epoch's last record (0: no header yet)."""
        self.batches = 0
        self._file_size = 0
        self._before: tuple[int, bytes, int] = (0, b"", 0)
        """(offset, bytes overwritten, file size) before the last record: what :meth:`void` puts back."""

    # -- state ---------------------------------------------------------------------------
    def _head(self) -> tuple[int, int, int] | None:
        """(epoch, applied, batches) from the header; None for an empty or old-format journal, or damage."""
        m = _header_match(os.pread(self.fd, HEAD_LEN, 0))
        return None if m is None else (int(m[2], 16), int(m[3], 16), int(m[4], 16))

    def _record_head_at(self, pos: int, epoch: int) -> bool:
        m = _HEAD_RE.match(os.pread(self.fd, 80, pos))
        return m is not None and int(m[1], 16) == epoch

    def idle(self) -> bool:
        """No record in the current epoch: nothing to replay (checked without reading the journal)."""
        self._file_size = os.fstat(self.fd).st_size
        if self._file_size == 0:
            return True
        head = self._head()
        return head is not None and not self._record_head_at(HEAD_LEN, head[0])

    def unfinished(self) -> bool:
        """True when the files may lack a committed batch: a writer died between its commit point
        and the end of its changes (a record lies at ``applied``), or the journal needs a look."""
        self._file_size = os.fstat(self.fd).st_size
        if self._file_size == 0:
            self.epoch = self.size = self.batches = 0
            return False
        head = self._head()
        if head is None or self._record_head_at(head[1], head[0]):
            return True
        self.epoch, self.size, self.batches = head
        return False

    def _raw(self) -> bytes:
        return os.pread(self.fd, os.fstat(self.fd).st_size, 0)

    def _records(self, raw: bytes) -> tuple[list[Rec], int, int] | None:
        """parse(), but None when the journal holds no format-3 header (empty, or torn at its first write)."""
        if len(raw) < HEAD_LEN or b"\0" in raw[:HEAD_LEN]:
            return None
        return parse(raw)

    def load(self) -> list[Action] | None:
        """Every action the journal holds, in order (None: nothing committed).

        Raises :class:`StoreError` when a record was complete but its bytes changed since.
        """
        raw = self._raw()
        if raw.startswith(_LEGACY):
            body = legacy_body(raw)
            return None if body is None else _legacy_actions(body)
        parsed = self._records(raw)
        return None if parsed is None else [a for rec in parsed[0] for a in decode_body(rec.body)] or None

    def unapplied(self) -> int:
        """How many committed batches the files may lack (for ``doctor``); StoreError if damaged."""
        raw = self._raw()
        if raw.startswith(_LEGACY):
            return 0 if legacy_body(raw) is None else 1
        parsed = self._records(raw)
        applied = _header_match(raw)
        if parsed is None or applied is None:
            return 0
        return sum(1 for rec in parsed[0] if rec.end > int(applied[3], 16))

    # -- writing -------------------------------------------------------------------------
    def append(self, actions: list[Action]) -> None:
        """Write the batch's record at the end of the epoch and fdatasync it: the commit point.

        On failure the record is voided (:meth:`void`) before the error propagates.
        """
        at = self.size
        if at == 0:
            self.epoch, self.batches = int.from_bytes(os.urandom(6), "big"), 0
        rec = _record(self.epoch, self.batches + 1, encode_body(actions))
        data = rec if at else _header_bytes(self.epoch, HEAD_LEN, 0) + rec
        self._before = (at, os.pread(self.fd, len(data), at), self._file_size)
        end = at + len(data)
        try:
            pwrite_all(self.fd, data, at)
            if end > self._file_size:
                self._grow(end)
            os.fdatasync(self.fd)
        except BaseException as exc:
            self.void(exc)
            raise
        self.size = end
        self._file_size = max(self._file_size, end)

    def _grow(self, end: int) -> None:
        """Zeros ahead of the records (doubling, 64 KiB to 1 MiB at a time), so that most syncs
        flush data only, with no change of size to commit; skipped when the disk has no room."""
        want = max(end, min(2 * self._file_size, self._file_size + _GROW_MAX), _GROW_MIN)
        try:
            pwrite_all(self.fd, bytes(want - end), end)
        except OSError:
            return
        self._file_size = want

    def mark_applied(self) -> None:
        """Record (in the page cache only) that the files hold every batch: see the module docstring."""
        self.batches += 1
        try:
            pwrite_all(self.fd, _header_bytes(self.epoch, self.size, self.batches), 0)
        except OSError:
            pass  # the next user then replays the last record once more: harmless

    def void(self, exc: BaseException) -> None:
        """Make sure the last record written is never applied: put back the bytes it overwrote
        and the file's size. If that fails, NUL bytes over its head end the journal before
        it (torn), so the batch is voided even when nothing can be synced."""
        at, old, size = self._before
        try:
            pwrite_all(self.fd, old, at)
            os.ftruncate(self.fd, max(size, at + len(old)))
            os.fdatasync(self.fd)
            self.size, self._file_size = at, max(size, at + len(old))
            return
        except OSError:
            pass
        try:
            pwrite_all(self.fd, b"\0" * len(_REC), at or HEAD_LEN)
        except OSError as again:
            raise maybe_applied(StoreError(
                f"a batch was committed but could neither be finished nor rolled back ({exc}; then {again}); "
                "it may have been applied: check before retrying, and free space or fix the disk"
            )) from exc

    def clear(self) -> None:
        """Empty the journal file (old formats, a damaged journal set aside)."""
        os.ftruncate(self.fd, 0)
        os.fdatasync(self.fd)
        self.epoch = self.size = self.batches = 0

    # -- recovery and checkpoints ------------------------------------------------------------
    def recover(self, *, full: bool) -> str:
        """Replay what the files may lack; say what was done (empty: nothing).

        ``full``: replay the whole epoch and checkpoint (a process's first lock: the page cache
        may predate a power loss); otherwise only the records past the ``applied`` offset.
        """
        raw = self._raw()
        if raw.startswith(_LEGACY):
            return self._recover_legacy(raw)
        parsed = self._records(raw)
        if parsed is None:
            if raw:
                self.clear()
                return "discarded a batch journal that was torn before its commit point (nothing had been applied)"
            return ""
        recs, end, epoch = parsed
        head = _header_match(raw)
        applied = int(head[3], 16) if head is not None else HEAD_LEN
        todo = recs if full else [rec for rec in recs if rec.end > applied]
        dirty: set[str] = set()
        for rec in todo:
            for action in decode_body(rec.body):
                _io.run(self.root, action, dirty)
        self.epoch, self.size, self.batches, self._file_size = epoch, end, len(recs), len(raw)
        if self._record_head_at(end, epoch):  # a torn record (never acknowledged): no longer a head at all
            pwrite_all(self.fd, bytes(len(_REC)), end)
        if full:
            self.checkpoint(recs)
        elif todo:
            self.mark_applied()
        return f"re-applied {len(todo)} committed batch(es) from the journal" if todo else ""

    def _recover_legacy(self, raw: bytes) -> str:
        body = legacy_body(raw)
        if body is None:
            self.clear()
            return "discarded a batch journal that was torn before its commit point (nothing had been applied)"
        actions = _legacy_actions(body)
        dirty: set[str] = set()
        for action in actions:
            _io.run(self.root, action, dirty)
        self._sync(actions)
        self.clear()
        return f"re-applied a committed batch of {len(actions)} file changes that a crashed writer left unfinished"

    def checkpoint(self, recs: list[Rec] | None = None) -> None:
        """fsync every file the epoch's records touched, and their folders; then start a new epoch."""
        if recs is None:
            parsed = self._records(self._raw())
            recs = [] if parsed is None else parsed[0]
        if not recs:
            return
        self._sync([a for rec in recs for a in decode_body(rec.body)])
        self.epoch, self.size, self.batches = (self.epoch + 1) & 0xFFFFFFFFFFFF, HEAD_LEN, 0
        pwrite_all(self.fd, _header_bytes(self.epoch, HEAD_LEN, 0), 0)
        os.fdatasync(self.fd)

    def _sync(self, actions: list[Action]) -> None:
        files = {a.path for a in actions}
        folders: set[str] = set()
        for path in files:
            fsync_file(os.path.join(self.root, path))
            folder = os.path.dirname(path)
            while folder and folder not in folders:  # folders created on the way need their parents synced
                folders.add(folder)
                folder = os.path.dirname(folder)
        for folder in sorted(folders, key=len, reverse=True):
            if os.path.isdir(os.path.join(self.root, folder)):
                fsync_dir(os.path.join(self.root, folder))

    def due(self) -> bool:
        return self.batches >= CHECKPOINT_BATCHES or self.size >= CHECKPOINT_BYTES


def journal_batches(root: str | os.PathLike[str]) -> int:
    """How many batches the journal of the store at ``root`` holds in its current epoch (0: all
    checkpointed); for tests and tools — the backend itself reads the journal through :class:`Journal`."""
    try:
        with open(os.path.join(root, ".journal"), "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return 0
    if raw.startswith(_LEGACY):
        return 0 if legacy_body(raw) is None else 1
    return 0 if len(raw) < HEAD_LEN or b"\0" in raw[:HEAD_LEN] else len(parse(raw)[0])


def _header_bytes(epoch: int, applied: int, batches: int) -> bytes:
    line = b"%s%016x %016x %08x" % (_MAGIC, epoch, applied, batches & 0xFFFFFFFF)
    return b"%s %08x\n" % (line, crc32(line))


def _header_match(raw: bytes) -> re.Match[bytes] | None:
    """The header's fields (groups 2–4: epoch, applied, batches) if it is intact."""
    m = _HEADER_RE.match(raw, 0, HEAD_LEN)
    return m if m is not None and crc32(m[1]) == int(m[5], 16) else None


def commit(root: str, journal: Journal, actions: list[Action]) -> None:
    """Make ``actions`` durable, all or nothing: one journal append + fdatasync, then the files.

    When changing the files fails, every change already made is rolled back and the
    record voided before the error propagates: a call that raised changed nothing.
    """
    if not actions:
        return
    journal.append(actions)
    undo = Undo()
    try:
        dirty: set[str] = set()
        for action in actions:
            path = os.path.join(root, action.path)
            undo.remember(action, path)
            _io.run(root, action, dirty)
    except BaseException as exc:
        _roll_back(journal, undo, exc)
        raise
    journal.mark_applied()
    undo.forget()
    if journal.due():
        try:
            journal.checkpoint()
        except OSError:
            pass  # the journal keeps every batch; the next checkpoint tries again


def _roll_back(journal: Journal, undo: Undo, exc: BaseException) -> None:
    try:
        undo.rollback()
    except OSError as again:
        raise maybe_applied(StoreError(
            f"a batch was committed but could neither be finished nor rolled back ({exc}; then {again}); "
            "it is finished the next time the store is used with free space — do not retry it"
        )) from exc
    journal.void(exc)
