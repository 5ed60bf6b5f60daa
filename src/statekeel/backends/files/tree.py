"""Where each key lives under ``data/``, and walking keys in key order.

Key ``a/b/c`` is stored at ``data/<a>/<b>/<c>.json`` (a record) and
``data/<a>/<b>/<c>.jsonl`` + ``<c>.log.json`` (a log), where ``<x>`` is the
stem of component ``x`` (see :mod:`.names`). Keys below ``a/b/c/`` live
in the folder ``data/<a>/<b>/<c>/``, so a record, a log and a folder may share
a stem. Any file whose name is not ``<canonical stem>.<known suffix>`` — temp
files start with a dot — is not part of the store and is ignored.

Walking a folder in the order (component for files, component + ``/`` for
folders) yields keys in exact string order, because no component contains
``/``; subtrees that lie entirely before ``after`` are never opened.
"""

from __future__ import annotations

import bisect
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from . import names

__all__ = ["KeyPath", "Tree", "RECORD", "LOG", "HEADER", "SIDECAR", "RACY_NS"]

RECORD = ".json"
LOG = ".jsonl"
HEADER = ".log.json"
SIDECAR = ".name"
RACY_NS = 2_000_000_000
"""A folder listing is cached only if the folder was last changed this long before."""
CACHED_FOLDERS = 64
_PATHS = 4096
"""Key paths memoised per store handle (then the memo starts over)."""

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


@dataclass(frozen=True, slots=True)
class _Item:
    """One entry of a folder in walk order: a component's files, or its subfolder."""

    order: str
    """The component, or the component + ``/`` for its folder."""
    stem: str
    kinds: frozenset[str]


@dataclass
class _Listing:
    component: str
    stem: str
    kinds: set[str] = field(default_factory=set)


class Tree:
    """Maps keys to paths under ``<root>/data`` and lists them in key order."""

    def __init__(self, root: str) -> None:
        self.root = root
        self._cache: dict[str, tuple[tuple[int, int, int], list[str], list[_Item]]] = {}
        self._paths: dict[str, KeyPath] = {}

    def path(self, key: str) -> KeyPath:
        """Where ``key`` lives (memoised: a chat turn maps the same few keys every time)."""
        kp = self._paths.get(key)
        if kp is None:
            if len(self._paths) >= _PATHS:
                self._paths.clear()
            kp = self._paths[key] = self._path(key)
        return kp

    def _path(self, key: str) -> KeyPath:
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

    def walk(
        self, prefix: str, kind: str | tuple[str, ...], after: str | None = None
    ) -> Iterator[tuple[str, str, str]]:
        """(key, folder, stem) of every key with a ``kind`` file (RECORD, LOG, HEADER, or any of
        several) whose key starts with ``prefix`` and is greater than ``after``, in key order."""
        *head, tail = prefix.split("/")
        folder = os.path.join("data", *(names.encode(p) for p in head))
        base = "".join(p + "/" for p in head)
        kinds = frozenset((kind,) if isinstance(kind, str) else kind)
        yield from self._walk(folder, base, tail, kinds, after)

    def _sorted(self, folder: str) -> tuple[list[str], list[_Item]]:
        """The folder's items in walk order, cached while the folder is unchanged.

        A cached listing is used only while the folder's (inode, mtime, ctime) is
        what it was, and is kept only if they were already :data:`RACY_NS` old when
        the listing began — so a change made in the same clock tick as the last
        one cannot hide (git's "racy index" rule). Busy folders are simply re-listed.
        """
        began = time.time_ns()
        try:
            st = os.stat(self.abs(folder))
        except (FileNotFoundError, NotADirectoryError):
            return [], []
        signature = (st.st_ino, st.st_mtime_ns, st.st_ctime_ns)  # ctime: utime() cannot set it back
        hit = self._cache.get(folder)
        if hit is not None and hit[0] == signature:
            return hit[1], hit[2]
        items: list[_Item] = []
        for it in self._list(folder):
            files = frozenset(it.kinds - {"dir"})
            if files:
                items.append(_Item(it.component, it.stem, files))
            if "dir" in it.kinds:
                items.append(_Item(it.component + "/", it.stem, frozenset()))
        items.sort(key=lambda i: i.order)
        orders = [i.order for i in items]
        if began - max(st.st_mtime_ns, st.st_ctime_ns) > RACY_NS:
            self._cache.pop(folder, None)
            self._cache[folder] = (signature, orders, items)
            while len(self._cache) > CACHED_FOLDERS:
                del self._cache[next(iter(self._cache))]
        return orders, items

    def _walk(
        self, folder: str, base: str, tail: str, kinds: frozenset[str], after: str | None
    ) -> Iterator[tuple[str, str, str]]:
        orders, items = self._sorted(folder)
        start = bisect.bisect_left(orders, tail)
        if after is not None and after.startswith(base):
            rel = after[len(base) :]
            skip = bisect.bisect_right(orders, rel)
            if skip > 0 and orders[skip - 1].endswith("/") and rel.startswith(orders[skip - 1]):
                skip -= 1  # ``after`` lies inside that folder: walk it from there
            start = max(start, skip)
        elif after is not None and after > base:
            return  # the whole folder lies before ``after``
        for i in range(start, len(items)):  # not items[start:]: a copy of a 100,000-entry folder per page
            item = items[i]
            if not item.order.startswith(tail):
                break
            key = base + item.order
            if item.order.endswith("/"):
                if after is not None and after > key and not after.startswith(key):
                    continue
                yield from self._walk(os.path.join(folder, item.stem), key, "", kinds, after)
            elif kinds & item.kinds and (after is None or key > after):
                yield key, folder, item.stem

    def folders_bottom_up(self) -> Iterator[str]:
        """Every folder under ``data/``, deepest first (for pruning empty ones)."""
        for dirpath, _, _ in os.walk(self.abs("data"), topdown=False):
            yield dirpath
