"""Where a delta chain's segments build on (pure: no I/O); see :mod:`.deltas` for why.

Two levels: a level-1 segment every ``segment`` links holds the items since the previous
level-1 mark, a level-2 segment every ``segment²`` links the items since the previous
level-2 mark (the root is both marks at the start). A mark's *path* is the versions a
read follows from the root to it, which segments store as a prefetch hint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Mark", "Marks"]


@dataclass(frozen=True, slots=True)
class Mark:
    """A version segments of one level build on."""

    path: tuple[str, ...]
    """The versions from the root to this mark (this mark last): what rebuilding it reads."""
    length: int
    """Items in the list at the mark."""
    links: int
    """Links since the root at the mark."""


@dataclass(frozen=True, slots=True)
class Marks:
    """The current level-1 (``small``) and level-2 (``big``) marks of one chain."""

    small: Mark
    big: Mark

    @classmethod
    def start(cls, version: str, length: int, links: int) -> Marks:
        """Both marks at ``version`` (a root, or a record written before segments existed)."""
        mark = Mark((version,), length, links)
        return cls(mark, mark)

    def level(self, links: int, segment: int) -> int:
        """The level of the record at link ``links``: 2, 1, or 0 (a single link)."""
        if segment and links - self.big.links >= segment * segment:
            return 2
        if segment and links - self.small.links >= segment:
            return 1
        return 0

    def at(self, level: int) -> Mark:
        """The mark a record of ``level`` (1 or 2) builds on."""
        return self.big if level == 2 else self.small

    def after(self, level: int, version: str, length: int, links: int) -> Marks:
        """The marks once a segment of ``level`` is stored at ``version``."""
        mark = Mark((*self.at(level).path, version), length, links)
        return Marks(mark, mark if level == 2 else self.big)

    def small_hints(self) -> dict[str, Any]:
        """What a single link stores: the segment it builds up from (a range scan reaches it)."""
        return {"sv": self.small.path[-1], "sn": self.small.length, "sk": self.small.links}

    def big_hints(self) -> dict[str, Any]:
        """What a segment stores besides its own path: the level-2 mark after it."""
        return {"bigs": list(self.big.path), "bn": self.big.length, "bk": self.big.links}

    @classmethod
    def of_segment(cls, version: str, doc: dict[str, Any]) -> Marks | None:
        """The marks after the segment ``doc`` stored at ``version`` (None: not a segment)."""
        if "segs" not in doc:
            return None
        small = Mark((*map(str, doc["segs"]), version), int(doc["n"]), int(doc["k"]))
        if "bigs" not in doc:
            return cls(small, small)
        return cls(small, Mark(tuple(map(str, doc["bigs"])), int(doc["bn"]), int(doc["bk"])))

    @classmethod
    def of_link(cls, doc: dict[str, Any], mark_doc: dict[str, Any] | None) -> Marks | None:
        """The marks of a single link ``doc``, from the record of the segment it names (None: not read)."""
        if mark_doc is None:
            return None
        if "base" not in mark_doc:  # the root
            return cls.start(str(doc["sv"]), int(doc["sn"]), int(doc["sk"]))
        return cls.of_segment(str(doc["sv"]), mark_doc)
