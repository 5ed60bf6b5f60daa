"""Committed transactions that SQLite would silently drop from a damaged WAL.

SQLite reads its ``-wal`` file (https://sqlite.org/fileformat.html#the_write_ahead_log)
as a chain of frames, each with a checksum seeded by the one before, and treats
the first frame that fails as the end of the log. A damaged byte in an early
frame therefore loses every later commit without an error — and the next
checkpoint or write makes the loss permanent. :func:`wal_problems` finds that
case before anything writes:

1. a read-only probe connection lets SQLite recover the WAL the way it will for
   real (a read-only connection never checkpoints, so nothing is reset), and
   the wal-index header in ``-shm`` (https://sqlite.org/walformat.html) says
   how many frames SQLite accepted (``mxFrame``);
2. if the file holds no frames beyond those — the usual case — there is nothing
   to check (O(1));
3. otherwise the frames beyond are verified one by one, each against the stored
   checksum of the frame before it: a frame that fails followed by a *commit*
   frame of the same WAL generation (same salts) that passes is committed data
   after damage. Frames of a rolled-back or unfinished transaction carry no
   commit mark, and a torn last transaction has no valid commit after it, so
   neither is reported.
"""

from __future__ import annotations

import os
import sqlite3
import struct
import time
from dataclasses import dataclass
from typing import BinaryIO
from urllib.parse import quote

__all__ = ["wal_problems"]

_MAGIC = {0x377F0682: "<", 0x377F0683: ">"}  # the checksum's word order
_HEADER, _FRAME = 32, 24
_MASK = 0xFFFFFFFF
_MOVING = -1


@dataclass(frozen=True)
class _Wal:
    """The WAL header's fields the check needs, and how many frames the file holds."""

    order: str
    page: int
    salts: bytes
    header_ok: bool
    header_sum: tuple[int, int]
    frames: int


@dataclass(frozen=True)
class _Tail:
    """The frames from ``first`` (from 1) to the end of the file, as read."""

    raw: bytes
    first: int
    page: int

    @property
    def last(self) -> int:
        return self.first - 1 + len(self.raw) // (_FRAME + self.page)

    def frame(self, i: int) -> tuple[bytes, bytes]:
        """(24-byte header, page) of frame ``i``."""
        at = (i - self.first) * (_FRAME + self.page)
        return self.raw[at:at + _FRAME], self.raw[at + _FRAME:at + _FRAME + self.page]


def _checksum(data: bytes, s0: int, s1: int, order: str) -> tuple[int, int]:
    """SQLite's WAL checksum (Fletcher-like, over 32-bit words in ``order``)."""
    words = struct.unpack(f"{order}{len(data) // 4}I", data)
    for i in range(0, len(words), 2):
        s0 = (s0 + words[i] + s1) & _MASK
        s1 = (s1 + words[i + 1] + s0) & _MASK
    return s0, s1


def _parse(head: bytes, size: int) -> _Wal | None:
    """The WAL header in ``head`` (the file's first 56 bytes) of a ``size``-byte file, or None if invalid."""
    magic, version, page = struct.unpack(">III", head[:12])
    if magic not in _MAGIC or version != 3007000 or page not in {1} | {1 << n for n in range(9, 17)}:
        return None
    order, page = _MAGIC[magic], 65536 if page == 1 else page
    stored = struct.unpack(">II", head[24:32])
    ok = _checksum(head[:24], 0, 0, order) == stored
    salts = head[16:24]
    if not ok and len(head) >= _HEADER + _FRAME:  # salts may be what was damaged: take frame 1's
        salts = head[_HEADER + 8:_HEADER + 16]
    return _Wal(order, page, salts, ok, stored, (size - _HEADER) // (_FRAME + page))


def _lost_after_damage(wal: _Wal, tail: _Tail, accepted: int) -> tuple[int, int, int] | None:
    """(first damaged frame or 0 for the header, commits after it, last such frame), or None.

    ``tail`` starts at frame ``accepted`` (whose stored checksum seeds the next) or at frame 1.
    """
    seed = struct.unpack(">II", tail.frame(accepted)[0][16:24]) if accepted else wal.header_sum
    bad, commits, last = (None if wal.header_ok else 0), 0, 0
    for i in range(accepted + 1, tail.last + 1):
        head, page = tail.frame(i)
        if head[8:16] != wal.salts:
            break  # an older generation of the WAL: SQLite never reads past here
        stored = struct.unpack(">II", head[16:24])
        ok = _checksum(head[:8] + page, seed[0], seed[1], wal.order) == stored
        if not ok and bad is None:
            bad = i
        elif ok and bad is not None and head[4:8] != b"\0\0\0\0":
            commits, last = commits + 1, i
        seed = stored
    return (bad, commits, last) if bad is not None and commits else None


def _accepted_frames(shm_path: str, wal: _Wal) -> int | None:
    """``mxFrame`` of the wal-index: the frames SQLite accepted (None if it cannot be read)."""
    try:
        with open(shm_path, "rb") as f:
            head = f.read(96)
    except OSError:
        return None
    if len(head) < 96 or head[:48] != head[48:96] or not head[12] or head[32:40] != wal.salts:
        return None
    return int(struct.unpack("=I", head[16:20])[0])


def _probe(path: str, timeout: float) -> sqlite3.Connection:
    """A read-only connection that has recovered the WAL (it can never checkpoint or reset it)."""
    uri = f"file:{quote(os.path.abspath(path))}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None)
    conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    return conn


def _scan(path: str, timeout: float) -> tuple[int | None, str | None]:
    """(SQLite's accepted frames — None if unknown, :data:`_MOVING` if a writer moved on while
    we read —, the problem found or None). Reads only the WAL header unless frames lie beyond
    the accepted ones."""
    try:
        with open(path + "-wal", "rb") as f:
            head, size = f.read(_HEADER + _FRAME), os.fstat(f.fileno()).st_size
            wal = _parse(head, size) if len(head) >= _HEADER else None
            if wal is None:
                return 0, None if size <= _HEADER + _FRAME else (
                    f"{path}-wal: its header is not a valid WAL header, so SQLite ignores its "
                    f"{size} bytes; keep a copy of both files and restore from a backup")
            return _scan_frames(path, f, wal, timeout)
    except FileNotFoundError:
        return None, None


def _scan_frames(path: str, f: BinaryIO, wal: _Wal, timeout: float) -> tuple[int | None, str | None]:
    conn = _probe(path, timeout)
    try:
        accepted = _accepted_frames(path + "-shm", wal)
        found = None
        if (accepted or 0) < wal.frames:
            first = max(accepted or 0, 1)
            f.seek(_HEADER + (first - 1) * (_FRAME + wal.page))
            found = _lost_after_damage(wal, _Tail(f.read(), first, wal.page), accepted or 0)
        if accepted != _accepted_frames(path + "-shm", wal):
            accepted = _MOVING
    finally:
        conn.close()
    return accepted, _describe(path, found)


def _describe(path: str, found: tuple[int, int, int] | None) -> str | None:
    if found is None:
        return None
    bad, commits, last = found
    where = "the WAL header" if bad == 0 else f"frame {bad}"
    return (
        f"{path}-wal: {where} fails its checksum and {commits} committed transaction(s) follow it "
        f"(up to frame {last}); SQLite would silently drop them at the next checkpoint. Do not write to "
        f"the store: keep a copy of {path} and {path}-wal, then restore from a backup (`statekeel restore`)"
    )


CONFIRM_AFTER = (0.1, 0.3)
"""Pauses before the re-checks that must find the same problem at the same point (seconds)."""


def wal_problems(path: str, timeout: float = 5.0) -> list[str]:
    """Committed data a damaged WAL next to ``path`` would lose; empty when there is none.

    Safe while other processes use the store: the WAL is read without a lock, so a
    writer caught between writing its frames and publishing them could look like
    damage for a moment. A problem is reported only if it is found again, at the
    same ``mxFrame``, after :data:`CONFIRM_AFTER` — damage stays put, a writer does not.
    """
    try:
        if os.path.getsize(path + "-wal") <= _HEADER:
            return []
    except OSError:
        return []
    first = _scan(path, timeout)
    for pause in CONFIRM_AFTER:
        if first[1] is None:
            return []
        time.sleep(pause)
        again = _scan(path, timeout)
        if again != first or first[0] == _MOVING:
            return []  # it moved: a live writer, not damage at rest
    return [first[1]] if first[1] else []
