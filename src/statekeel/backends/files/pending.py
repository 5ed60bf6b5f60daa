"""Reading the store while a committed batch cannot be finished yet.

A writer that crashes after the journal's commit point leaves a batch that the
next user finishes (:meth:`.journal.Journal.recover`). Finishing it writes files, so
on a full disk (``ENOSPC``/``EDQUOT``) or in a read-only folder it cannot be
done — yet reads must still work. :class:`View` then answers from the files on
disk *plus* the journal's effect, computed in memory and never written: every
journal action is absolute (whole-file contents, an append at a fixed offset, a
delete), so what the batch leaves is known exactly whether none, some or all of
it reached the disk. Readers see the whole batch — never part of it — and the
first writer with free space makes the same state durable.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from . import names
from .io import Action
from .logs import LogLines
from .tree import HEADER, LOG, RECORD, SIDECAR, Tree

__all__ = ["Pending", "View"]

Splice = tuple[int, bytes]
"""A file as the batch leaves it: its first ``keep`` bytes on disk, then ``extra``."""

_KINDS = {"json": RECORD, "jsonl": LOG, "log.json": HEADER, "name": SIDECAR}


class Pending:
    """What each file a journalled batch touches will hold (None: deleted)."""

    def __init__(self, actions: list[Action]) -> None:
        self.files: dict[str, Splice | None] = {}
        for a in actions:
            text = a.text.encode("utf-8")
            if a.kind == "write":
                self.files[a.path] = (0, text)
            elif a.kind == "delete":
                self.files[a.path] = None
            else:  # an append at a fixed offset of what the file held before
                keep, extra = self.files.get(a.path, (a.offset, b"")) or (0, b"")
                gap = a.offset - keep
                self.files[a.path] = (a.offset, text) if gap <= 0 else (keep, extra.ljust(gap, b"\0")[:gap] + text)


class View:
    """Reads files of the store, through a :class:`Pending` batch if there is one."""

    def __init__(self, tree: Tree, pending: Pending | None = None) -> None:
        self.tree = tree
        self.pending = pending

    def file(self, rel: str) -> bytes | None:
        """The bytes of a small file (a record, a header, a sidecar); None if it does not exist."""
        if self.pending is not None and rel in self.pending.files:
            splice = self.pending.files[rel]
            if splice is None:
                return None
            with self.lines(rel, "") as lines:
                return lines.read_bytes(0, lines.size)
        try:
            with open(self.tree.abs(rel), "rb") as f:
                return f.read()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def lines(self, rel: str, log: str) -> LogLines:
        if self.pending is None or rel not in self.pending.files:
            return LogLines(self.tree.abs(rel), log)
        return LogLines(self.tree.abs(rel), log, self.pending.files[rel] or (0, b""))  # None: deleted

    def exists(self, rel: str) -> bool:
        if self.pending is not None and rel in self.pending.files:
            return self.pending.files[rel] is not None
        return os.path.exists(self.tree.abs(rel))

    def walk(self, prefix: str, kinds: tuple[str, ...], after: str | None = None) -> Iterator[tuple[str, str, str]]:
        """Like :meth:`Tree.walk`, with the keys the batch creates or deletes (all at once: only
        in this rare state, so simplicity wins over laziness)."""
        if self.pending is None:
            yield from self.tree.walk(prefix, kinds, after)
            return
        found: dict[str, tuple[str, str, str]] = {}
        for key, folder, stem in self.tree.walk(prefix, kinds, after):
            found[key] = (key, folder, stem)
        for rel in self.pending.files:
            folder, name = os.path.split(rel)
            stem, _, rest = name.partition(".")
            made = self._key(folder, stem) if _KINDS.get(rest) in kinds and rel.startswith("data/") else None
            if made is not None and made.startswith(prefix) and (after is None or made > after):
                found[made] = (made, folder, stem)
        for key in sorted(found):
            _, folder, stem = found[key]
            if any(self.exists(os.path.join(folder, stem + kind)) for kind in kinds):
                yield found[key]

    def _key(self, folder: str, stem: str) -> str | None:
        """The key a path under ``data/`` stores (sidecars of hashed names read through the batch)."""
        parts = folder.split(os.sep)[1:] + [stem]
        out: list[str] = []
        for i, part in enumerate(parts):
            component: str | None = names.decode(part)
            if names.is_hashed(part):
                raw = self.file(os.path.join("data", *parts[:i], part + SIDECAR))
                component = None if raw is None else raw.decode("utf-8", "surrogatepass")
            if component is None or names.encode(component) != part:
                return None
            out.append(component)
        return "/".join(out)
