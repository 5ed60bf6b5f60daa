"""``Runner.run(agent, input, session=StatekeelSession)`` for several turns with a tool call,
offline: the SDK's own ScriptedModel (agents.testing) answers, and records what it was sent.

Each turn the model must see the whole conversation so far — read back from the store,
not from memory: every turn uses a fresh StatekeelSession object.
"""

from __future__ import annotations

import asyncio
from typing import Any

from agents import Agent, Runner, function_tool, set_tracing_disabled
from agents.testing import ScriptedModel, assistant_message, function_call

import statekeel
from statekeel.integrations.openai_agents import StatekeelSession

set_tracing_disabled(True)  # offline: no trace export is attempted


@function_tool
def order_status(order_id: str) -> str:
    """Look an order up."""
    return f"order {order_id} ships tomorrow"


def _texts(items: Any) -> list[str]:
    """What the model was sent, as one short string per item (role/type and text)."""
    out = []
    for item in items:
        kind = item.get("type") or "message"
        if kind == "function_call":
            out.append(f"call {item['name']}({item['arguments']})")
        elif kind == "function_call_output":
            out.append(f"result {item['output']}")
        else:
            content = item["content"]
            text = content if isinstance(content, str) else "".join(c.get("text", "") for c in content)
            out.append(f"{item['role']}: {text}")
    return out


def test_three_turns_with_a_tool_call_the_model_sees_the_stored_transcript(store: statekeel.Store) -> None:
    model = ScriptedModel([
        [function_call("order_status", {"order_id": "A7"}, call_id="call_1")],
        [assistant_message("Your order A7 ships tomorrow.", item_id="msg_1")],
        [assistant_message("You're welcome!", item_id="msg_2")],
        [assistant_message("It was A7.", item_id="msg_3")],
    ])
    agent = Agent(name="support", instructions="Help with orders.", model=model, tools=[order_status])

    async def turn(text: str) -> str:
        session = StatekeelSession("support-1", store)  # a fresh object: history comes from the store
        try:
            result = await Runner.run(agent, text, session=session)
            return str(result.final_output)
        finally:
            session.close()

    async def scenario() -> None:
        assert await turn("Where is my order A7?") == "Your order A7 ships tomorrow."
        assert await turn("Thanks") == "You're welcome!"
        assert await turn("Which order was it?") == "It was A7."

    asyncio.run(scenario())
    seen = [_texts(call.input) for call in model.calls]
    turn1 = ["user: Where is my order A7?"]
    tool = ['call order_status({"order_id":"A7"})', "result order A7 ships tomorrow"]
    assert seen[0] == turn1
    assert seen[1] == [*turn1, *tool]
    assert seen[2] == [*turn1, *tool, "assistant: Your order A7 ships tomorrow.", "user: Thanks"]
    assert seen[3] == [*seen[2], "assistant: You're welcome!", "user: Which order was it?"]
    model.assert_complete()
    stored = _texts(store.session("support-1").history())
    assert stored == [*seen[3], "assistant: It was A7."]


def test_the_runner_routes_each_run_to_the_tenant_its_context_names(store: statekeel.Store) -> None:
    model = ScriptedModel([
        [assistant_message("hello acme", item_id="msg_a")],
        [assistant_message("hello globex", item_id="msg_g")],
    ])
    agent = Agent(name="support", model=model)
    session = StatekeelSession("chat", store, tenant_of=lambda w: w.context["tenant"])

    async def scenario() -> None:
        await Runner.run(agent, "I am acme", session=session, context={"tenant": "acme"})
        await Runner.run(agent, "I am globex", session=session, context={"tenant": "globex"})
        session.close()

    asyncio.run(scenario())
    assert _texts(model.calls[1].input) == ["user: I am globex"]  # acme's turn is not in globex's history
    assert _texts(store.tenant("acme").session("chat").history()) == ["user: I am acme", "assistant: hello acme"]
    assert store.find_session("chat") is None
