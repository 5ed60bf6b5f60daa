"""Reading a log's JSON Lines file without reading all of it.

Lines are in ``seq`` order, so any position is found by binary search over
byte offsets (O(log size) small reads) and the tail by reading backwards:
``read(limit=20, reverse=True)`` touches the last few kilobytes only.

The *valid end* of the file is the end of the last complete append. Beyond it
lies only what a crash can leave — a *torn tail*: a final piece without its
newline, zero-filled bytes, and the lines of an append whose last line never
arrived (``more`` > 0). Readers ignore a torn tail; writers cut it off before
appending; :meth:`FilesBackend.repair` cuts it off on demand. Anything else
beyond the last good line — a complete line that does not parse, a complete
last line whose newline is gone — is *damage* to acknowledged data
(:attr:`Tail.damage`): reads raise :class:`~statekeel.errors.CorruptionError`,
writers refuse, and nothing is ever cut off.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

from ...errors import CorruptionError
from .format import Line, LogHeader, json_run, line_seq, parse_line

__all__ = ["LogLines", "Tail", "rebuilt_header"]

_CHUNK = 64 * 1024
_PROBE = 512
_LINEAR = 16 * 1024


@dataclass(frozen=True, slots=True)
class Tail:
    """Where the valid part of a log file ends, and its last entry."""

    end: int
    size: int
    last: Line | None
    damage: int | None = None
    """Offset of a damaged line beyond ``end`` (None: only a torn tail, if anything, lies beyond)."""


class LogLines:
    """A read-only view of one ``.jsonl`` file (missing file = empty log).

    ``splice=(keep, extra)`` views the file as its first ``keep`` bytes followed
    by ``extra`` — what a batch that could not be finished yet will leave (see
    :mod:`.pending`) — without writing anything.
    """

    def __init__(self, path: str, log: str, splice: tuple[int, bytes] | None = None) -> None:
        self.path = path
        self.log = log
        try:
            self._fd: int | None = os.open(path, os.O_RDONLY) if splice is None or splice[0] > 0 else None
        except (FileNotFoundError, NotADirectoryError):
            self._fd = None
        self.size = os.fstat(self._fd).st_size if self._fd is not None else 0
        self._keep, self._extra = (self.size, b"") if splice is None else splice
        if splice is not None:
            self.size = self._keep + len(self._extra)
        self._tail: Tail | None = None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> LogLines:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _pread(self, n: int, offset: int) -> bytes:
        n = min(n, self.size - offset)
        if n <= 0:
            return b""
        out = b""
        if offset < self._keep:
            want = min(n, self._keep - offset)
            out = os.pread(self._fd, want, offset) if self._fd is not None else b""
            if self._extra:
                out = out.ljust(want, b"\0")  # like the hole a write past the end leaves
        start = offset + len(out) - self._keep
        return out + self._extra[start : start + n - len(out)] if len(out) < n else out

    # -- backwards ------------------------------------------------------------
    def backward(self, stop: int) -> Iterator[tuple[int, bytes, bool]]:
        """(start, line without newline, terminated) for each line before ``stop``, last first."""
        buf, buf_start = b"", stop
        while buf_start > 0 or buf:
            terminated = buf.endswith(b"\n")
            nl = buf.rfind(b"\n", 0, len(buf) - 1 if terminated else len(buf))
            if nl < 0 and buf_start > 0:
                lo = max(0, buf_start - _CHUNK)
                buf, buf_start = self._pread(buf_start - lo, lo) + buf, lo
                continue
            raw = buf[nl + 1 : len(buf) - 1 if terminated else len(buf)]
            yield buf_start + nl + 1, raw, terminated
            buf = buf[: nl + 1]

    def tail(self) -> Tail:
        """The valid end and the last complete entry (cached: the file is not changing)."""
        if self._tail is None:
            self._tail = self._find_tail()
        return self._tail

    def _find_tail(self) -> Tail:
        damage: int | None = None
        for start, raw, terminated in self.backward(self.size):
            line = parse_line(raw)
            if line is not None and line.more == 0 and terminated:
                return Tail(start + len(raw) + 1, self.size, line, damage)
            if line is not None and not terminated:
                damage = start  # a complete entry whose newline is gone: acknowledged, not torn
            elif line is None and terminated and b"\0" not in raw:
                damage = start  # a complete line that no longer parses
        return Tail(0, self.size, None, damage)

    def damaged(self) -> CorruptionError | None:
        """The error for damage beyond the valid end, naming the entry it most likely held."""
        tail = self.tail()
        if tail.damage is None:
            return None
        seq = line_seq(self._pread(64, tail.damage).split(b"\n")[0])
        if seq is None:
            seq = tail.last.seq + 1 if tail.last is not None else 1
        return self._damaged_line(tail.damage, seq)

    # -- forwards -------------------------------------------------------------
    def forward(self, start: int, stop: int) -> Iterator[tuple[int, Line]]:
        """(offset, entry) of each line starting in ``[start, stop)``; ``start`` is a line start."""
        pos, buf, i = start, b"", 0  # buf[i:] holds the bytes from pos on
        prev = 0  # the seq of the line before (names a damaged line)
        while pos < stop:
            nl = buf.find(b"\n", i)
            if nl < 0:
                more = self._pread(min(_CHUNK, stop - pos - (len(buf) - i)), pos + len(buf) - i)
                if not more:
                    return
                buf, i = buf[i:] + more, 0
                continue
            line = parse_line(buf[i:nl])
            if line is None:
                seq = line_seq(buf[i:nl])
                raise self._damaged_line(pos, prev + 1 if seq is None else seq)
            yield pos, line
            prev = line.seq
            pos, i = pos + nl + 1 - i, nl + 1

    def _damaged_line(self, pos: int, seq: int) -> CorruptionError:
        return CorruptionError(
            f"entry {seq} of log {self.log!r} is damaged: the line at byte {pos} of {self.path} is not a "
            "valid entry; run `statekeel doctor`, then restore the log from a backup",
            self.log,
            seq,
        )

    def _line_start(self, pos: int) -> int:
        """The first line start at or after ``pos``."""
        while pos > 0:
            chunk = self._pread(_PROBE, pos - 1)
            if not chunk:
                return pos
            nl = chunk.find(b"\n")
            if nl >= 0:
                return pos + nl
            pos += len(chunk)
        return pos

    def _seq_at(self, start: int, end: int) -> int | None:
        head = self._pread(min(_PROBE, end - start), start)
        nl = head.find(b"\n")
        seq = line_seq(head[:nl] if nl >= 0 else head)
        if seq is None:  # a long line written by hand: parse the whole of it
            for _, line in self.forward(start, end):
                return line.seq
        return seq

    def offset_of(self, seq: int, end: int) -> int:
        """Offset of the first line with ``line.seq >= seq`` (``end`` if none)."""
        lo, hi = 0, end
        while hi - lo > _LINEAR:
            mid = (lo + hi) // 2
            s = self._line_start(mid)
            found = self._seq_at(s, end) if s < end else None
            if found is None or found >= seq:
                hi = mid
            else:
                lo = mid + 1
        for offset, line in self.forward(self._line_start(lo), end):
            if line.seq >= seq:
                return offset
        return end

    def entries(self, lo_seq: int, hi_seq: int, *, from_end: bool = False) -> list[Line]:
        """Entries with ``lo_seq <= seq < hi_seq`` in seq order, within the valid part, checksums verified."""
        end = self.tail().end
        found: list[Line] = []
        if from_end:
            after = hi_seq
            for start, raw, _ in self.backward(end):
                line = parse_line(raw)
                if line is None:
                    seq = line_seq(raw)
                    raise self._damaged_line(start, after - 1 if seq is None else seq)
                after = line.seq
                if line.seq < lo_seq:
                    break
                if line.seq < hi_seq:
                    found.append(line.verify(self.log))
            found.reverse()
            return found
        for _, line in self.forward(self.offset_of(lo_seq, end), end):
            if line.seq >= hi_seq:
                break
            found.append(line.verify(self.log))
        return found

    def json_values(self, lo_seq: int, hi_seq: int) -> list[tuple[bytes, str]] | None:
        """``(data, codec)`` of the entries in ``[lo_seq, hi_seq)`` read in one piece and checked in
        bulk (:func:`.format.json_run`); None when that fast path does not apply or finds damage."""
        end = self.tail().end
        if lo_seq >= hi_seq:
            return []
        start = self.offset_of(lo_seq, end)
        return json_run(self.log, self._pread(end - start, start), lo_seq, hi_seq)

    def read_bytes(self, start: int, stop: int) -> bytes:
        return self._pread(stop - start, start)


def rebuilt_header(log: str, lines: LogLines) -> LogHeader | None:
    """A header for lines whose header file was lost: bounds and times from the lines themselves.

    Trims that had not been compacted yet are undone (those lines reappear) and
    the expiry is unknown (none): both keep data rather than lose it.
    """
    tail = lines.tail()
    if tail.last is None:
        return None
    for _, first in lines.forward(0, tail.end):
        return LogHeader(log, first.seq, tail.last.seq, first.created_at, tail.last.created_at, None)
    return None
