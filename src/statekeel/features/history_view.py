"""The visible history: what a checkpoint restore hid, skipped on read.

A restore hides (never deletes) the history appended after the checkpoint by
recording inclusive seq ranges in ``session/<id>/view``; reads skip them.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..core import Core
from ..protocol import Entry, Record

__all__ = ["merge_ranges", "segments", "visible_entries"]


def merge_ranges(ranges: Sequence[Sequence[int]]) -> list[list[int]]:
    """Sorted, disjoint, inclusive ``[lo, hi]`` ranges covering the same seqs."""
    out: list[list[int]] = []
    for lo, hi in sorted((int(a), int(b)) for a, b in ranges if a <= b):
        if out and lo <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return out


def segments(hidden: Sequence[Sequence[int]], start: int, stop: int | None) -> list[tuple[int, int | None]]:
    """The visible ``[lo, hi)`` seq ranges inside ``[start, stop)`` (``hi`` None: open)."""
    out: list[tuple[int, int | None]] = []
    lo = start
    for h_lo, h_hi in hidden:
        if stop is not None and h_lo >= stop:
            break
        if h_hi < lo:
            continue
        if h_lo > lo:
            out.append((lo, h_lo))
        lo = h_hi + 1
    if stop is None or lo < stop:
        out.append((lo, stop))
    return out


def visible_entries(
    core: Core, view: Record, log: str, start: int, stop: int | None, last: int | None
) -> list[Entry]:
    """History entries in ``[start, stop)`` outside the ranges the ``view`` record hides.

    ``last=N``: the newest N visible ones. One read per visible segment
    touched, each bounded by ``last``.
    """
    hidden = core.codec.decode(view.data, view.codec, view.key)["hidden"]
    visible = segments(hidden, max(start, 1), stop)
    if last is None:
        return [e for lo, hi in visible for e in core.backend.read(log, start=lo, stop=hi)]
    out: list[Entry] = []
    for lo, hi in reversed(visible):
        if len(out) >= last:
            break
        out = core.backend.read(log, start=lo, stop=hi, limit=last - len(out), reverse=True) + out
    return out
