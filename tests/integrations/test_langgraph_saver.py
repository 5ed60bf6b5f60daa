"""StatekeelSaver under real LangGraph graphs, on every backend: exact values, deltas, admin."""

from __future__ import annotations

import asyncio
from typing import Any

from langchain_core.messages import RemoveMessage
from langgraph.checkpoint.memory import InMemorySaver

import statekeel
from statekeel.core import layout
from statekeel.integrations.langgraph import StatekeelSaver
from statekeel.integrations.langgraph._records import read_doc

from .graphs import chat_graph, delta_graph, history, user_turn

CONFIG: dict[str, Any] = {"configurable": {"thread_id": "chat"}}


def _value_docs(store: statekeel.Store, thread: str, channel: str) -> list[dict[str, Any]]:
    prefix = layout.langgraph_blob_prefix(thread, "", channel)
    return [read_doc(store.codec, r.data, r.codec, r.key) for r in store.backend.scan(prefix, limit=10_000)]


def test_history_is_exactly_what_langgraphs_own_saver_gives(store: statekeel.Store) -> None:
    ours, reference = chat_graph(StatekeelSaver(store)), chat_graph(InMemorySaver())
    for i in range(25):
        ours.invoke(user_turn(i), CONFIG)
        reference.invoke(user_turn(i), CONFIG)
    assert ours.get_state(CONFIG).values == reference.get_state(CONFIG).values
    assert history(ours, CONFIG) == history(reference, CONFIG)
    assert len(history(ours, CONFIG)) == 25 * 3


def test_a_growing_message_list_is_stored_as_deltas(store: statekeel.Store) -> None:
    saver = StatekeelSaver(store)
    graph = chat_graph(saver)
    for i in range(60):
        graph.invoke(user_turn(i), CONFIG)
    docs = _value_docs(store, "chat", "messages")
    deltas = [d for d in docs if "base" in d]
    assert len(docs) == 120 and len(deltas) >= 100
    final = saver.serde.dumps_typed(graph.get_state(CONFIG).values["messages"])[1]
    stored = sum(len(d["b"]) for d in docs)
    assert stored < 4 * len(final)  # a full copy per version would be ~60x


def test_a_fresh_saver_continues_the_chain_from_what_it_read(store_url: str) -> None:
    with statekeel.open(store_url) as first:
        graph = chat_graph(StatekeelSaver(first))
        for i in range(5):
            graph.invoke(user_turn(i), CONFIG)
    with statekeel.open(store_url) as second:
        graph = chat_graph(StatekeelSaver(second))
        graph.invoke(user_turn(5), CONFIG)
        docs = _value_docs(second, "chat", "messages")
        assert sum("base" not in d for d in docs) == 1  # only the very first version is full
        assert len(graph.get_state(CONFIG).values["messages"]) == 12


def test_a_list_that_shrank_or_changed_is_stored_in_full_and_restored(store: statekeel.Store) -> None:
    graph = chat_graph(StatekeelSaver(store))
    for i in range(4):
        graph.invoke(user_turn(i), CONFIG)
    graph.update_state(CONFIG, {"messages": [RemoveMessage(id="user-1")]})
    graph.invoke(user_turn(4), CONFIG)
    reference = chat_graph(InMemorySaver())
    for i in range(4):
        reference.invoke(user_turn(i), CONFIG)
    reference.update_state(CONFIG, {"messages": [RemoveMessage(id="user-1")]})
    reference.invoke(user_turn(4), CONFIG)
    assert history(graph, CONFIG) == history(reference, CONFIG)
    ids = [m.id for m in graph.get_state(CONFIG).values["messages"]]
    assert "user-1" not in ids and ids[-2:] == ["user-4", "ai-8"]


def test_small_snapshot_limits_still_restore_every_checkpoint(store: statekeel.Store) -> None:
    ours = chat_graph(StatekeelSaver(store, delta_min_bytes=1, max_chain=3))
    reference = chat_graph(InMemorySaver())
    for i in range(12):
        ours.invoke(user_turn(i), CONFIG)
        reference.invoke(user_turn(i), CONFIG)
    assert history(ours, CONFIG) == history(reference, CONFIG)
    docs = _value_docs(store, "chat", "messages")
    assert max(d.get("k", 0) for d in docs) <= 3 and sum("base" not in d for d in docs) > 3


def _travel(graph: Any) -> list[str]:
    """Chat, then edit history: re-ask from an earlier checkpoint, and update an old state."""
    for i in range(3):
        graph.invoke(user_turn(i), CONFIG)
    earlier = [s for s in graph.get_state_history(CONFIG) if len(s.values["messages"]) == 2][0]
    graph.invoke(user_turn(99), earlier.config)  # a new question from an old point: a fork
    older = [s for s in graph.get_state_history(CONFIG) if len(s.values["messages"]) == 1][0]
    updated = graph.update_state(older.config, {"messages": [user_turn(77)["messages"][0]]})
    graph.invoke(None, updated)
    assert len(graph.get_state(earlier.config).values["messages"]) == 2  # old branches stay intact
    return [m.id for m in graph.get_state(CONFIG).values["messages"]]


def test_time_travel_and_forks_from_earlier_checkpoints(store: statekeel.Store) -> None:
    ours = _travel(chat_graph(StatekeelSaver(store)))
    assert ours == _travel(chat_graph(InMemorySaver()))
    assert ours[:2] == ["user-0", "user-77"]


def test_prune_keep_latest_keeps_a_delta_chain_restorable(store: statekeel.Store) -> None:
    saver = StatekeelSaver(store)
    graph = chat_graph(saver)
    for i in range(20):
        graph.invoke(user_turn(i), CONFIG)
    before = graph.get_state(CONFIG).values
    saver.prune(["chat"], strategy="keep_latest")
    assert len(list(saver.list(CONFIG))) == 1
    assert StatekeelSaver(store).get_tuple(CONFIG).checkpoint["channel_values"]["messages"] == before["messages"]
    graph.invoke(user_turn(20), CONFIG)
    assert len(graph.get_state(CONFIG).values["messages"]) == 42


def test_copy_and_delete_thread_carry_delta_chains(store: statekeel.Store) -> None:
    saver = StatekeelSaver(store)
    graph = chat_graph(saver)
    for i in range(6):
        graph.invoke(user_turn(i), CONFIG)
    saver.copy_thread("chat", "copy")
    copy = {"configurable": {"thread_id": "copy"}}
    assert history(graph, copy) == history(graph, CONFIG)
    saver.delete_thread("chat")
    assert graph.get_state(CONFIG).values == {}
    assert [t.config["configurable"]["thread_id"] for t in saver.list(None, limit=1)] == ["copy"]
    assert store.backend.scan(layout.langgraph_thread_prefix("chat")) == []


def test_delete_for_runs_keeps_what_remaining_checkpoints_need(store: statekeel.Store) -> None:
    saver = StatekeelSaver(store)
    graph = chat_graph(saver)
    graph.invoke(user_turn(0), {"configurable": {"thread_id": "chat", "run_id": "run-1"}})
    graph.invoke(user_turn(1), {"configurable": {"thread_id": "chat", "run_id": "run-2"}})
    saver.delete_for_runs(["run-1"])
    left = list(saver.list(CONFIG))
    assert {t.metadata["run_id"] for t in left} == {"run-2"}
    assert [m.id for m in left[0].checkpoint["channel_values"]["messages"]] == ["user-0", "ai-1", "user-1", "ai-3"]


def test_list_pages_with_before_and_limit(store: statekeel.Store) -> None:
    saver = StatekeelSaver(store)
    graph = chat_graph(saver)
    for i in range(10):
        graph.invoke(user_turn(i), CONFIG)
    every = [t.config["configurable"]["checkpoint_id"] for t in saver.list(CONFIG)]
    assert every == sorted(every, reverse=True) and len(every) == 30
    page = [t.config["configurable"]["checkpoint_id"] for t in saver.list(CONFIG, before={"configurable": {"checkpoint_id": every[4]}}, limit=3)]
    assert page == every[5:8]
    named = {"configurable": {"thread_id": "chat", "checkpoint_ns": "", "checkpoint_id": every[3]}}
    assert [t.config["configurable"]["checkpoint_id"] for t in saver.list(named)] == [every[3]]
    assert list(saver.list(named, before={"configurable": {"checkpoint_id": every[5]}})) == []
    inputs = list(saver.list(CONFIG, filter={"source": "input"}, limit=4))
    assert len(inputs) == 4 and all(t.metadata["source"] == "input" for t in inputs)


def test_langgraphs_delta_channel_rebuilds_from_history(store: statekeel.Store) -> None:
    ours, reference = delta_graph(StatekeelSaver(store)), delta_graph(InMemorySaver())
    for _ in range(8):
        ours.invoke({"items": []}, CONFIG)
        reference.invoke({"items": []}, CONFIG)
    assert ours.get_state(CONFIG).values == reference.get_state(CONFIG).values
    assert ours.get_state(CONFIG).values["items"] == list(range(8))
    assert history(ours, CONFIG) == history(reference, CONFIG)


def test_async_graph_never_blocks_the_loop(store: statekeel.Store) -> None:
    """The store refuses calls made on the event loop thread, so this proves every call hopped off it."""
    saver = StatekeelSaver(store)
    graph = chat_graph(saver)

    async def main() -> list[Any]:
        for i in range(5):
            await graph.ainvoke(user_turn(i), CONFIG)
        state = await graph.aget_state(CONFIG)
        return [m.id for m in state.values["messages"]]

    assert asyncio.run(main())[-2:] == ["user-4", "ai-9"]
    saver.close()


def test_delta_channel_history_matches_langgraphs_reference_saver(store: statekeel.Store) -> None:
    """``get_delta_channel_history`` (and its async twin) give what InMemorySaver gives, checkpoint by checkpoint."""
    saver, reference = StatekeelSaver(store), InMemorySaver()
    ours, theirs = delta_graph(saver), delta_graph(reference)
    for _ in range(7):
        ours.invoke({"items": []}, CONFIG)
        theirs.invoke({"items": []}, CONFIG)

    def shape(history: Any) -> Any:
        entry = history["items"]
        return [(ch, value) for _, ch, value in entry["writes"]], repr(entry.get("seed", "<none>"))

    mine = [s.config for s in ours.get_state_history(CONFIG)]
    refs = [s.config for s in theirs.get_state_history(CONFIG)]
    assert len(mine) == len(refs) == 21
    for a, b in zip(mine, refs):
        expected = shape(reference.get_delta_channel_history(config=b, channels=["items"]))
        assert shape(saver.get_delta_channel_history(config=a, channels=["items"])) == expected
        got = asyncio.run(saver.aget_delta_channel_history(config=a, channels=["items"]))
        assert shape(got) == expected


def test_prune_keeps_a_pending_interrupt_resumable(store: statekeel.Store) -> None:
    from langgraph.types import Command

    from .graphs import approval_graph

    saver = StatekeelSaver(store)
    graph = approval_graph(saver)
    for i in range(3):
        graph.invoke(user_turn(i), CONFIG)
        if i < 2:
            graph.invoke(Command(resume="yes"), CONFIG)
    assert graph.get_state(CONFIG).next == ("review",)
    saver.prune(["chat"], strategy="keep_latest")
    resumed = approval_graph(StatekeelSaver(store))  # another process, after the prune
    assert resumed.get_state(CONFIG).tasks[0].interrupts[0].value == {"draft": "answer 5 " + "a" * 800}
    resumed.invoke(Command(resume="yes"), CONFIG)
    state = resumed.get_state(CONFIG)
    assert state.next == () and state.values["turns"] == 1 and len(state.values["messages"]) == 6


def test_a_smaller_chain_share_snapshots_more_often_and_restores_the_same(open_store: Any) -> None:
    fulls = []
    for share, thread in ((1.0, "wide"), (0.1, "narrow")):
        store = open_store()
        config = {"configurable": {"thread_id": thread}}
        graph = chat_graph(StatekeelSaver(store, delta_min_bytes=1, chain_share=share))
        for i in range(15):
            graph.invoke(user_turn(i), config)
        fulls.append(sum("base" not in d for d in _value_docs(store, thread, "messages")))
        assert [m.id for m in graph.get_state(config).values["messages"]][-2:] == ["user-14", "ai-29"]
    assert fulls[1] > fulls[0] >= 2


def _count_calls(store: statekeel.Store) -> Any:
    """Count the backend reads a saver makes (the real backend, instrumented on this instance);
    a ``get_many`` is one read even where the backend answers it with a ``get`` per key (memory://)."""
    calls: list[str] = []
    inside: list[str] = []
    for name in ("get", "get_many", "scan"):
        method = getattr(store.backend, name)

        def counted(*args: Any, _method: Any = method, _name: str = name, **kwargs: Any) -> Any:
            if not inside:
                calls.append(_name)
            inside.append(_name)
            try:
                return _method(*args, **kwargs)
            finally:
                inside.pop()

        setattr(store.backend, name, counted)
    return calls


def test_list_and_get_tuple_cost_the_same_round_trips_however_long_the_thread(open_store: Any) -> None:
    """No query per checkpoint (LangGraph's savers do one per listed checkpoint for its writes)."""
    counts = []
    for turns in (12, 36):
        store = open_store()
        saver = StatekeelSaver(store, delta_min_bytes=10**9, segment=8)  # one delta chain the whole way, segmented
        graph = chat_graph(saver)
        config = {"configurable": {"thread_id": f"t{turns}"}}
        for i in range(turns):
            graph.invoke(user_turn(i), config)
        calls = _count_calls(store)
        listed = list(StatekeelSaver(store).list(config, limit=8))
        assert len(listed) == 8 and all(t.checkpoint["channel_values"] for t in listed)
        after_list = len(calls)
        StatekeelSaver(store).get_tuple(config)
        counts.append((after_list, len(calls) - after_list))
    assert counts[0] == counts[1]
