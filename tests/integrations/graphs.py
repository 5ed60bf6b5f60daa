"""Small LangGraph graphs the integration tests and the benchmark share (deterministic ids)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, TypedDict

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langgraph.channels import DeltaChannel
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages


class Chat(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    turns: int


def reply(state: Chat) -> Chat:
    n = len(state["messages"])
    return {"messages": [AIMessage(content=f"answer {n} " + "a" * 800, id=f"ai-{n}")],
            "turns": state.get("turns", 0) + 1}  # fmt: skip


def chat_graph(saver: BaseCheckpointSaver[Any]) -> Any:
    """START -> reply -> END, messages with add_messages: the reference chat turn."""
    builder = StateGraph(Chat)
    builder.add_node("reply", reply)
    builder.add_edge(START, "reply")
    builder.add_edge("reply", END)
    return builder.compile(checkpointer=saver)


def user_turn(i: int) -> Chat:
    return {"messages": [HumanMessage(content=f"question {i} " + "u" * 200, id=f"user-{i}")]}


def _extend(state: Any, writes: Sequence[Any]) -> list[Any]:
    out = list(state or [])
    for w in writes:
        out.extend(w)
    return out


class Items(TypedDict, total=False):
    items: Annotated[list[int], DeltaChannel(_extend, snapshot_frequency=3)]


def delta_graph(saver: BaseCheckpointSaver[Any]) -> Any:
    """A graph whose state is LangGraph's own DeltaChannel (writes replayed from history)."""
    builder = StateGraph(Items)
    builder.add_node("grow", lambda s: {"items": [len(s.get("items") or [])]})
    builder.add_edge(START, "grow")
    builder.add_edge("grow", END)
    return builder.compile(checkpointer=saver)


def history(graph: Any, config: dict[str, Any]) -> list[tuple[Any, ...]]:
    """What a user sees of a thread's history: values, next nodes, step and source per checkpoint."""
    return [(s.values, s.next, s.metadata.get("step"), s.metadata.get("source"))
            for s in graph.get_state_history(config)]  # fmt: skip


def approval_graph(saver: BaseCheckpointSaver[Any]) -> Any:
    """chat -> review, where review waits at ``interrupt()`` for a person's verdict."""
    from langgraph.types import interrupt

    def review(state: Chat) -> Chat:
        verdict = interrupt({"draft": state["messages"][-1].content})
        return {"turns": 1 if verdict == "yes" else 0}

    builder = StateGraph(Chat)
    builder.add_node("reply", reply)
    builder.add_node("review", review)
    builder.add_edge(START, "reply")
    builder.add_edge("reply", "review")
    builder.add_edge("review", END)
    return builder.compile(checkpointer=saver)
