"""ADK's ``search_memory`` on statekeel memory (``StatekeelMemoryService(store, semantic=True)``).

Events remembered from a session are long-term memories of ``("adk", app, user)``; a query
in other words than the event's still finds it (the vector side of hybrid search, the
default embedder), and users stay apart.
"""

from __future__ import annotations

import asyncio

from google.adk.events.event import Event
from google.adk.sessions.session import Session
from google.genai import types

import statekeel
from statekeel.integrations.adk import StatekeelMemoryService


def _session(user: str, texts: list[str]) -> Session:
    events = [Event(id=f"e{i}", author="user", invocation_id="i", timestamp=1_700_000_000 + i,
                    content=types.Content(role="user", parts=[types.Part(text=t)])) for i, t in enumerate(texts)]
    return Session(id="s1", app_name="shop", user_id=user, events=events)


def test_semantic_search_memory_finds_paraphrases(store: statekeel.Store) -> None:
    async def scenario() -> None:
        memory = StatekeelMemoryService(store, semantic=True)
        await memory.add_session_to_memory(_session("ann", ["I always want express shipping",
                                                            "My dog is called Rex", "I live in Lyon"]))
        await memory.add_session_to_memory(_session("bob", ["Bob prefers slow boats"]))
        found = await memory.search_memory(app_name="shop", user_id="ann", query="fast delivery please")
        assert found.memories[0].content.parts[0].text == "I always want express shipping"
        assert {m.id for m in found.memories} <= {"e0", "e1", "e2"}  # never another user's
        found = await memory.search_memory(app_name="shop", user_id="ann", query="dog")
        assert found.memories[0].content.parts[0].text == "My dog is called Rex"
        assert not (await memory.search_memory(app_name="shop", user_id="carl", query="dog")).memories
        await memory.close()

    asyncio.run(scenario())
