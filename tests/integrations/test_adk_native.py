"""StatekeelSessionService given an AsyncStore: the per-turn calls on the asyncio driver.

On PostgreSQL and Redis (plain, encrypted, tamper-evident, a tenant's handle) ``create_session``,
``get_session``, ``append_event`` and ``get_user_state`` must not hop to the store's worker
thread; a stale writer, a redelivered event and a restored session go to the sync code there
and get its answers. Every other backend keeps the worker. ADK's own contract tests run with
an AsyncStore too (tests/integrations/test_adk_ported_session_service.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from google.adk.errors import StaleSessionError
from google.adk.errors.session_not_found_error import SessionNotFoundError
from google.adk.events.event import Event
from google.adk.events.event_actions import EventActions
from google.adk.sessions.base_session_service import GetSessionConfig
from google.genai import types

import statekeel
from statekeel import AsyncStore, Encryption, Integrity
from statekeel.integrations.adk import StatekeelSessionService

from .hops import count_worker_calls

NATIVE = ("postgresql", "redis")


def said(text: str, ts: float, delta: dict[str, Any] | None = None) -> Event:
    return Event(author="user", invocation_id="i", timestamp=ts,
                 content=types.Content(role="user", parts=[types.Part(text=text)]),
                 actions=EventActions(state_delta=delta or {}))


def _run(url: str, main: Callable[[AsyncStore, StatekeelSessionService], Awaitable[None]], *,
         tenant: str | None = None, **options: Any) -> None:
    async def go() -> None:
        async with statekeel.open_async(url, **options) as store:
            handle = store if tenant is None else store.tenant(tenant)
            service = StatekeelSessionService(handle)
            await main(handle, service)

    asyncio.run(go())


async def _turns(service: StatekeelSessionService, sid: str, n: int) -> None:
    """A Runner's turns: read the session, append the user's event and the model's (with deltas)."""
    t0 = time.time()
    for i in range(n):
        session = await service.get_session(app_name="shop", user_id="ann", session_id=sid,
                                            config=GetSessionConfig(num_recent_events=20))
        assert session is not None
        await service.append_event(session, said(f"q{i}", t0 + 2 * i))
        await service.append_event(session, said(f"a{i}", t0 + 2 * i + 1,
                                                  {"turn": i, "app:seen": i, "user:last": f"a{i}"}))


@pytest.mark.parametrize("mode", ["plain", "encrypted", "chain", "tenant"])
def test_a_runners_turns_make_no_worker_hop_on_native_drivers(store_url: str, mode: str) -> None:
    """create, get (newest 20 and whole), append with session/app:/user: deltas, user state: on
    PostgreSQL and Redis none of them runs on the worker; the results are the sync service's."""
    options: dict[str, Any] = {}
    if mode == "encrypted":
        options["encryption"] = Encryption(master_key=b"k" * 32)
    if mode == "chain":
        options["integrity"] = Integrity(key=b"c" * 32)

    async def main(store: AsyncStore, service: StatekeelSessionService) -> None:
        await service.create_session(app_name="shop", user_id="ann", session_id="warm")  # keys, pools
        calls = count_worker_calls(store)
        made = await service.create_session(app_name="shop", user_id="ann", session_id="s1",
                                            state={"k": 1, "app:flag": True})
        assert made.state == {"k": 1, "app:flag": True} and made._storage_update_marker == "1"
        await _turns(service, "s1", 5)
        whole = await service.get_session(app_name="shop", user_id="ann", session_id="s1")
        newest = await service.get_session(app_name="shop", user_id="ann", session_id="s1",
                                           config=GetSessionConfig(num_recent_events=3))
        none = await service.get_session(app_name="shop", user_id="ann", session_id="s1",
                                         config=GetSessionConfig(num_recent_events=0))
        mine = await service.get_user_state(app_name="shop", user_id="ann")
        missing = await service.get_session(app_name="shop", user_id="ann", session_id="nobody")
        if store_url.startswith(NATIVE):  # encrypted: only the first lookup of a partition's data key
            fetched = [c for c in calls if "Keyring.fetch" in c]
            assert [c for c in calls if c not in fetched] == [] and len(fetched) == len(set(fetched)) <= 3, calls
        else:
            assert calls, "the other backends keep the worker"
        assert whole is not None and newest is not None and none is not None and missing is None
        texts = [e.content.parts[0].text for e in whole.events]  # type: ignore[union-attr,index]
        assert texts == [x for i in range(5) for x in (f"q{i}", f"a{i}")]
        assert [e.id for e in newest.events] == [e.id for e in whole.events[-3:]] and none.events == []
        assert whole.state == {"k": 1, "turn": 4, "app:flag": True, "app:seen": 4, "user:last": "a4"}
        assert whole._storage_update_marker == "11" and whole.last_update_time == whole.events[-1].timestamp
        assert mine == {"last": "a4"}
        sync = StatekeelSessionService(store.sync)  # the sync service reads the same
        try:
            again = await sync.get_session(app_name="shop", user_id="ann", session_id="s1")
        finally:
            await sync.close()
        assert again is not None and again.model_dump() == whole.model_dump()

    _run(store_url, main, tenant="acme" if mode == "tenant" else None, **options)


def test_states_of_more_than_a_page_are_read_whole(store_url: str) -> None:
    """The session's, ``app:`` and ``user:`` states of over one page each (500 keys): their first
    pages come in one ``scan_many``, the rest after; the session equals the sync service's, and on
    PostgreSQL and Redis no call hops to the worker."""

    async def main(store: AsyncStore, service: StatekeelSessionService) -> None:
        big = {**{f"k{i:04d}": i for i in range(1203)}, **{f"app:a{i:04d}": i for i in range(501)},
               **{f"user:u{i:04d}": -i for i in range(777)}}  # fmt: skip
        await service.create_session(app_name="shop", user_id="ann", session_id="s1", state=big)
        calls = count_worker_calls(store)
        got = await service.get_session(app_name="shop", user_id="ann", session_id="s1")
        assert got is not None and got.state == big
        assert (calls == []) == store_url.startswith(NATIVE), calls
        sync = StatekeelSessionService(store.sync)
        try:
            again = await sync.get_session(app_name="shop", user_id="ann", session_id="s1")
        finally:
            await sync.close()
        assert again is not None and again.model_dump() == got.model_dump()

    _run(store_url, main)


def test_stale_writers_and_redelivered_events_get_the_sync_answers(store_url: str) -> None:
    """A conflict on the native batch writes nothing and goes to the worker: a stale copy gets
    StaleSessionError, an event delivered again is stored once (its version as the first time), an
    append to a session deleted elsewhere (its handle still kept) SessionNotFoundError."""

    async def main(store: AsyncStore, service: StatekeelSessionService) -> None:
        s = await service.create_session(app_name="shop", user_id="ann", session_id="s1")
        copy = await service.get_session(app_name="shop", user_id="ann", session_id="s1")
        assert copy is not None
        event = said("hi", time.time(), {"n": 1})
        await service.append_event(s, event)
        with pytest.raises(StaleSessionError):
            await service.append_event(copy, said("late", time.time(), {"n": 2}))
        fresh = await service.get_session(app_name="shop", user_id="ann", session_id="s1")
        assert fresh is not None and fresh.state == {"n": 1} and len(fresh.events) == 1
        fresh._storage_update_marker = "1"  # as if the first delivery's reply was lost
        await service.append_event(fresh, event)
        assert fresh._storage_update_marker == "2"
        back = await service.get_session(app_name="shop", user_id="ann", session_id="s1")
        assert back is not None and [e.id for e in back.events] == [event.id] and back.state == {"n": 1}
        # deleted by another process while this service keeps the session's handle: refused, nothing written
        await asyncio.to_thread(store.sync.delete_session, "adk/shop/ann/s1")
        with pytest.raises(SessionNotFoundError):
            await service.append_event(back, said("into the void", time.time(), {"n": 3}))
        assert await service.get_session(app_name="shop", user_id="ann", session_id="s1") is None
        assert await store.find_session("adk/shop/ann/s1") is None

    _run(store_url, main)


def test_concurrent_sessions_and_a_restored_one(store_url: str) -> None:
    """Eight conversations at once keep their own events in order; a session restored to a
    checkpoint (hidden ranges) is read by the sync history, on the worker."""

    async def main(store: AsyncStore, service: StatekeelSessionService) -> None:
        ids = [f"c{n}" for n in range(8)]
        for sid in ids:
            await service.create_session(app_name="shop", user_id="ann", session_id=sid)
        await asyncio.gather(*(_turns(service, sid, 4) for sid in ids))
        for sid in ids:
            got = await service.get_session(app_name="shop", user_id="ann", session_id=sid)
            assert got is not None and got.state["turn"] == 3
            assert [e.content.parts[0].text for e in got.events] == [  # type: ignore[union-attr,index]
                x for i in range(4) for x in (f"q{i}", f"a{i}")]
        raw = await store.find_session("adk/shop/ann/c0")
        assert raw is not None
        cp = await store.call(lambda st: st.session("adk/shop/ann/c0").checkpoint("two"))
        await service.append_event((await service.get_session(app_name="shop", user_id="ann", session_id="c0")),
                                   said("after", time.time()))
        await store.call(lambda st: st.session("adk/shop/ann/c0").restore(cp))
        calls = count_worker_calls(store)
        got = await service.get_session(app_name="shop", user_id="ann", session_id="c0")
        assert got is not None and len(got.events) == 8  # "after" hidden by the restore
        if store_url.startswith(NATIVE):
            assert calls, "a restored session's history is read on the worker"

    _run(store_url, main)


def test_a_bad_num_recent_events_gets_the_sync_answer(store_url: str) -> None:
    """``num_recent_events`` below zero (ADK's model refuses it, but ``model_construct`` skips that): refused
    as the sync service refuses it (InvalidInputError for an existing session, None for a missing one) —
    the native read hands it to the sync code."""
    from statekeel.errors import InvalidInputError

    async def main(store: AsyncStore, service: StatekeelSessionService) -> None:
        await service.create_session(app_name="shop", user_id="ann", session_id="s1")
        bad = GetSessionConfig.model_construct(num_recent_events=-1, after_timestamp=None)
        with pytest.raises(InvalidInputError):
            await service.get_session(app_name="shop", user_id="ann", session_id="s1", config=bad)
        assert await service.get_session(app_name="shop", user_id="ann", session_id="none", config=bad) is None

    _run(store_url, main)


async def _every_page(service: StatekeelSessionService) -> list[Any]:
    pages, token = [], None
    while True:
        got = await service.list_sessions_page(app_name="shop", page_size=3, page_token=token)
        pages.append(got)
        token = got.next_page_token
        if token is None:
            return pages


def test_listings_read_on_the_loop_and_list_what_the_sync_service_lists(store_url: str) -> None:
    """``list_sessions`` (all, by update time) and ``list_sessions_page`` (in id order, paged): on
    PostgreSQL and Redis the index scan and every session's, owner's and app's state read at once on
    the loop, no hop; the same sessions, states and tokens as the sync service's."""

    async def main(store: AsyncStore, service: StatekeelSessionService) -> None:
        for n in range(7):
            user = "ann" if n % 2 else "bob"
            await service.create_session(app_name="shop", user_id=user, session_id=f"s{n}",
                                         state={"n": n, f"user:{user}": n, "app:count": n})
        await service.create_session(app_name="other", user_id="ann", session_id="x")
        calls = count_worker_calls(store)
        everyone = await service.list_sessions(app_name="shop")
        anns = await service.list_sessions(app_name="shop", user_id="ann")
        pages = await _every_page(service)
        if store_url.startswith(NATIVE):
            assert calls == [], calls
        sync = StatekeelSessionService(store.sync)
        try:
            assert (await sync.list_sessions(app_name="shop")).model_dump() == everyone.model_dump()
            assert (await sync.list_sessions(app_name="shop", user_id="ann")).model_dump() == anns.model_dump()
            again = await _every_page(sync)
        finally:
            await sync.close()
        assert [p.model_dump() for p in again] == [p.model_dump() for p in pages] and len(pages) == 3
        assert [s.id for s in everyone.sessions] == [f"s{n}" for n in range(7)] and len(anns.sessions) == 3
        assert everyone.sessions[6].state == {"n": 6, "user:bob": 6, "app:count": 6}
        with pytest.raises(statekeel.InvalidInputError):
            await service.list_sessions_page(app_name="shop", page_token="adk/other/ann/x")

    _run(store_url, main)


def test_a_runner_and_the_memory_service_on_an_async_store(store_url: str) -> None:
    """ADK's own Runner over the service given an AsyncStore, and the memory service given the same
    store: two invocations, the session's events and state as the Runner made them; the memory
    remembers each event once and finds it. On PostgreSQL and Redis none of it hops to the worker."""
    from google.adk.agents.llm_agent import LlmAgent
    from google.adk.runners import Runner

    from statekeel.integrations.adk import StatekeelMemoryService

    from .test_adk_runner import ScriptedLlm, model_says

    async def main(store: AsyncStore, service: StatekeelSessionService) -> None:
        memory = StatekeelMemoryService(store)
        await service.create_session(app_name="shop", user_id="ann", session_id="warm")
        calls = count_worker_calls(store)
        s = await service.create_session(app_name="shop", user_id="ann", session_id="s1", state={"tier": "gold"})
        llm = ScriptedLlm(model="scripted", seen=[], script=[model_says("Noted: express shipping."),
                                                             model_says("Your order ships today.")])
        runner = Runner(agent=LlmAgent(name="a", model=llm), app_name="shop", session_service=service)
        for text in ("I always want express shipping", "When does my order ship?"):
            message = types.Content(role="user", parts=[types.Part(text=text)])
            async for _ in runner.run_async(user_id="ann", session_id=s.id, new_message=message):
                pass
        done = await service.get_session(app_name="shop", user_id="ann", session_id="s1")
        assert done is not None and done.state["tier"] == "gold"
        assert [e.content.parts[0].text for e in done.events if e.content and e.content.parts] == [  # type: ignore[index]
            "I always want express shipping", "Noted: express shipping.", "When does my order ship?",
            "Your order ships today."]
        await asyncio.gather(memory.add_session_to_memory(done), memory.add_session_to_memory(done))  # once
        found = await memory.search_memory(app_name="shop", user_id="ann", query="Express shipping?")
        assert [m.content.parts[0].text for m in found.memories] == [  # type: ignore[index]
            "Noted: express shipping.", "I always want express shipping"]
        if store_url.startswith(NATIVE):
            assert calls == [], calls
        sync = StatekeelMemoryService(store.sync)
        try:
            again = await sync.search_memory(app_name="shop", user_id="ann", query="order")
        finally:
            await sync.close()
        assert [m.content.parts[0].text for m in again.memories] == [  # type: ignore[index]
            "Your order ships today.", "When does my order ship?"]
        await memory.close()

    _run(store_url, main)
