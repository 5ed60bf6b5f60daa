"""ADK's ``Runner`` over StatekeelSessionService for several turns with a tool call, offline.

The model is a scripted ``BaseLlm`` subclass (no network): it records the contents of
every request and answers from a script. Each turn uses a fresh service on the same store,
so what the model sees was read back from storage.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

from google.adk.agents.llm_agent import LlmAgent
from google.adk.models.base_llm import BaseLlm
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.adk.runners import Runner
from google.genai import types

import statekeel
from statekeel.integrations.adk import StatekeelMemoryService, StatekeelSessionService


class ScriptedLlm(BaseLlm):
    """Answers each request with the next scripted content and records what it was sent."""

    script: list[types.Content]
    seen: list[list[str]] = []

    async def generate_content_async(
        self, llm_request: LlmRequest, stream: bool = False
    ) -> AsyncGenerator[LlmResponse, None]:
        self.seen.append([_text(c) for c in llm_request.contents])
        yield LlmResponse(content=self.script.pop(0))


def _text(content: types.Content) -> str:
    """One short line per content: role and its text, call or result."""
    out = []
    for part in content.parts or []:
        if part.text:
            out.append(part.text)
        elif part.function_call:
            out.append(f"call {part.function_call.name}({part.function_call.args})")
        elif part.function_response:
            out.append(f"result {part.function_response.response}")
    return f"{content.role}: {' '.join(out)}"


def order_status(order_id: str) -> dict[str, Any]:
    """Look an order up."""
    return {"status": f"order {order_id} ships tomorrow"}


def model_says(text: str) -> types.Content:
    return types.Content(role="model", parts=[types.Part(text=text)])


def test_three_turns_with_a_tool_call_the_model_sees_the_stored_history(store: statekeel.Store) -> None:
    llm = ScriptedLlm(model="scripted", seen=[], script=[
        types.Content(role="model", parts=[types.Part(function_call=types.FunctionCall(
            name="order_status", args={"order_id": "A7"}))]),
        model_says("Your order A7 ships tomorrow."),
        model_says("You're welcome!"),
        model_says("It was A7."),
    ])
    agent = LlmAgent(name="support", model=llm, instruction="Help with orders.", tools=[order_status])

    async def turn(text: str) -> str:
        service = StatekeelSessionService(store)  # fresh: the history comes from the store
        runner = Runner(agent=agent, app_name="shop", session_service=service)
        if await service.get_session(app_name="shop", user_id="ann", session_id="s1") is None:
            await service.create_session(app_name="shop", user_id="ann", session_id="s1")
        final = ""
        message = types.Content(role="user", parts=[types.Part(text=text)])
        async for event in runner.run_async(user_id="ann", session_id="s1", new_message=message):
            if event.content and event.content.parts and event.content.parts[0].text:
                final = event.content.parts[0].text
        await service.close()
        return final

    async def scenario() -> None:
        assert await turn("Where is my order A7?") == "Your order A7 ships tomorrow."
        assert await turn("Thanks") == "You're welcome!"
        assert await turn("Which order was it?") == "It was A7."

    asyncio.run(scenario())
    first = ["user: Where is my order A7?"]
    tool = ["model: call order_status({'order_id': 'A7'})", "user: result {'status': 'order A7 ships tomorrow'}"]
    assert llm.seen[0] == first
    assert llm.seen[1] == [*first, *tool]
    assert llm.seen[2] == [*first, *tool, "model: Your order A7 ships tomorrow.", "user: Thanks"]
    assert llm.seen[3] == [*llm.seen[2], "model: You're welcome!", "user: Which order was it?"]
    assert not llm.script


def test_the_memory_service_finds_what_a_run_said(store: statekeel.Store) -> None:
    async def scenario() -> None:
        service, memory = StatekeelSessionService(store), StatekeelMemoryService(store)
        s = await service.create_session(app_name="shop", user_id="ann", session_id="s1")
        llm = ScriptedLlm(model="scripted", seen=[], script=[model_says("Noted: you prefer express shipping.")])
        runner = Runner(agent=LlmAgent(name="a", model=llm), app_name="shop", session_service=service)
        message = types.Content(role="user", parts=[types.Part(text="I always want express shipping")])
        async for _ in runner.run_async(user_id="ann", session_id=s.id, new_message=message):
            pass
        done = await service.get_session(app_name="shop", user_id="ann", session_id="s1")
        assert done is not None
        await memory.add_session_to_memory(done)
        await memory.add_session_to_memory(done)  # added twice: remembered once
        found = await memory.search_memory(app_name="shop", user_id="ann", query="Express shipping?")
        assert [m.content.parts[0].text for m in found.memories] == [
            "Noted: you prefer express shipping.", "I always want express shipping",
        ]
        assert not (await memory.search_memory(app_name="shop", user_id="bob", query="express")).memories
        assert not (await memory.search_memory(app_name="shop", user_id="ann", query="refund")).memories
        await service.close()
        await memory.close()

    asyncio.run(scenario())
