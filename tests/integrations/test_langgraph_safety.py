"""Fencing, encryption and tenants for StatekeelSaver, on every backend."""

from __future__ import annotations

import os
import threading
from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from langgraph.graph import END, START, StateGraph

import statekeel
from statekeel.backends import open_backend
from statekeel.codec import Codec
from statekeel.errors import StatekeelError
from statekeel.core import layout
from statekeel.integrations.langgraph import CheckpointForkError, StatekeelSaver

from .graphs import Chat, chat_graph, reply, user_turn

CONFIG: dict[str, Any] = {"configurable": {"thread_id": "chat"}}


def _checkpoint_ids(saver: StatekeelSaver) -> list[str]:
    return [t.config["configurable"]["checkpoint_id"] for t in saver.list(CONFIG)]


def test_a_writer_whose_parent_is_no_longer_the_head_gets_an_error(open_store: Any) -> None:
    first, second = StatekeelSaver(open_store()), StatekeelSaver(open_store())
    chat_graph(first).invoke(user_turn(0), CONFIG)
    loaded = second.get_tuple(CONFIG)  # what a LangGraph run does first
    assert loaded is not None
    chat_graph(first).invoke(user_turn(1), CONFIG)  # the other process moves the head
    stored = _checkpoint_ids(first)
    checkpoint = {**loaded.checkpoint, "id": "1f0ffff0-0000-6000-8000-000000000000"}
    with pytest.raises(CheckpointForkError, match="moved on") as err:
        second.put(loaded.config, checkpoint, {"source": "loop", "step": 9}, {})  # type: ignore[typeddict-item]
    assert err.value.parent == loaded.config["configurable"]["checkpoint_id"] and err.value.head == stored[0]
    assert _checkpoint_ids(first) == stored  # nothing was written
    assert isinstance(err.value, statekeel.ConflictError)


def test_two_graphs_racing_on_one_thread_never_fork_it(open_store: Any) -> None:
    """A run whose thread is extended by another process in mid-step fails instead of branching."""
    other = chat_graph(StatekeelSaver(open_store()))

    failures: list[BaseException] = []

    def meddle() -> None:
        try:
            other.invoke(user_turn(50), CONFIG)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            failures.append(exc)

    def slow_reply(state: Chat) -> Chat:
        meddler = threading.Thread(target=meddle)
        meddler.start()
        meddler.join()
        return reply(state)

    builder = StateGraph(Chat)
    builder.add_node("reply", slow_reply)
    builder.add_edge(START, "reply")
    builder.add_edge("reply", END)
    saver = StatekeelSaver(open_store())
    racing = builder.compile(checkpointer=saver)
    with pytest.raises(CheckpointForkError):
        racing.invoke(user_turn(1), CONFIG, durability="sync")  # its checkpoints are stored before the node runs
    assert failures == []
    tuples = list(saver.list(CONFIG))
    parents = [t.parent_config["configurable"]["checkpoint_id"] for t in tuples if t.parent_config]
    assert len(parents) == len(set(parents))  # every checkpoint has at most one child: a chain
    assert [m.id for m in other.get_state(CONFIG).values["messages"]] == ["user-1", "user-50", "ai-2"]


def test_deliberate_forks_are_not_fenced(store: statekeel.Store) -> None:
    saver = StatekeelSaver(store)
    graph = chat_graph(saver)
    for i in range(2):
        graph.invoke(user_turn(i), CONFIG)
    first = list(saver.list(CONFIG))[-1]
    graph.invoke(user_turn(7), first.config)  # re-ask from the very first checkpoint
    assert [m.id for m in graph.get_state(CONFIG).values["messages"]] == ["user-7", "ai-1"]


def _raw_records(url: str) -> list[Any]:
    backend = open_backend(url)
    try:
        out, after = [], None
        while recs := backend.scan("", after=after, limit=500):
            out += recs
            after = recs[-1].key
        return out
    finally:
        backend.close()


def _write_everything(store: statekeel.Store) -> None:
    saver = StatekeelSaver(store)
    config = {"configurable": {"thread_id": "secret-thread", "tag": "metadata-in-clear"}}
    chat_graph(saver).invoke({"messages": [HumanMessage("a private question", id="m1")]}, config)
    big = os.urandom(90_000).hex()  # a full value that stays over 64 KB once compressed
    chat_graph(saver).invoke({"messages": [HumanMessage(big, id="m2")]}, config)
    assert chat_graph(StatekeelSaver(store)).get_state(config).values["messages"][2].content == big
    head = saver.get_tuple(config)
    assert head is not None
    saver.put_writes(head.config, [("messages", "a pending write")], "task-1")


def _plaintext(url: str) -> list[str]:
    """LangGraph records whose stored bytes a codec without keys still decodes (JSON, compressed or not)."""
    found = []
    for rec in _raw_records(url):
        if rec.key.split("/", 1)[0] in ("langgraph", "idx"):
            try:
                Codec().decode(rec.data, rec.codec, rec.key)
                found.append(rec.key)
            except StatekeelError:
                pass
    return found


def test_with_encryption_checkpoints_metadata_and_writes_are_encrypted(store_url: str) -> None:
    with statekeel.open(store_url, encryption=statekeel.Encryption(master_key=os.urandom(32))) as store:
        _write_everything(store)
    recs = [r for r in _raw_records(store_url) if r.key.startswith("langgraph/")]
    keys = [r.key for r in recs]
    assert any("/cp/" in k for k in keys) and any("/w/" in k for k in keys) and any("/v/" in k for k in keys)
    assert _plaintext(store_url) == []
    assert any(len(r.data) > 65_536 for r in recs)  # the big full value is among the encrypted ones


def test_the_plaintext_check_finds_an_unencrypted_store(store_url: str) -> None:
    """The control for the test above: without encryption the same records are readable JSON."""
    with statekeel.open(store_url) as store:
        _write_everything(store)
    found = _plaintext(store_url)
    assert any("/cp/" in k for k in found) and any("/w/" in k for k in found)
    codecs = {r.codec for r in _raw_records(store_url) if "/v/" in r.key and len(r.data) > 65_536}
    assert codecs == {"raw"}  # the big full value: its zstd bytes as they are, not compressed again


def test_a_tenant_saver_sees_only_its_tenants_threads(store: statekeel.Store) -> None:
    acme, globex = StatekeelSaver(store.tenant("acme")), StatekeelSaver(store.tenant("globex"))
    chat_graph(acme).invoke(user_turn(0), CONFIG)
    assert globex.get_tuple(CONFIG) is None and list(globex.list(None)) == []
    chat_graph(globex).invoke(user_turn(5), CONFIG)  # the same thread id, another tenant
    globex.prune(["chat"], strategy="delete")
    globex.delete_for_runs(["run-1"])
    assert [m.id for m in chat_graph(acme).get_state(CONFIG).values["messages"]] == ["user-0", "ai-1"]
    assert [t.config["configurable"]["thread_id"] for t in acme.list(None)] == ["chat", "chat", "chat"]
    assert store.backend.scan(layout.langgraph_thread_prefix("chat")) == []  # nothing outside the tenants


def test_bad_ids_are_refused_and_write_nothing(store: statekeel.Store) -> None:
    saver = StatekeelSaver(store)
    checkpoint: Any = {"v": 1, "id": "not a uuid/../x", "ts": "2026-01-01T00:00:00+00:00", "channel_values": {},
                       "channel_versions": {}, "versions_seen": {}, "updated_channels": None}  # fmt: skip
    with pytest.raises(statekeel.InvalidInputError, match="uuid6"):
        saver.put({"configurable": {"thread_id": "t", "checkpoint_ns": ""}}, checkpoint, {}, {})
    with pytest.raises(statekeel.InvalidInputError, match="thread_id"):
        saver.get_tuple({"configurable": {}})
    assert store.backend.scan("langgraph/") == [] and store.backend.scan("idx/") == []


def test_put_writes_keeps_the_first_write_of_a_task_and_overwrites_special_channels(store: statekeel.Store) -> None:
    saver = StatekeelSaver(store)
    chat_graph(saver).invoke(user_turn(0), CONFIG)
    head = saver.get_tuple(CONFIG)
    assert head is not None
    saver.put_writes(head.config, [("messages", "first"), ("__interrupt__", "ask 1")], "task")
    saver.put_writes(head.config, [("messages", "retried"), ("__interrupt__", "ask 2")], "task")
    again = saver.get_tuple(head.config)
    assert again is not None and again.pending_writes == [("task", "__interrupt__", "ask 2"), ("task", "messages", "first")]


@pytest.mark.parametrize("option", [{"max_chain": -1}, {"delta_min_bytes": "16k"}, {"chain_share": float("nan")},
                                    {"segment": -1}, {"segment": 2.5}])
def test_bad_tuning_options_are_refused(store: statekeel.Store, option: dict[str, Any]) -> None:
    with pytest.raises(statekeel.InvalidInputError):
        StatekeelSaver(store, **option)
