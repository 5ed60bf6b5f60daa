"""A LangGraph chat whose state lives in statekeel: human approval, time travel and a fork.

    python examples/langgraph_chat.py --url sqlite:///chat.db ask "What is statekeel?"
    python examples/langgraph_chat.py --url sqlite:///chat.db approve      # later, in another process
    python examples/langgraph_chat.py --url sqlite:///chat.db history
    python examples/langgraph_chat.py --url sqlite:///chat.db fork "Ask something else instead"

The graph: ``chat`` (a chat model; a fake one from langchain_core here, so it runs
offline) drafts an answer, ``review`` stops at ``interrupt()`` until a person approves
it. Each command is a separate process: the thread's checkpoints are in the store
given by ``--url`` (any statekeel URL: sqlite, postgresql, redis, file, memory).
"""

from __future__ import annotations

import argparse
from typing import Annotated, Any, TypedDict

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import Command, interrupt

from statekeel.integrations.langgraph import StatekeelSaver

THREAD = {"configurable": {"thread_id": "support-chat"}}


class Chat(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    approved: bool


def build(saver: StatekeelSaver) -> Any:
    model = GenericFakeChatModel(messages=iter([AIMessage(content=f"Draft answer #{i}") for i in range(1, 100)]))

    def chat(state: Chat) -> Chat:
        return {"messages": [model.invoke(state["messages"])], "approved": False}

    def review(state: Chat) -> Chat:
        verdict = interrupt({"draft": state["messages"][-1].content})  # stops here until resumed
        return {"approved": verdict == "yes"}

    builder = StateGraph(Chat)
    builder.add_node("chat", chat)
    builder.add_node("review", review)
    builder.add_edge(START, "chat")
    builder.add_edge("chat", "review")
    builder.add_edge("review", END)
    return builder.compile(checkpointer=saver)


def show(graph: Any, config: dict[str, Any]) -> None:
    state = graph.get_state(config)
    for m in state.values.get("messages", []):
        print(f"  {m.type}: {m.content}")
    if state.next:
        print(f"waiting at {state.next[0]}: {state.tasks[0].interrupts[0].value}")
    else:
        print(f"approved: {state.values.get('approved')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="sqlite:///langgraph_chat.db")
    parser.add_argument("command", choices=["ask", "approve", "reject", "history", "fork"])
    parser.add_argument("text", nargs="?", default="")
    args = parser.parse_args()
    with StatekeelSaver.from_url(args.url) as saver:
        graph = build(saver)
        if args.command == "ask":
            graph.invoke({"messages": [HumanMessage(args.text)]}, THREAD)
            show(graph, THREAD)
        elif args.command in ("approve", "reject"):
            graph.invoke(Command(resume="yes" if args.command == "approve" else "no"), THREAD)
            show(graph, THREAD)
        elif args.command == "history":
            for snap in graph.get_state_history(THREAD):  # newest first: every checkpoint is restorable
                print(f"step {snap.metadata['step']:>2}  {len(snap.values.get('messages', []))} messages  next={snap.next}")
        else:  # time travel: go back to before the last question and ask another one instead
            questions = [s for s in graph.get_state_history(THREAD) if s.next == ("chat",)]
            before_last = questions[0].parent_config
            graph.invoke({"messages": [HumanMessage(args.text)]}, before_last)
            print(f"forked from checkpoint {before_last['configurable']['checkpoint_id']}")
            show(graph, THREAD)


if __name__ == "__main__":
    main()
