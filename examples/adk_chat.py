"""A Google ADK agent whose sessions, state and memory live in statekeel; each turn is a process.

    python examples/adk_chat.py --url sqlite:///adk.db say "My order is A7"
    python examples/adk_chat.py --url sqlite:///adk.db say "Which order was it?"
    python examples/adk_chat.py --url sqlite:///adk.db sessions
    python examples/adk_chat.py --url sqlite:///adk.db recall "order"

The model is a small ``BaseLlm`` that answers from the conversation ADK's Runner read back
from the store (offline, no API key): on a question it calls the ``order_status`` tool with
the last order id it finds. ``user:`` state counts the user's turns across sessions.
"""

from __future__ import annotations

import argparse
import asyncio
import re
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

APP, USER, SESSION = "shop", "ann", "chat-1"


def order_status(order_id: str) -> dict[str, Any]:
    """Look an order up."""
    return {"status": f"order {order_id} ships tomorrow"}


class OfflineLlm(BaseLlm):
    """Answers from the request's contents: the history as stored."""

    async def generate_content_async(
        self, llm_request: LlmRequest, stream: bool = False
    ) -> AsyncGenerator[LlmResponse, None]:
        last = llm_request.contents[-1].parts[-1]
        text = " ".join(p.text or "" for c in llm_request.contents for p in c.parts or [])
        orders = re.findall(r"\b[A-Z]\d+\b", text)
        if last.function_response:
            part = types.Part(text=f"Status: {last.function_response.response['status']}.")
        elif last.text and "?" in last.text and orders:
            part = types.Part(function_call=types.FunctionCall(name="order_status", args={"order_id": orders[-1]}))
        else:
            part = types.Part(text=f"Noted ({len(llm_request.contents)} messages so far).")
        yield LlmResponse(content=types.Content(role="model", parts=[part]))


async def say(service: StatekeelSessionService, text: str) -> str:
    session = await service.get_session(app_name=APP, user_id=USER, session_id=SESSION)
    if session is None:
        session = await service.create_session(app_name=APP, user_id=USER, session_id=SESSION)
    agent = LlmAgent(name="support", model=OfflineLlm(model="offline"), tools=[order_status])
    runner = Runner(agent=agent, app_name=APP, session_service=service)
    turns = session.state.get("user:turns", 0) + 1
    message = types.Content(role="user", parts=[types.Part(text=text)])
    answer = ""
    async for event in runner.run_async(user_id=USER, session_id=SESSION, new_message=message,
                                        state_delta={"user:turns": turns}):
        if event.content and event.content.parts and event.content.parts[0].text:
            answer = event.content.parts[0].text
    return f"{answer} (turn {turns})"


async def command(store: statekeel.Store, args: argparse.Namespace) -> None:
    service, memory = StatekeelSessionService(store), StatekeelMemoryService(store)
    try:
        if args.command == "say":
            print(await say(service, args.text))
            done = await service.get_session(app_name=APP, user_id=USER, session_id=SESSION)
            assert done is not None
            await memory.add_session_to_memory(done)
        elif args.command == "sessions":
            for s in (await service.list_sessions(app_name=APP, user_id=USER)).sessions:
                print(s.id, s.state)
        else:
            found = await memory.search_memory(app_name=APP, user_id=USER, query=args.query)
            for m in found.memories:
                print(m.author, ":", m.content.parts[0].text)
    finally:
        await service.close()
        await memory.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="sqlite:///adk.db")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("say").add_argument("text")
    sub.add_parser("sessions")
    sub.add_parser("recall").add_argument("query")
    args = parser.parse_args()
    with statekeel.open(args.url) as store:
        asyncio.run(command(store, args))


if __name__ == "__main__":
    main()
