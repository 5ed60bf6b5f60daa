"""Reading a log's JSON Lines file without reading all of it.

Lines are in ``seq`` order, so any position is found by binary search over
byte offsets (O(log size) small reads) and the tail by reading backwards:
``read(limit=20, reverse=True)`` touches the last few kilobytes only.

The *valid end* of the file is the end of the last complete append: a final
line without its newline (a crash mid-write), a line that does not parse, and
the lines of an append whose last line never arrived (``more`` > 0) all lie
beyond it. Readers ignore what lies beyond; writers cut it off before appending;
:meth:`FilesBackend.repair` cuts it off on demand.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

from ...errors import StoreError
from .format import Line, line_seq, parse_line

__all__ = ["LogLines", "Tail"]

_CHUNK = 64 * 1024
_PROBE = 512
_LINEAR = 16 * 1024


@dataclass(frozen=True, slots=True)
class Tail:
    """Where the valid part of a log file ends, and its last entry."""

    end: int
    size: int
    last: Line | None


class LogLines:
    """A read-only view of one ``.jsonl`` file (missing file = empty log)."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self._fd: int | None = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            self._fd = None
        self.size = os.fstat(self._fd).st_size if self._fd is not None else 0
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
        if self._fd is None or n <= 0:
            return b""
        return os.pread(self._fd, n, offset)

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
            self._tail = Tail(0, self.size, None)
            for start, raw, terminated in self.backward(self.size):
                line = parse_line(raw) if terminated else None
                if line is not None and line.more == 0:
                    self._tail = Tail(start + len(raw) + 1, self.size, line)
                    break
        return self._tail

    # -- forwards -------------------------------------------------------------
    def forward(self, start: int, stop: int) -> Iterator[tuple[int, Line]]:
        """(offset, entry) of each line starting in ``[start, stop)``; ``start`` is a line start."""
        pos, buf, i = start, b"", 0  # buf[i:] holds the bytes from pos on
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
                raise StoreError(
                    f"{self.path}: the line at byte {pos} is not a valid entry; run "
                    "`statekeel doctor --repair` only if it is the last line, else restore a backup"
                )
            yield pos, line
            pos, i = pos + nl + 1 - i, nl + 1

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
        """Entries with ``lo_seq <= seq < hi_seq`` in seq order, within the valid part."""
        end = self.tail().end
        if from_end:
            out: list[Line] = []
            for _, raw, _ in self.backward(end):
                line = parse_line(raw)
                if line is None:
                    raise StoreError(f"{self.path}: a line near the end is not a valid entry; restore a backup")
                if line.seq < lo_seq:
                    break
                if line.seq < hi_seq:
                    out.append(line)
            out.reverse()
            return out
        found = []
        for _, line in self.forward(self.offset_of(lo_seq, end), end):
            if line.seq >= hi_seq:
                break
            found.append(line)
        return found

    def read_bytes(self, start: int, stop: int) -> bytes:
        return self._pread(stop - start, start)
