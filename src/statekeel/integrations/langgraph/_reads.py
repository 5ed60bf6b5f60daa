"""Turning a page of checkpoint records into LangGraph's ``CheckpointTuple`` s in few round trips.

For a page of checkpoints of one namespace: one ``get_many`` for every channel
version they name (plus the delta chains those need), and one range scan for all
their pending writes — never a query per checkpoint.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import Checkpoint, CheckpointTuple, PendingWrite, writes_sort_key
from langgraph.checkpoint.serde.base import SerializerProtocol

from ...core import Core, layout
from ...protocol import Record, keys
from ._records import invert_id, parse_write_key, read_doc, revert_id, unpack
from ._steps import Get, Out, Scan, Steps, run
from ._memo import ValueMemo, shallow_copy
from .deltas import MISSING, ValueReader

__all__ = ["Stored", "TupleBuilder", "Wanted", "config_of", "decode_checkpoint", "listing", "write_scan"]


@dataclass(frozen=True, slots=True)
class Stored:
    """One checkpoint record, decoded as far as its codec (the serde parts still bytes)."""

    thread: str
    ns: str
    checkpoint_id: str
    doc: dict[str, Any]


def config_of(thread: str, ns: str, checkpoint_id: str) -> RunnableConfig:
    """The config LangGraph uses to name a checkpoint."""
    return {"configurable": {"thread_id": thread, "checkpoint_ns": ns, "checkpoint_id": checkpoint_id}}


def decode_checkpoint(core: Core, thread: str, rec: Record) -> Stored:
    """A checkpoint record's thread, namespace and id (from its key) and its stored document."""
    ns_part, inverted = rec.key.rsplit("/", 2)[-2:]
    ns = keys.unescape(ns_part)[1:]
    return Stored(thread, ns, revert_id(inverted), read_doc(core.codec, rec.data, rec.codec, rec.key))


def _value(reader: ValueReader, known: dict[tuple[str, str], Any], channel: str, version: Any) -> Any:
    """A remembered value (a copy of its container) or the stored one."""
    pair = (channel, str(version))
    return shallow_copy(known[pair]) if pair in known else reader.value(channel, version)


class TupleBuilder:
    """Builds tuples for checkpoints of one thread with the saver's serializer."""

    def __init__(self, core: Core, serde: SerializerProtocol, memo: ValueMemo | None = None) -> None:
        self._core = core
        self._serde = serde
        self._memo = memo
        """Values of the thread's newest checkpoint this saver wrote or read: not read again."""
        self.readers: dict[str, ValueReader] = {}
        """The value reader used per namespace (the saver learns delta bases from it)."""

    def build(self, stored: list[Stored]) -> list[CheckpointTuple]:
        """Tuples for ``stored`` (all of one thread), in the same order, read with the sync backend."""
        return run(self._core.backend, self.building(stored))

    def building(self, stored: list[Stored]) -> Steps[list[CheckpointTuple]]:
        """:meth:`build` as sans-I/O steps (:mod:`._steps`): the sync and the asyncio reads share it."""
        by_ns: dict[str, list[Stored]] = defaultdict(list)
        for s in stored:
            by_ns[s.ns].append(s)
        built: dict[tuple[str, str], CheckpointTuple] = {}
        for ns, group in by_ns.items():
            tuples = yield from self._build_ns(ns, group)
            for s, tup in zip(group, tuples):
                built[(s.ns, s.checkpoint_id)] = tup
        return [built[(s.ns, s.checkpoint_id)] for s in stored]

    def _build_ns(self, ns: str, group: list[Stored]) -> Steps[list[CheckpointTuple]]:
        thread = group[0].thread
        bodies = [self._serde.loads_typed(unpack(s.doc["c"])) for s in group]
        reader = self.readers[ns] = ValueReader(self._core, thread, ns, self._serde.loads_typed)
        pairs = [(ch, str(v)) for body in bodies for ch, v in body["channel_versions"].items()]
        known = self._memo.recall(thread, ns, pairs) if self._memo is not None else {}
        yield from reader.load(pair for pair in pairs if pair not in known)
        ids = [s.checkpoint_id for s in group]
        records = yield from write_scan(thread, ns, sorted(invert_id(i) for i in ids))
        writes = self._writes(records, ids)
        out = []
        for s, body in zip(group, bodies):
            values = {ch: val for ch, v in body["channel_versions"].items()
                      if (val := _value(reader, known, ch, v)) is not MISSING}  # fmt: skip
            parent = s.doc.get("p")
            out.append(CheckpointTuple(
                config=config_of(thread, ns, s.checkpoint_id),
                checkpoint=cast(Checkpoint, {**body, "channel_values": values}),
                metadata=self._serde.loads_typed(unpack(s.doc["m"])),
                parent_config=config_of(thread, ns, parent) if parent else None,
                pending_writes=writes.get(s.checkpoint_id, []),
            ))  # fmt: skip
        return out

    def _writes(self, records: list[Record], ids: list[str]) -> dict[str, list[PendingWrite]]:
        """Pending writes of checkpoints ``ids`` of one namespace, in ``writes_sort_key`` order."""
        wanted = {invert_id(i) for i in ids}
        found: dict[str, list[tuple[tuple[str, str, int], PendingWrite]]] = defaultdict(list)
        for rec in records:
            inverted, task_id, idx = parse_write_key(rec.key)
            if inverted not in wanted:
                continue
            doc = read_doc(self._core.codec, rec.data, rec.codec, rec.key)
            write = (task_id, str(doc["c"]), self._serde.loads_typed(unpack(doc, rec.key)))
            found[revert_id(inverted)].append((writes_sort_key(str(doc.get("p", "")), task_id, idx), write))
        return {cid: [w for _, w in sorted(items, key=lambda x: x[0])] for cid, items in found.items()}


def write_scan(thread: str, ns: str, inverted: list[str]) -> Steps[list[Record]]:
    """Every write record from the first to the last of ``inverted`` (sorted) in one range scan."""
    if len(inverted) == 1:
        prefix = layout.langgraph_writes_prefix(thread, ns, inverted[0])
        after = None
    else:
        prefix = layout.langgraph_writes_prefix(thread, ns)
        after = layout.langgraph_writes_prefix(thread, ns, inverted[0])[:-1]
    stop = layout.langgraph_writes_prefix(thread, ns, inverted[-1]) + "\U0010ffff"
    out: list[Record] = []
    while True:
        recs = yield Scan(prefix, after, 500)
        for rec in recs:
            if rec.key > stop:
                return out
            out.append(rec)
        if len(recs) < 500:
            return out
        after = recs[-1].key


_PAGE = 100


class Wanted(NamedTuple):
    """Which checkpoints a listing returns: of namespace ``ns`` (None: every one), the one named
    ``checkpoint_id``, those before ``before_id``, those whose metadata has ``filt``'s items."""

    ns: str | None
    checkpoint_id: str | None
    before_id: str | None
    filt: dict[str, Any] | None

    def matches(self, s: Stored, serde: SerializerProtocol) -> bool:
        if self.checkpoint_id and s.checkpoint_id != self.checkpoint_id:
            return False
        if self.before_id and s.checkpoint_id >= self.before_id:
            return False
        if not self.filt:
            return True
        metadata = serde.loads_typed(unpack(s.doc["m"]))
        return all(metadata.get(k) == v for k, v in self.filt.items())


def listing(
    core: Core, serde: SerializerProtocol, threads: Iterable[str], wanted: Wanted, left: int | None
) -> Steps[None]:
    """``StatekeelSaver.list`` as sans-I/O steps: each tuple handed on as an :class:`~._steps.Out`,
    newest first per namespace, at most ``left`` (None: all)."""
    for thread in threads:
        pages = _Pages(core, thread, wanted, left)
        while (page := (yield from pages.next())) is not None:
            chosen = [s for s in page if wanted.matches(s, serde)]
            if left is not None:
                chosen = chosen[:left]
                left -= len(chosen)
            for tup in (yield from TupleBuilder(core, serde).building(chosen)):
                yield Out(tup)
            if left == 0:
                return


class _Pages:
    """The pages of one thread's checkpoints a listing walks: ``before``/``limit`` cost O(returned)."""

    def __init__(self, core: Core, thread: str, wanted: Wanted, left: int | None) -> None:
        self._core, self._thread, self._done = core, thread, False
        ns = wanted.ns
        self._named = None if ns is None or not wanted.checkpoint_id else \
            layout.langgraph_checkpoint_key(thread, ns, invert_id(wanted.checkpoint_id))  # fmt: skip
        self._prefix = layout.langgraph_checkpoints_prefix(thread, ns)
        self._after = None if ns is None or wanted.before_id is None else \
            layout.langgraph_checkpoint_key(thread, ns, invert_id(wanted.before_id))  # fmt: skip
        self._size = _PAGE if left is None else max(1, min(_PAGE, left))

    def next(self) -> Steps[list[Stored] | None]:
        """The next page (None: there is none)."""
        if self._done:
            return None
        core, thread = self._core, self._thread
        if self._named is not None:  # one named checkpoint: one read
            self._done = True
            rec = yield Get(self._named)
            return [] if rec is None else [decode_checkpoint(core, thread, rec)]
        recs = yield Scan(self._prefix, self._after, self._size)
        if len(recs) < self._size:
            self._done = True
        if not recs:
            return None
        self._after, self._size = recs[-1].key, _PAGE
        return [decode_checkpoint(core, thread, r) for r in recs]
