"""A cold read (a new process, nothing in memory) follows a bounded number of value records (issue 13).

A growing message list is a chain of deltas; every ``segment`` links one record repeats the
items since the previous segment and builds on it (and every ``segment²`` links, a second
level), so a version is rebuilt from the root, the segments and fewer than ``segment``
single links — not the whole chain.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langgraph.checkpoint.memory import InMemorySaver

import statekeel
from statekeel.core import Core, layout
from statekeel.integrations.langgraph import StatekeelSaver
from statekeel.integrations.langgraph._records import ThreadKeys, read_doc, write_key
from statekeel.protocol import ANY, Put

from .graphs import chat_graph, history, user_turn

CONFIG: dict[str, Any] = {"configurable": {"thread_id": "chat"}}


class _Counting:
    """The store's real backend, recording the value keys read through it."""

    def __init__(self, backend: Any) -> None:
        self._backend = backend
        self.values: list[str] = []

    def get_many(self, keys: Sequence[str]) -> Any:
        recs = self._backend.get_many(keys)
        self.values += [r.key for r in recs if r is not None and "/v/" in r.key]
        return recs

    def get(self, key: str) -> Any:
        return self.get_many([key])[0]

    def scan(self, prefix: str, **kw: Any) -> Any:
        recs = self._backend.scan(prefix, **kw)
        self.values += [r.key for r in recs if "/v/" in r.key]
        return recs

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)


def _cold_value_reads(store: statekeel.Store) -> tuple[int, Any]:
    counting = _Counting(store.backend)
    saver = StatekeelSaver(Core(counting, store.codec))  # type: ignore[arg-type]
    values = chat_graph(saver).get_state(CONFIG).values
    return len([k for k in counting.values if "/messages/" in k]), values


def test_a_cold_read_follows_a_bounded_number_of_value_records(store: statekeel.Store) -> None:
    graph = chat_graph(StatekeelSaver(store, delta_min_bytes=10**9, segment=8))  # one chain: 120 links
    for i in range(60):
        graph.invoke(user_turn(i), CONFIG)
    read, values = _cold_value_reads(store)
    assert read <= 2 * 8 + 120 // 64 + 2  # was every link of the chain: 121 records
    assert [m.id for m in values["messages"]][-2:] == ["user-59", "ai-119"] and len(values["messages"]) == 120


def test_every_checkpoint_restores_exactly_with_short_segments(store: statekeel.Store) -> None:
    ours = chat_graph(StatekeelSaver(store, delta_min_bytes=10**9, segment=3))
    reference = chat_graph(InMemorySaver())
    for i in range(15):
        ours.invoke(user_turn(i), CONFIG)
        reference.invoke(user_turn(i), CONFIG)
    docs = [read_doc(store.codec, r.data, r.codec, r.key)
            for r in store.backend.scan(layout.langgraph_blob_prefix("chat", "", "messages"), limit=1000)]  # fmt: skip
    assert sum("segs" in d for d in docs) >= 8
    assert history(chat_graph(StatekeelSaver(store)), CONFIG) == history(reference, CONFIG)


def test_a_fresh_saver_continues_the_segments_it_read(store: statekeel.Store) -> None:
    reference = chat_graph(InMemorySaver())
    for n in range(3):  # three processes one after the other, each continuing the thread
        graph = chat_graph(StatekeelSaver(store, delta_min_bytes=10**9, segment=4))
        for i in range(n * 7, n * 7 + 7):
            graph.invoke(user_turn(i), CONFIG)
            reference.invoke(user_turn(i), CONFIG)
    read, values = _cold_value_reads(store)
    assert values == reference.get_state(CONFIG).values
    assert read <= 2 * 4 + 42 // 16 + 2
    assert history(chat_graph(StatekeelSaver(store)), CONFIG) == history(reference, CONFIG)


def test_records_written_before_segments_are_read_and_extended(store: statekeel.Store) -> None:
    reference = chat_graph(InMemorySaver())
    graph = chat_graph(StatekeelSaver(store, delta_min_bytes=10**9, segment=0))
    for i in range(10):
        graph.invoke(user_turn(i), CONFIG)
        reference.invoke(user_turn(i), CONFIG)
    old = []  # as an earlier statekeel wrote them: deltas without the segment hints
    for rec in store.backend.scan(layout.langgraph_blob_prefix("chat", "", "messages"), limit=1000):
        doc = {k: v for k, v in read_doc(store.codec, rec.data, rec.codec, rec.key).items() if k not in ("sv", "sn", "sk", "sb")}
        old.append(Put(rec.key, *store.codec._unguarded().encode(doc, "an old record", rec.key), ANY))
    store.backend.apply(old)
    graph = chat_graph(StatekeelSaver(store, delta_min_bytes=10**9, segment=4))
    for i in range(10, 20):
        graph.invoke(user_turn(i), CONFIG)
        reference.invoke(user_turn(i), CONFIG)
    assert history(chat_graph(StatekeelSaver(store)), CONFIG) == history(reference, CONFIG)


def test_thread_keys_are_the_layouts_keys() -> None:
    tk = ThreadKeys("a/b%c", "ns{1}")
    assert tk.head == layout.langgraph_head_key("a/b%c", "ns{1}")
    assert tk.checkpoint("QPA") == layout.langgraph_checkpoint_key("a/b%c", "ns{1}", "QPA")
    assert tk.blob("ch/1", "0001.ab") == layout.langgraph_blob_key("a/b%c", "ns{1}", "ch/1", "0001.ab")
    assert tk.write("QPA", "task/%", -2) == write_key("a/b%c", "ns{1}", "QPA", "task/%", -2)
