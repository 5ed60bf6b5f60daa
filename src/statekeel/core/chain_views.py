"""Which head records a chained read needs, and the heads it checks against (see :mod:`statekeel.core.chained`).

A partition's head lists its records itself, or — past :data:`~statekeel.core.chain_plan.SPILL` records —
lists buckets that do (:class:`~statekeel.core.chain.Head`). A read of some records needs their
partitions' roots and the buckets their names fall in; which buckets is known only once the root is read.
:class:`HeadRead` asks for the roots and the buckets the handle last saw (one read, with the records),
then for any bucket the roots name that it did not guess (a second read only when a root was unknown or has
doubled its buckets since). It does no I/O itself, so the sync and asyncio twins share it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from ..protocol import Record, keys
from . import layout
from .chain import Head, bucket_index
from .chain_reads import head_parts

__all__ = ["HeadRead", "Viewer", "read_heads"]


class Viewer(Protocol):
    """What a :class:`HeadRead` uses of the chained backend it reads for."""

    _prefix: str
    _heads: dict[str, tuple[int | None, Head, float | None]]

    def _plain(self, key: str) -> bool: ...
    def head_of(self, rec: Record | None, partition: str) -> Head: ...
    def bucket_of(self, rec: Record | None, partition: str, index: int, root: Head) -> Head: ...


class HeadRead:
    """The heads of the partitions of ``names`` (and of ``log``): :meth:`first` names the head records to
    read with the data, :meth:`take` checks them and names any still needed, :meth:`views` gives each
    partition's head as the checks use it — its logs and the records of the buckets read (``every``:
    all of them, for a scan, which must find every record a page lost)."""

    def __init__(self, c: Viewer, names: Sequence[str], log: str | None = None, every: bool = False) -> None:
        self.c = c
        self.every = every
        self.names = names
        self.parts = head_parts(c._plain, names, log)
        self.read: dict[str, Record | None] = {}
        """partition -> its root head record, as read (a log's check starts from it)."""
        self.roots: dict[str, Head] = {}
        self.buckets: dict[str, dict[int, Head]] = {}
        self._guessed: list[tuple[str, int]] = []
        self._more: list[tuple[str, int]] = []

    def _wanted(self, part: str, root: Head) -> Iterable[int]:
        """The buckets of ``part`` to read with ``root`` (none for a record the root lists itself)."""
        if not root.bits:
            return ()
        if self.every:
            return root.buckets
        own, c, bits = root.records, self.c, root.bits
        wheres = (c._prefix + n for n in self.names if not c._plain(n) and keys.partition(n) == part)
        return {bucket_index(w, bits) for w in wheres if w not in own}

    def first(self) -> list[str]:
        """The head records to read first: the roots, then the buckets the roots last seen by this handle name."""
        out = [layout.chain_head_key(p) for p in self.parts]
        for part in self.parts:
            seen = self.c._heads.get(part)
            if seen is not None and seen[1].bits:
                for i in self._wanted(part, seen[1]):
                    self._guessed.append((part, i))
                    out.append(layout.chain_bucket_key(part, i))
        return out

    def take(self, found: Sequence[Record | None]) -> list[str]:
        """Checks what :meth:`first` named, as read; the bucket records still to read (none, mostly)."""
        n, head_of, roots = len(self.parts), self.c.head_of, self.roots
        for part, rec in zip(self.parts, found):
            self.read[part] = rec
            roots[part] = head_of(rec, part)
        guessed = dict(zip(self._guessed, found[n:])) if self._guessed else {}
        for part, root in roots.items():
            if not root.bits:
                continue
            for i in self._wanted(part, root):
                if (part, i) in guessed:
                    self._bucket(part, i, guessed[(part, i)])
                else:
                    self._more.append((part, i))
        return [layout.chain_bucket_key(p, i) for p, i in self._more]

    def take_more(self, found: Sequence[Record | None]) -> None:
        """Checks the bucket records :meth:`take` named, as read."""
        for (part, i), rec in zip(self._more, found):
            self._bucket(part, i, rec)

    def _bucket(self, part: str, i: int, rec: Record | None) -> None:
        self.buckets.setdefault(part, {})[i] = self.c.bucket_of(rec, part, i, self.roots[part])

    def views(self) -> dict[str, Head]:
        """Each partition's head with the records of the buckets read listed as its own (its own first)."""
        out: dict[str, Head] = {}
        for part, root in self.roots.items():
            if not root.bits:
                out[part] = root
                continue
            read = self.buckets.get(part)
            if not read:
                out[part] = root  # every record read is listed in the root itself
                continue
            out[part] = Head(root.logs, root.records_with(read.values()))
        return out


def read_heads(
    c: Viewer, get_many: Callable[[list[str]], list[Record | None]], names: Sequence[str], log: str | None = None,
    every: bool = False, extra: Sequence[str] = (),
) -> tuple[list[Record | None], HeadRead]:
    """``extra`` read with the heads of ``names`` (and ``log``) by ``get_many`` (the sync twin's), and the heads."""
    r = HeadRead(c, names, log, every)
    found = get_many([*extra, *r.first()])
    more = r.take(found[len(extra):])
    if more:
        r.take_more(get_many(more))
    return found[: len(extra)], r
