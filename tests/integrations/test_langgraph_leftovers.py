"""Small defects an audit left open in the adapters (session 29), on every backend.

* LangGraph checkpoints were not secret-scanned, although docs/security.md promises the guard
  catches secrets "before anything is persisted": a key in a message was stored as it was. The
  saver now screens what it newly persists (new channel values — for a growing list, the items
  it appends — metadata and pending writes) with the store's guard and mode.
* ``saver.list(limit=-1)`` returned one checkpoint fewer than there were (a negative slice);
  LangGraph's own savers disagree on it (InMemorySaver: none, SqliteSaver: all, PostgresSaver:
  an error), so it is refused.
* ``workers=2**64`` was taken by every adapter (and ``AsyncStore``); ``index={"dims": ...}`` took
  ``2**64``, ``-1`` and ``1.5`` and raised raw ``ValueError``/``TypeError`` for ``"x"``/``None``.
* A search query holding a lone surrogate matched nothing, silently (LangGraph store, ADK memory).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, TypedDict

import pytest
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages

import statekeel
from statekeel.aio import AsyncStore
from statekeel.errors import InvalidInputError, SecretDetectedError
from statekeel.integrations.adk import StatekeelMemoryService, StatekeelSessionService
from statekeel.integrations.langgraph import StatekeelSaver, StatekeelStore
from statekeel.integrations.openai_agents import StatekeelSession

AWS = "AKIAIOSFODNN7EXAMPLE"
CONFIG: dict[str, Any] = {"configurable": {"thread_id": "t"}}


class Chat(TypedDict):
    messages: Annotated[list[Any], add_messages]


def _graph(saver: StatekeelSaver, replies: list[str]) -> Any:
    def agent(state: Chat) -> dict[str, Any]:
        return {"messages": [{"role": "assistant", "content": replies[len(state["messages"]) // 2 % len(replies)]}]}

    g = StateGraph(Chat)
    g.add_node("agent", agent)
    g.add_edge(START, "agent")
    g.add_edge("agent", END)
    return g.compile(checkpointer=saver)


def _said(saver: StatekeelSaver) -> list[str]:
    state = _graph(saver, ["-"]).get_state(CONFIG)
    return [m.content for m in state.values.get("messages", [])]


def _everything_stored(store: statekeel.Store) -> list[Any]:
    """Every checkpoint, its metadata and pending writes, read back by a saver that remembers nothing."""
    saver = StatekeelSaver(store)
    return [(t.checkpoint["channel_values"], t.metadata, t.pending_writes) for t in saver.list(None)]


# -- the secret guard ------------------------------------------------------------------------------------
def test_a_secret_in_a_langgraph_message_is_refused_before_anything_of_it_is_stored(store_url: str) -> None:
    with statekeel.open(store_url) as store:  # secret_guard="refuse", the default
        saver = StatekeelSaver(store)
        _graph(saver, ["fine"]).invoke({"messages": [("user", "hello")]}, CONFIG)
        with pytest.raises(SecretDetectedError, match=r"write to 'messages'\[0\]\['content'\]: .*an aws access key"):
            _graph(saver, [f"your key is {AWS}"]).invoke({"messages": [("user", "and my key?")]}, CONFIG)
        assert _said(saver) == _said(StatekeelSaver(store)) == ["hello", "fine", "and my key?"]
        assert AWS not in repr(_everything_stored(store))


def test_a_secret_in_the_users_input_or_in_checkpoint_metadata_is_refused(store: statekeel.Store) -> None:
    saver = StatekeelSaver(store)
    with pytest.raises(SecretDetectedError, match="an aws access key"):
        _graph(saver, ["fine"]).invoke({"messages": [("user", f"use {AWS}")]}, CONFIG)
    with pytest.raises(SecretDetectedError, match=r"checkpoint metadata\['api_key'\]"):
        _graph(saver, ["fine"]).invoke({"messages": [("user", "hi")]}, {**CONFIG, "metadata": {"api_key": "pw-1"}})
    assert AWS not in repr(_everything_stored(store)) and "pw-1" not in repr(_everything_stored(store))


def test_redact_mode_stores_the_masked_message_and_every_read_gives_that_back(store_url: str) -> None:
    masked = "your key is [REDACTED:aws_access_key]"
    with statekeel.open(store_url, secret_guard="redact") as store:
        saver = StatekeelSaver(store)
        graph = _graph(saver, ["fine", f"your key is {AWS}"])
        for i in range(4):
            graph.invoke({"messages": [("user", f"turn {i}")]}, CONFIG)
        expected = ["turn 0", "fine", "turn 1", masked, "turn 2", "fine", "turn 3", masked]
        assert _said(saver) == expected  # the saver's own memory of the thread holds the masked copy
        assert AWS not in repr(_everything_stored(store))
    with statekeel.open(store_url, secret_guard="redact") as store:
        assert _said(StatekeelSaver(store)) == expected  # read cold: exactly what was stored
        history = [len(t.checkpoint["channel_values"].get("messages", ())) for t in StatekeelSaver(store).list(CONFIG)]
        assert history == sorted(history, reverse=True) and history[0] == 8


def test_with_the_guard_off_the_message_is_stored_as_it_is(store_url: str) -> None:
    with statekeel.open(store_url, secret_guard="off") as store:
        _graph(StatekeelSaver(store), [f"your key is {AWS}"]).invoke({"messages": [("user", "key?")]}, CONFIG)
        assert _said(StatekeelSaver(store)) == ["key?", f"your key is {AWS}"]


def test_an_old_message_is_not_screened_again_only_what_a_turn_adds(store_url: str) -> None:
    """A secret stored while the guard was off stays readable; new turns are screened, old ones are not
    scanned again (not even when the list is stored in full again: a new delta root)."""
    with statekeel.open(store_url, secret_guard="off") as store:
        _graph(StatekeelSaver(store), [f"key {AWS}"]).invoke({"messages": [("user", "hi")]}, CONFIG)
    with statekeel.open(store_url) as store:
        saver = StatekeelSaver(store, delta_min_bytes=0, chain_share=0.0)  # every version a new full root
        graph = _graph(saver, ["ok"])
        for i in range(3):
            graph.invoke({"messages": [("user", f"more {i}")]}, CONFIG)
        assert _said(saver) == ["hi", f"key {AWS}", "more 0", "ok", "more 1", "ok", "more 2", "ok"]
        with pytest.raises(SecretDetectedError):
            graph.invoke({"messages": [("user", f"new {AWS}")]}, CONFIG)


# -- list(limit=) -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("limit", [-1, -2, 2**63, 1.0, True])
def test_list_refuses_a_negative_or_non_int_limit(saver: StatekeelSaver, limit: Any) -> None:
    graph = _graph(saver, ["ok"])
    for i in range(3):
        graph.invoke({"messages": [("user", str(i))]}, CONFIG)
    with pytest.raises(InvalidInputError, match="limit must be None"):
        list(saver.list(CONFIG, limit=limit))

    async def alist() -> list[Any]:
        return [t async for t in saver.alist(CONFIG, limit=limit)]

    with pytest.raises(InvalidInputError, match="limit must be None"):
        asyncio.run(alist())
    assert len(list(saver.list(CONFIG, limit=0))) == 0 and len(list(saver.list(CONFIG, limit=2))) == 2
    assert len(list(saver.list(CONFIG))) == 3 * 3


# -- constructor ints --------------------------------------------------------------------------------------
ADAPTERS = {
    "StatekeelSaver": lambda store, w: StatekeelSaver(store, workers=w),
    "StatekeelStore": lambda store, w: StatekeelStore(store, workers=w),
    "StatekeelSession": lambda store, w: StatekeelSession("s", store, workers=w),
    "StatekeelSessionService": lambda store, w: StatekeelSessionService(store, workers=w),
    "StatekeelMemoryService": lambda store, w: StatekeelMemoryService(store, workers=w),
    "AsyncStore": lambda store, w: AsyncStore(store, workers=w),
}


@pytest.mark.parametrize("adapter", sorted(ADAPTERS))
@pytest.mark.parametrize("workers", [2**64, 1025, 0], ids=["2**64", "1025", "0"])
def test_absurd_worker_counts_are_refused(adapter: str, workers: int) -> None:
    with statekeel.open("memory://") as store:
        with pytest.raises(InvalidInputError, match="workers must be an int from 1 to 1024"):
            ADAPTERS[adapter](store, workers)
        with pytest.raises(InvalidInputError, match="workers must be an int from 1 to 1024"):
            statekeel.open_async("memory://", workers=workers)


@pytest.mark.parametrize("dims", [2**64, 65_537, 0, -1, 1.5, "x", None, True], ids=repr)
def test_index_dims_must_be_an_embedding_dimension(dims: Any) -> None:
    with statekeel.open("memory://") as store, pytest.raises(InvalidInputError, match="'dims'.* an int from 1 to 65,536"):
        StatekeelStore(store, index={"dims": dims, "embed": lambda texts: [[1.0, 0.0] for _ in texts]})


# -- search queries ------------------------------------------------------------------------------------------
def test_a_search_query_with_a_lone_surrogate_is_refused_by_the_langgraph_store_and_adk_memory(
    store: statekeel.Store,
) -> None:
    lg = StatekeelStore(store, index={"dims": 2, "embed": lambda texts: [[1.0, 0.0] for _ in texts]})
    lg.put(("docs",), "a", {"text": "hello"})
    with pytest.raises(InvalidInputError, match="lone surrogate"):
        lg.search(("docs",), query="\ud800")
    plain = StatekeelStore(store)
    with pytest.raises(InvalidInputError, match="lone surrogate"):
        plain.search(("docs",), query="hi \udfff")
    adk = StatekeelMemoryService(store)
    with pytest.raises(InvalidInputError, match="lone surrogate"):
        asyncio.run(adk.search_memory(app_name="app", user_id="u", query="\ud800"))
    assert [i.key for i in lg.search(("docs",), query="hello")] == ["a"]
    lg.close()
    plain.close()
