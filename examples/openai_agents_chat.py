"""An OpenAI Agents SDK chat whose history lives in statekeel; each turn is a separate process.

    python examples/openai_agents_chat.py --url sqlite:///chat.db say "My order is A7"
    python examples/openai_agents_chat.py --url sqlite:///chat.db say "Which order was it?"
    python examples/openai_agents_chat.py --url sqlite:///chat.db history

The agent has a tool (``order_status``); the model is the SDK's ScriptedModel, so it runs
offline: on a question it calls the tool with the order id it finds in the conversation
the Runner read back from the store. Any statekeel URL works (sqlite, postgresql, redis,
file, memory).
"""

from __future__ import annotations

import argparse
import asyncio
import re
from typing import Any

from agents import Agent, Runner, function_tool, set_tracing_disabled
from agents.testing import ModelStep, ScriptedModel, assistant_message, function_call

import statekeel
from statekeel.integrations.openai_agents import StatekeelSession

SESSION = "support-chat"


@function_tool
def order_status(order_id: str) -> str:
    """Look an order up."""
    return f"order {order_id} ships tomorrow"


def _texts(items: list[Any]) -> str:
    return " ".join(str(i.get("content", "")) + str(i.get("output", "")) for i in items)


def _step(call: Any) -> Any:
    """Answer from what the model was sent: the whole stored conversation."""
    seen = _texts(call.input)
    if call.input[-1].get("type") == "function_call_output":
        return [assistant_message(f"Status: {call.input[-1]['output']}.", item_id=f"msg_{len(call.input)}")]
    orders = re.findall(r"\b[A-Z]\d+\b", seen)
    if "?" in str(call.input[-1].get("content")) and orders:
        return [function_call("order_status", {"order_id": orders[-1]}, call_id=f"call_{len(call.input)}")]
    return [assistant_message(f"Noted ({len(call.input)} items so far).", item_id=f"msg_{len(call.input)}")]


async def say(store: statekeel.Store, text: str) -> str:
    model = ScriptedModel([ModelStep.respond(_step), ModelStep.respond(_step)])
    agent = Agent(name="support", instructions="Help with orders.", model=model, tools=[order_status])
    session = StatekeelSession(SESSION, store)
    try:
        result = await Runner.run(agent, text, session=session)
    finally:
        session.close()
    return str(result.final_output)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="sqlite:///chat.db")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("say").add_argument("text")
    sub.add_parser("history")
    args = parser.parse_args()
    set_tracing_disabled(True)
    with statekeel.open(args.url) as store:
        if args.command == "say":
            print(asyncio.run(say(store, args.text)))
        else:
            for item in store.session(SESSION).history():
                kind = item.get("type") or item.get("role")
                print(kind, ":", item.get("content") or item.get("arguments") or item.get("output"))


if __name__ == "__main__":
    main()
