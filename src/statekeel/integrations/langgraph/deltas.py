"""Channel values that grow with change, not with history.

A stock ``add_messages`` graph rewrites its whole message list at every step, so a
saver that stores each new channel version in full stores O(turns²) bytes. Here a
list value that only grew since the version this process last wrote or read is
stored as the new items plus a reference to that version (its *base*); anything
else — a replaced or removed message, another type — is stored in full. A chain of
deltas ends in a full value (its *root*); a new full snapshot is written once the
chain's bytes exceed ``chain_share`` times the root's (and at least ``min_bytes``) or the
chain reaches ``max_chain`` links, so storage stays within a small factor of the payload and a read
decodes at most about twice the value's bytes. Restoring a version concatenates the
root's items and every delta's items, which is exactly the list LangGraph stored.

Bounded reads (*segments*, two levels): every ``segment`` links the delta record holds the
items since the previous level-1 segment instead of one link's, and builds on it; every
``segment²`` links, the items since the previous level-2 segment. A version is then rebuilt
from the root, the level-2 segments, fewer than ``segment`` level-1 segments and fewer than
``segment`` single links — with ``segment=8``, at most 27 records for an 800-link chain
(instead of 800) and at most 15 below 64 links — for each item stored about three times.
Every delta names the segment it builds up from (``"sv"``) and every segment its whole
path to the root (``"segs"``): hints, so a cold read fetches everything in three round
trips (the ``base`` links alone are authoritative; records written before segments
existed are read by following them). The level logic is :mod:`._segments`.

:func:`plan_value` decides what to write (pure); :class:`ValueReader` reads versions
back, fetching whole chains in few round trips.
"""

from __future__ import annotations

import operator
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ...core import Core
from ...errors import CorruptionError
from ...protocol import Record, keys
from ._records import ThreadKeys, Typed, pack_raw, read_doc, unpack
from ._segments import Marks
from ._steps import GetMany, Scan, Steps

__all__ = ["ChainState", "ValueCache", "Planned", "plan_value", "ValueReader", "MISSING"]

MISSING: Any = object()
"""A channel version with no stored value (LangGraph's "empty" channel)."""


@dataclass(frozen=True, slots=True)
class ChainState:
    """What the saver remembers of the last value it wrote or read for one channel."""

    version: str
    """The stored version this value is."""
    items: list[Any]
    """The list itself (a shallow copy: the items are LangGraph's objects)."""
    root: str
    """The version of the full value the chain starts from."""
    root_bytes: int
    """Serialized size of the root."""
    chain_bytes: int
    """Serialized size of the deltas since the root."""
    links: int
    """Deltas since the root."""
    marks: Marks | None = None
    """Where the next segments build on (None: unknown, for records written before segments)."""


class ValueCache:
    """The last :class:`ChainState` per (thread, namespace, channel); thread-safe, bounded LRU."""

    def __init__(self, size: int = 1024) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._states: OrderedDict[tuple[str, str, str], ChainState] = OrderedDict()

    def get(self, thread: str, ns: str, channel: str) -> ChainState | None:
        with self._lock:
            state = self._states.get((thread, ns, channel))
            if state is not None:
                self._states.move_to_end((thread, ns, channel))
            return state

    def set(self, thread: str, ns: str, channel: str, state: ChainState | None) -> None:
        with self._lock:
            if state is None:
                self._states.pop((thread, ns, channel), None)
                return
            self._states[(thread, ns, channel)] = state
            self._states.move_to_end((thread, ns, channel))
            while len(self._states) > self._size:
                self._states.popitem(last=False)

    def forget_thread(self, thread: str) -> None:
        """Drop a thread's states (its records were deleted or pruned)."""
        with self._lock:
            for key in [k for k in self._states if k[0] == thread]:
                del self._states[key]


@dataclass(frozen=True, slots=True)
class Planned:
    """The record to store for one channel version, and what to remember after it is stored."""

    doc: dict[str, Any]
    state: ChainState | None
    fresh: Any = MISSING
    """What this record newly stores: the value, or for a delta the items it appends (the secret
    guard screens these, not the history again)."""
    fresh_typed: Typed = ("null", b"")
    """``fresh`` as the serializer wrote it (the guard's fast scan reads these bytes)."""
    offset: int | None = None
    """For a delta, the index of the first appended item in the whole list; None for a full value."""


def _grew_from(old: list[Any], new: list[Any]) -> bool:
    """``new`` is ``old`` plus items at the end (same objects, or equal objects of the same type).

    The identity test runs first, in C (``map(operator.is_)``): within a process LangGraph's
    reducers hand back the very objects of the previous list, so a turn costs a few µs
    instead of a Python-level comparison per message."""
    if len(new) < len(old):
        return False
    if all(map(operator.is_, old, new)):
        return True
    return all(a is b or (type(a) is type(b) and a == b) for a, b in zip(old, new))


def plan_value(
    version: str,
    value: Any,
    previous: ChainState | None,
    dumps: Callable[[Any], Typed],
    *,
    min_bytes: int,
    max_chain: int,
    chain_share: float = 1.0,
    segment: int = 0,
) -> Planned:
    """The record for ``value`` at ``version``: a delta on ``previous`` when it only grew, else full
    (every ``segment`` links a delta on the previous segment; 0: never)."""
    if value is MISSING:
        return Planned({"e": 1}, None)
    grown_by: tuple[list[Any], Typed, int] | None = None  # a list that only grew: its new items, serialized, where
    if type(value) is list and previous is not None and _grew_from(previous.items, value):
        links = previous.links + 1
        marks = previous.marks or Marks.start(previous.version, len(previous.items), previous.links)
        level = marks.level(links, segment)
        new_items = value[len(previous.items) :]
        fresh = dumps(new_items)
        typed = dumps(value[marks.at(level).length :]) if level else fresh
        chain_bytes = previous.chain_bytes + len(fresh[1])
        grown_by = (new_items, fresh, len(previous.items))
        if chain_bytes <= max(previous.root_bytes * chain_share, min_bytes) and previous.links < max_chain:
            doc = {**pack_raw(typed), "root": previous.root, "n": len(value), "k": links, "cb": chain_bytes,
                   "rb": previous.root_bytes}  # fmt: skip
            if level:
                grown = marks.after(level, version, len(value), links)
                doc.update(base=marks.at(level).path[-1], segs=list(marks.at(level).path), **grown.big_hints())
            else:
                grown = marks
                doc.update(base=previous.version, **marks.small_hints())
            state = ChainState(version, list(value), previous.root, previous.root_bytes, chain_bytes, links, grown)
            return Planned(doc, state, new_items, fresh, len(previous.items))
    typed = dumps(value)
    root = ChainState(version, list(value), version, len(typed[1]), 0, 0, Marks.start(version, len(value), 0)) if type(value) is list else None
    if grown_by is not None:  # a new root of a grown list newly stores only the appended items' content
        return Planned(pack_raw(typed), root, *grown_by)
    return Planned(pack_raw(typed), root, value, typed)


class ValueReader:
    """Reads channel versions of one thread namespace, following delta chains.

    Versions are fetched with one ``get_many``; a chain longer than a few links is
    fetched with one range scan from its root (versions sort by their number), and
    whatever the scan missed with further ``get_many`` rounds.
    """

    def __init__(self, core: Core, thread: str, ns: str, loads: Callable[[Typed], Any]) -> None:
        self._core, self._loads = core, loads
        self._keys = ThreadKeys(thread, ns)
        self._key_of: dict[tuple[str, str], str] = {}
        self.docs: dict[str, dict[str, Any]] = {}
        self._items: dict[str, list[Any]] = {}
        self._scanned: set[str] = set()
        self._sizes: dict[str, int] = {}

    def key(self, channel: str, version: Any) -> str:
        """The record key of ``channel`` at ``version`` (built once: a read asks several times)."""
        pair = (channel, str(version))
        key = self._key_of.get(pair)
        if key is None:
            key = self._key_of[pair] = self._keys.blob(*pair)
        return key

    def load(self, wanted: Iterable[tuple[str, Any]]) -> Steps[None]:
        """Fetch the records of ``(channel, version)`` pairs and every record their chains need
        (sans-I/O steps: :mod:`._steps`)."""
        yield from self._fetch([self.key(ch, v) for ch, v in wanted])
        for _ in range(100_000):  # each round resolves at least one more link of every open chain
            need = self._open_bases()
            if not need:
                return
            hinted = yield from self._hinted(need)
            for key in [k for k in need if self.docs[need[k]].get("k", 0) > 3 and need[k] not in hinted]:
                yield from self._scan_chain(need[key], key)
            yield from self._fetch([k for k in need if k not in self.docs], required=True)

    def value(self, channel: str, version: Any) -> Any:
        """The value stored at ``version`` (a fresh list for a delta chain), or :data:`MISSING`."""
        key = self.key(channel, version)
        doc = self.docs.get(key)
        if doc is None or doc.get("e"):
            return MISSING
        if "base" not in doc:
            typed = unpack(doc, key)
            self._sizes[key] = len(typed[1])  # for state(): a full value is not decompressed twice
            return self._loads(typed)
        chunks: list[list[Any]] = []
        while "base" in doc:
            chunks.append(self._chunk(key, doc))
            key = self._sibling(key, str(doc["base"]))
            doc = self.docs[key]
        out = list(self._chunk(key, doc))
        for chunk in reversed(chunks):
            out.extend(chunk)
        return out

    def loaded(self, channel: str, version: Any) -> bool:
        """Whether this reader fetched the record of ``channel`` at ``version``."""
        return self.key(channel, version) in self.docs

    def state(self, channel: str, version: Any, value: Any) -> ChainState | None:
        """What to remember after reading ``value`` at ``version`` (so the next write can be a delta)."""
        doc = self.docs.get(self.key(channel, version))
        if doc is None or doc.get("e") or type(value) is not list:
            return None
        if "base" not in doc:
            size = self._sizes.get(self.key(channel, version))
            size = len(unpack(doc)[1]) if size is None else size
            return ChainState(str(version), list(value), str(version), size, 0, 0,
                              Marks.start(str(version), len(value), 0))  # fmt: skip
        head = (str(doc["root"]), int(doc["rb"]), int(doc["cb"]), int(doc["k"]))
        if "sv" in doc:  # a single link: the marks are its segment's
            mark = self.docs.get(self._sibling(self.key(channel, version), str(doc["sv"])))
            return ChainState(str(version), list(value), *head, Marks.of_link(doc, mark))
        return ChainState(str(version), list(value), *head, Marks.of_segment(str(version), doc))

    def _chunk(self, key: str, doc: dict[str, Any]) -> list[Any]:
        if key not in self._items:
            items = self._loads(unpack(doc, key))
            if not isinstance(items, list):
                raise CorruptionError(f"the LangGraph channel value at {key!r} is not a list", key, None)
            self._items[key] = items
        return self._items[key]

    def _open_bases(self) -> dict[str, str]:
        """Base key -> the key of a loaded delta that needs it, for bases not loaded yet."""
        need: dict[str, str] = {}
        for key, doc in self.docs.items():
            if "base" in doc:
                base = self._sibling(key, str(doc["base"]))
                if base not in self.docs:
                    need[base] = key
        return need

    def _sibling(self, key: str, version: str) -> str:
        """The key of another version of the same channel."""
        return key[: key.rindex("/") + 1] + keys.escape(version)

    def _hinted(self, need: dict[str, str]) -> Steps[set[str]]:
        """Prefetch what the segment hints name: the segments below a segment (one
        ``get_many``), and a delta's single links back to its segment (one short range
        scan). Returns the deltas whose chains the hints cover."""
        covered: set[str] = set()
        wanted: list[str] = []
        for base, delta in need.items():
            doc = self.docs[delta]
            if "segs" in doc:
                wanted += [self._sibling(delta, str(v)) for v in doc["segs"]]
                covered.add(delta)
            elif "sv" in doc:
                mark = self._sibling(delta, str(doc["sv"]))
                if mark not in self.docs and mark not in self._scanned:
                    self._scanned.add(mark)
                    yield from self._scan_between(mark, delta, int(doc["k"]) - int(doc["sk"]))
                covered.add(delta)
        yield from self._fetch(wanted)
        return covered

    def _scan_between(self, first: str, last: str, count: int) -> Steps[None]:
        """The records of one channel from ``first`` to ``last`` (keys sort by version number)."""
        if first > last:
            return
        prefix = last[: last.rindex("/") + 1]
        recs = yield Scan(prefix, first[:-1], count + 8)
        self._take([r for r in recs if first <= r.key <= last])

    def _scan_chain(self, delta_key: str, base_key: str) -> Steps[None]:
        """Fetch the records between a chain's root and ``delta_key`` in one range scan."""
        root = self._sibling(delta_key, str(self.docs[delta_key]["root"]))
        if root > delta_key or root in self._scanned:
            return  # versions that do not sort by number, or scanned already: get_many rounds do the rest
        self._scanned.add(root)
        prefix = delta_key[: delta_key.rindex("/") + 1]
        after: str | None = root[:-1]
        while after is not None and after < delta_key:
            recs = yield Scan(prefix, after, 500)
            self._take([r for r in recs if r.key <= delta_key])
            after = recs[-1].key if len(recs) == 500 else None

    def _fetch(self, wanted: Sequence[str], required: bool = False) -> Steps[None]:
        todo = [k for k in dict.fromkeys(wanted) if k not in self.docs]
        if not todo:
            return
        recs = yield GetMany(todo)
        for key, rec in zip(todo, recs):
            if rec is None and required:
                raise CorruptionError(
                    f"the LangGraph channel value {key!r} that a newer version builds on is missing; "
                    "run `statekeel doctor` and restore from a backup",
                    key,
                    None,
                )
        self._take([r for r in recs if r is not None])

    def _take(self, recs: Iterable[Record]) -> None:
        for rec in recs:
            if rec.key not in self.docs:
                self.docs[rec.key] = read_doc(self._core.codec, rec.data, rec.codec, rec.key)
