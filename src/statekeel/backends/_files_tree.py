"""Where each key lives under ``data/``, and walking keys in key order.

Key ``a/b/c`` is stored at ``data/<a>/<b>/<c>.json`` (a record) and
``data/<a>/<b>/<c>.jsonl`` + ``<c>.log.json`` (a log), where ``<x>`` is the
stem of component ``x`` (see :mod:`._files_names`). Keys below ``a/b/c/`` live
in the folder ``data/<a>/<b>/<c>/``, so a record, a log and a folder may share
a stem. Any file whose name is not ``<canonical stem>.<known suffix>`` — temp
files start with a dot — is not part of the store and is ignored.

Walking a folder in the order (component for files, component + ``/`` for
folders) yields keys in exact string order, because no component contains
``/``; subtrees that lie entirely before ``after`` are never opened.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

from . import _files_names as names

__all__ = ["KeyPath", "Tree", "RECORD", "LOG", "HEADER", "SIDECAR"]

RECORD = ".json"
LOG = ".jsonl"
HEADER = ".log.json"
SIDECAR = ".name"
_SUFFIXES = {"json": RECORD, "jsonl": LOG, "log.json": HEADER, "name": SIDECAR}


@dataclass(frozen=True, slots=True)
class KeyPath:
    """The files of one key, relative to the store root."""

    key: str
    folder: str
    stem: str
    hashed: list[tuple[str, str, str]]
    """(folder, stem, component) of every ``~~`` name on the way: each needs its sidecar."""

    def file(self, suffix: str) -> str:
        return os.path.join(self.folder, self.stem + suffix)


@dataclass
class _Listing:
    component: str
    stem: str
    kinds: set[str] = field(default_factory=set)


class Tree:
    """Maps keys to paths under ``<root>/data`` and lists them in key order."""

    def __init__(self, root: str) -> None:
        self.root = root

    def path(self, key: str) -> KeyPath:
        parts = key.split("/")
        folder, stem, hashed = "data", "", []
        for i, part in enumerate(parts):
            stem = names.encode(part)
            if names.is_hashed(stem):
                hashed.append((folder, stem, part))
            if i < len(parts) - 1:
                folder = os.path.join(folder, stem)
        return KeyPath(key, folder, stem, hashed)

    def abs(self, rel: str) -> str:
        return os.path.join(self.root, rel)

    # -- listing ----------------------------------------------------------------
    def _list(self, folder: str) -> list[_Listing]:
        found: dict[str, _Listing] = {}
        try:
            names = os.listdir(self.abs(folder))
        except (FileNotFoundError, NotADirectoryError):
            return []
        for name in names:
            if name[0] == ".":
                continue
            stem, dot, rest = name.partition(".")
            kind = _SUFFIXES.get(rest) if dot else "dir"  # files always have a suffix
            if kind is None or kind == SIDECAR:
                continue
            listing = found.get(stem)
            if listing is None:
                component = self._component(folder, stem)
                if component is None:
                    continue
                listing = found[stem] = _Listing(component, stem)
            listing.kinds.add(kind)
        return list(found.values())

    def _component(self, folder: str, stem: str) -> str | None:
        if not names.is_hashed(stem):
            return names.decode(stem)
        try:
            with open(self.abs(os.path.join(folder, stem + SIDECAR)), encoding="utf-8", errors="surrogatepass") as f:
                component = f.read()
        except OSError:
            return None
        return component if names.encode(component) == stem else None

    def walk(self, prefix: str, kind: str, after: str | None = None) -> Iterator[tuple[str, str, str]]:
        """(key, folder, stem) of every ``kind`` file (RECORD or LOG) whose key starts
        with ``prefix`` and is greater than ``after``, in key order."""
        *head, tail = prefix.split("/")
        folder = os.path.join("data", *(names.encode(p) for p in head))
        base = "".join(p + "/" for p in head)
        yield from self._walk(folder, base, tail, kind, after)

    def _walk(self, folder: str, base: str, tail: str, kind: str, after: str | None) -> Iterator[tuple[str, str, str]]:
        items: list[tuple[str, bool, _Listing]] = []
        for it in self._list(folder):
            if not it.component.startswith(tail):
                continue
            if kind in it.kinds:
                items.append((it.component, False, it))
            if "dir" in it.kinds:
                items.append((it.component + "/", True, it))
        items.sort(key=lambda t: t[0])
        for order, is_dir, it in items:
            key = base + order
            if is_dir:
                if after is not None and after > key and not after.startswith(key):
                    continue
                yield from self._walk(os.path.join(folder, it.stem), key, "", kind, after)
            elif after is None or key > after:
                yield key, folder, it.stem

    def folders_bottom_up(self) -> Iterator[str]:
        """Every folder under ``data/``, deepest first (for pruning empty ones)."""
        for dirpath, _, _ in os.walk(self.abs("data"), topdown=False):
            yield dirpath
