"""Maintenance over long histories on DynamoDB, whose transactions hold at most 100 items.

Features that rewrite or copy many items split their work into batches small enough for
that limit, with room for what a layer adds (a tamper-evident store's chain head):
``statekeel keys encrypt`` and ``keys reencrypt`` of a session of 150 messages (they rewrote
a log's entries 500 at a time: refused on DynamoDB), and a LangGraph thread of several
hundred records copied and deleted in a chained store (batches of 100 plus the head: 101).
"""

from __future__ import annotations

import base64
from typing import Any

from click.testing import CliRunner

import statekeel
from dynamodb_server import server, url  # noqa: F401 - fixtures
from statekeel.cli import main

KEY = b"k" * 32
ENV = {"STATEKEEL_MASTER_KEY": base64.b64encode(KEY).decode()}
MESSAGES = 150


def _cli(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), env=ENV, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_keys_encrypt_and_reencrypt_convert_a_long_history(url: str) -> None:  # noqa: F811
    with statekeel.open(url) as plain:
        s = plain.session("a")
        s.append(*[{"role": "user", "content": f"m{i}"} for i in range(MESSAGES)])
    assert "150 entries" in _cli("keys", "encrypt", url)
    assert "entries" in _cli("--url", url, "keys", "reencrypt")
    with statekeel.open(url, encryption=statekeel.Encryption(master_key=KEY)) as store:
        assert [m["content"] for m in store.session("a").history()] == [f"m{i}" for i in range(MESSAGES)]
        entries = store.storage.read("session/a/history")
        assert len(entries) == MESSAGES and all("aesgcm" in e.codec for e in entries)


def test_a_long_langgraph_thread_is_copied_and_deleted_in_a_chained_store(url: str) -> None:  # noqa: F811
    from langchain_core.messages import AIMessage
    from langgraph.graph import START, MessagesState, StateGraph

    from statekeel.integrations.langgraph import StatekeelSaver

    def bot(state: MessagesState) -> dict[str, Any]:
        return {"messages": [AIMessage("hi")]}

    with statekeel.open(url, integrity=statekeel.Integrity(key=KEY)) as store:
        saver = StatekeelSaver(store)
        graph = StateGraph(MessagesState)
        graph.add_node("bot", bot)
        graph.add_edge(START, "bot")
        app = graph.compile(checkpointer=saver)
        a, b = {"configurable": {"thread_id": "a"}}, {"configurable": {"thread_id": "b"}}
        for i in range(12):
            app.invoke({"messages": [("user", f"m{i}")]}, a)
        assert len(list(saver.list(a))) > 0 and len(store.storage.scan("", limit=10_000)) > 100
        saver.copy_thread("a", "b")
        assert app.get_state(b).values["messages"] == app.get_state(a).values["messages"]
        saver.delete_thread("a")
        assert saver.get_tuple(a) is None
        assert len(app.get_state(b).values["messages"]) == 24
        assert store.verify().ok


def test_many_checkpoints_are_pruned_and_a_large_state_forked(url: str) -> None:  # noqa: F811
    """A prune deletes its checkpoints a batch at a time (newest first, each batch a
    compare-and-set on the checkpoint index); a fork writes the state 50 keys at a time."""
    with statekeel.open(url) as store:
        s = store.session("a")
        for i in range(60):
            s.state.put("k", i)
            s.checkpoint(label="first" if i == 0 else None)
        assert s.prune_checkpoints(keep_last=3) == 57
        kept = s.checkpoints()
        assert [c.id for c in kept] == [58, 59, 60]
        s.restore(kept[0])
        assert s.state.get("k") == 57
        s.checkpoint(label="first")  # the pruned checkpoint's label was released
        b = store.session("b")
        for i in range(120):
            b.state.put(f"k{i}", i)
        b.fork(b.checkpoint(), into="c")
        assert store.session("c").state.to_dict() == {f"k{i}": i for i in range(120)}
