"""The saver's per-turn cost grows with the change, not the history (issue 13), on every backend.

A turn starts with ``get_tuple`` of the thread's newest checkpoint: the values this saver
just wrote are served from memory (no value record read, nothing decoded), while the
checkpoint record and its pending writes are still read, so another writer's newer
checkpoint is always seen. Large values are stored compressed and read back exactly.
"""

from __future__ import annotations

import subprocess
import sys
import zlib
from collections.abc import Sequence
from typing import Annotated, Any, TypedDict

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command

import statekeel
from statekeel.core import Core, layout
from statekeel.errors import CorruptionError, InvalidInputError, StoreError
from statekeel.integrations.langgraph import StatekeelSaver
from statekeel.integrations.langgraph._records import frame, pack, read_doc, unpack
from statekeel.protocol import ANY, Put, keys

from .graphs import approval_graph, chat_graph, history, user_turn

CONFIG: dict[str, Any] = {"configurable": {"thread_id": "chat"}}
APPROVAL: dict[str, Any] = {"configurable": {"thread_id": "approval"}}


class CountingBackend:
    """The store's real backend, recording the keys read through it."""

    def __init__(self, backend: Any) -> None:
        self._backend = backend
        self.read: list[str] = []

    def get(self, key: str) -> Any:
        self.read.append(key)
        return self._backend.get(key)

    def get_many(self, keys: Sequence[str]) -> Any:
        self.read.extend(keys)
        return self._backend.get_many(keys)

    def scan(self, prefix: str, **kw: Any) -> Any:
        recs = self._backend.scan(prefix, **kw)
        self.read.extend(r.key for r in recs)
        return recs

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)


def _counting_saver(store: statekeel.Store) -> tuple[StatekeelSaver, CountingBackend]:
    counting = CountingBackend(store.backend)
    return StatekeelSaver(Core(counting, store.codec)), counting  # type: ignore[arg-type]


def test_a_turn_reads_no_channel_value_it_wrote_itself(store: statekeel.Store) -> None:
    saver, counting = _counting_saver(store)
    graph = chat_graph(saver)
    for i in range(30):
        graph.invoke(user_turn(i), CONFIG)
    counting.read.clear()
    graph.invoke(user_turn(30), CONFIG)
    assert not [k for k in counting.read if "/v/" in k]  # was: every version of every channel
    assert len(graph.get_state(CONFIG).values["messages"]) == 62


def test_values_served_from_memory_equal_a_fresh_savers_read(store: statekeel.Store) -> None:
    warm = chat_graph(StatekeelSaver(store))
    for i in range(12):
        warm.invoke(user_turn(i), CONFIG)
    cold = chat_graph(StatekeelSaver(store))
    assert warm.get_state(CONFIG).values == cold.get_state(CONFIG).values
    assert warm.get_state(CONFIG).values is not cold.get_state(CONFIG).values


def test_another_writers_newer_checkpoint_is_seen_not_the_remembered_one(store: statekeel.Store) -> None:
    first, second = chat_graph(StatekeelSaver(store)), chat_graph(StatekeelSaver(store))
    first.invoke(user_turn(0), CONFIG)
    second.invoke(user_turn(1), CONFIG)  # second reads first's checkpoint, then writes a newer one
    values = first.get_state(CONFIG).values
    assert [m.id for m in values["messages"]] == ["user-0", "ai-1", "user-1", "ai-3"]
    first.invoke(user_turn(2), CONFIG)
    assert len(chat_graph(StatekeelSaver(store)).get_state(CONFIG).values["messages"]) == 6


def _in_place(left: list[int] | None, right: list[int]) -> list[int]:
    """A reducer that extends the old list object instead of returning a new one."""
    if left is None:
        return list(right)
    left.extend(right)
    return left


class Numbers(TypedDict, total=False):
    items: Annotated[list[int], _in_place]


def test_a_reducer_extending_lists_in_place_cannot_change_what_was_stored(store: statekeel.Store) -> None:
    builder = StateGraph(Numbers)
    builder.add_node("grow", lambda s: {"items": [len(s.get("items") or [])]})
    builder.add_edge(START, "grow")
    builder.add_edge("grow", END)
    graph = builder.compile(checkpointer=StatekeelSaver(store))
    for _ in range(4):
        graph.invoke({"items": [-1]}, CONFIG)
    history = [s.values.get("items") for s in graph.get_state_history(CONFIG)]
    fresh = builder.compile(checkpointer=StatekeelSaver(store))
    assert history == [s.values.get("items") for s in fresh.get_state_history(CONFIG)]
    assert graph.get_state(CONFIG).values["items"] == [-1, 1, -1, 3, -1, 5, -1, 7]


def test_reuse_values_off_reads_every_value_again(store: statekeel.Store) -> None:
    counting = CountingBackend(store.backend)
    graph = chat_graph(StatekeelSaver(Core(counting, store.codec), reuse_values=False))  # type: ignore[arg-type]
    for i in range(3):
        graph.invoke(user_turn(i), CONFIG)
    counting.read.clear()
    graph.invoke(user_turn(3), CONFIG)
    assert [k for k in counting.read if "/v/" in k]


def test_reuse_values_must_be_a_bool(store: statekeel.Store) -> None:
    with pytest.raises(InvalidInputError, match="reuse_values"):
        StatekeelSaver(store, reuse_values="no")  # type: ignore[arg-type]


def test_large_values_are_stored_compressed_and_read_back_exactly(store: statekeel.Store) -> None:
    graph = chat_graph(StatekeelSaver(store))
    for i in range(5):
        graph.invoke(user_turn(i), CONFIG)
    prefix = layout.langgraph_blob_prefix("chat", "", "messages")
    recs = store.backend.scan(prefix, limit=100)
    docs = [read_doc(store.codec, r.data, r.codec, r.key) for r in recs]
    assert docs and all(d.get("z") == 2 for d in docs)  # zstd: every version holds a ~1 KB message or more
    assert {r.codec for r in recs} == {"raw"}  # binary records: the zstd bytes as they are, no base64
    assert len(chat_graph(StatekeelSaver(store)).get_state(CONFIG).values["messages"]) == 10


def _as_session_23_stored(doc: Any) -> Any:
    """``doc`` as the saver stored it before session 24: the serialized bytes as ``bytes`` (the
    codec's tagged base64), zlib-compressed (``"z": 1``) from 256 bytes."""
    if type(doc) is not dict:
        return doc
    doc = {k: _as_session_23_stored(v) for k, v in doc.items()}
    if "t" in doc and "b" in doc:
        raw = unpack(doc)[1]
        doc.pop("z", None)
        doc.update({"b": zlib.compress(raw, 6), "z": 1} if len(raw) >= 256 else {"b": raw})
    return doc


def _as_session_25_stored(doc: Any) -> Any:
    """``doc`` as the saver stored it in sessions 24–25, before binary records: a JSON document
    with the serialized bytes as base64 text, zstd-compressed (``"z": 2``) from 256 bytes."""
    if type(doc) is not dict:
        return doc
    doc = {k: _as_session_25_stored(v) for k, v in doc.items()}
    if "t" in doc and type(doc.get("b")) is bytes:
        doc = {**doc, **pack(unpack(doc))}
    return doc


@pytest.mark.parametrize("as_stored", [_as_session_23_stored, _as_session_25_stored])
def test_threads_stored_by_earlier_versions_still_read_and_continue(store: statekeel.Store, as_stored: Any) -> None:
    reference = InMemorySaver()
    ours = StatekeelSaver(store, delta_min_bytes=64, segment=4)  # delta chains too
    for saver in (ours, reference):
        for i in range(12):
            chat_graph(saver).invoke(user_turn(i), CONFIG)
        approval_graph(saver).invoke(user_turn(0), APPROVAL)  # waits at interrupt(): a pending write
    old_codec = store.codec.compressing("zlib", min_bytes=200)._unguarded()  # as the saver's records were
    rewritten = []
    for rec in store.backend.scan(keys.join("langgraph") + "/", limit=10_000):  # both threads, every record
        doc = as_stored(read_doc(store.codec, rec.data, rec.codec, rec.key))
        rewritten.append(Put(rec.key, *old_codec.encode(doc, "an earlier record", rec.key), ANY))
    stored = [old_codec.decode(p.data, p.codec) for p in rewritten]
    assert all(type(d) is dict for d in stored)  # JSON documents only: no binary record left
    assert any(d.get("z") == 1 and type(d["b"]) is bytes if as_stored is _as_session_23_stored
               else d.get("z") == 2 and type(d["b"]) is str for d in stored)  # fmt: skip
    for i in range(0, len(rewritten), 50):  # DynamoDB commits at most 100 items at once
        store.backend.apply(rewritten[i : i + 50])
    for saver in (StatekeelSaver(store, delta_min_bytes=64, segment=4), reference):
        assert history(chat_graph(saver), CONFIG) == history(chat_graph(reference), CONFIG)
        assert history(approval_graph(saver), APPROVAL) == history(approval_graph(reference), APPROVAL)
        approval_graph(saver).invoke(Command(resume="yes"), APPROVAL)
        for i in range(12, 16):
            chat_graph(saver).invoke(user_turn(i), CONFIG)
    fresh = StatekeelSaver(store)
    assert history(chat_graph(fresh), CONFIG) == history(chat_graph(reference), CONFIG)
    assert history(approval_graph(fresh), APPROVAL) == history(approval_graph(reference), APPROVAL)


def test_a_stored_value_of_a_newer_format_or_the_wrong_type_is_refused() -> None:
    with pytest.raises(StoreError, match="upgrade"):  # was CorruptionError: "restore it from a backup"
        unpack({"t": "msgpack", "b": "AAAA", "z": 9}, "k")
    for doc in ({"t": "msgpack", "b": 3}, {"t": "msgpack", "b": None}, {"t": "msgpack"}):
        with pytest.raises(CorruptionError):  # was three zero bytes, TypeError, KeyError
            unpack(doc, "k")


def test_a_value_that_does_not_decompress_is_reported_as_corruption(store: statekeel.Store) -> None:
    graph = chat_graph(StatekeelSaver(store))
    graph.invoke(user_turn(0), CONFIG)
    prefix = layout.langgraph_blob_prefix("chat", "", "messages")
    rec = store.backend.scan(prefix, limit=1)[0]
    doc = read_doc(store.codec, rec.data, rec.codec, rec.key)
    data, codec = store.codec.encode_bytes(frame({**doc, "b": b"not zstd at all"}), "damaged", rec.key)
    store.backend.apply([Put(rec.key, data, codec, ANY)])
    with pytest.raises(CorruptionError) as err:
        chat_graph(StatekeelSaver(store)).get_state(CONFIG)
    assert err.value.key == rec.key


_WITHOUT_ZSTANDARD = """
import sys
sys.modules["zstandard"] = None  # not installed
from statekeel.errors import ConfigurationError
from statekeel.integrations.langgraph._records import pack, unpack
doc = pack(("msgpack", b"x" * 300))
assert doc["z"] == 1 and unpack(doc) == ("msgpack", b"x" * 300), doc
try:
    unpack({"t": "msgpack", "b": sys.argv[1], "z": 2})
except ConfigurationError as exc:
    print("refused:", "pip install" in str(exc))
"""


def test_without_zstandard_values_are_zlib_compressed_and_zstd_ones_refused_with_the_fix() -> None:
    zstd_doc = pack(("msgpack", b"y" * 300))
    assert zstd_doc["z"] == 2
    done = subprocess.run([sys.executable, "-c", _WITHOUT_ZSTANDARD, zstd_doc["b"]], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout == "refused: True\n", done.stderr
