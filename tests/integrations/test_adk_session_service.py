"""StatekeelSessionService beyond ADK's own contract, on every backend: listings that read only
their range, damaged events isolated, encryption, the secret guard, tenants and erasure."""

from __future__ import annotations

import asyncio
import threading
import base64
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from google.adk.errors import StaleSessionError
from google.adk.events.event import Event
from google.adk.events.event_actions import EventActions
from google.adk.sessions.base_session_service import GetSessionConfig
from google.genai import types

import statekeel
from statekeel import Encryption
from statekeel.core import layout
from statekeel.errors import CorruptionError, InvalidInputError, SecretDetectedError
from statekeel.integrations.adk import StatekeelSessionService
from statekeel.protocol import Rewrite

T = TypeVar("T")


def run(make: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await make()

    return asyncio.run(main())


def said(text: str, ts: float | None = None) -> Event:
    extra: dict[str, Any] = {} if ts is None else {"timestamp": ts}
    return Event(author="user", invocation_id="i", content=types.Content(role="user", parts=[types.Part(text=text)]),
                 **extra)


def test_list_sessions_reads_only_the_users_range_of_the_index(store: statekeel.Store) -> None:
    service = StatekeelSessionService(store)
    pages: list[Any] = []
    backend = store.backend
    scan = backend.scan

    def counted(prefix: str, **kw: Any) -> Any:  # the real scan, counted when it reads the session index
        page = scan(prefix, **kw)
        if prefix == layout.SESSION_INDEX_PREFIX:
            pages.append(page)
        return page

    async def fill() -> None:
        for i in range(250):  # other users and other apps, before and after ann's range
            await service.create_session(app_name="shop", user_id=f"u{i:03d}", session_id="s")
            await service.create_session(app_name="zoo", user_id="ann", session_id=f"z{i}")
        for sid in ("c", "a", "b"):
            await service.create_session(app_name="shop", user_id="ann", session_id=sid)

    run(fill)
    store.session("not-adk")  # a plain statekeel session is not an ADK one
    backend.scan = counted  # type: ignore[method-assign]
    found = run(lambda: service.list_sessions(app_name="shop", user_id="ann"))
    assert [s.id for s in found.sessions] == ["c", "a", "b"]  # ADK's order: oldest update first
    assert len(pages) == 1 and len(pages[0]) <= 200  # one page of the index, not all 503 sessions
    everyone = run(lambda: service.list_sessions(app_name="shop"))
    assert len(everyone.sessions) == 253
    run(service.close)


def test_user_and_app_names_with_separators_do_not_mix(store: statekeel.Store) -> None:
    service = StatekeelSessionService(store)

    async def scenario() -> None:
        await service.create_session(app_name="a/b", user_id="c", session_id="d")
        await service.create_session(app_name="a", user_id="b/c", session_id="d")
        assert [s.app_name for s in (await service.list_sessions(app_name="a/b")).sessions] == ["a/b"]
        assert [s.user_id for s in (await service.list_sessions(app_name="a")).sessions] == ["b/c"]
        await service.close()

    run(scenario)


def test_get_session_reads_the_newest_events_and_a_damaged_one_spoils_only_itself(store: statekeel.Store) -> None:
    service = StatekeelSessionService(store)

    async def fill() -> None:
        s = await service.create_session(app_name="shop", user_id="ann", session_id="s1")
        for i in range(5):
            await service.append_event(s, said(f"m{i}", ts=1000.0 + i))
        other = await service.create_session(app_name="shop", user_id="bob", session_id="s2")
        await service.append_event(other, said("bob's"))

    run(fill)
    log = store.find_session("adk/shop/ann/s1")._log  # type: ignore[union-attr]
    first = store.storage.read(log, limit=1)[0]
    store.storage.apply([Rewrite(log, first.seq, b"{garbled", first.codec)])  # beneath the API

    async def check() -> None:
        with pytest.raises(CorruptionError):
            await service.get_session(app_name="shop", user_id="ann", session_id="s1")
        recent = await service.get_session(app_name="shop", user_id="ann", session_id="s1",
                                           config=GetSessionConfig(num_recent_events=2))
        assert recent is not None and [e.content.parts[0].text for e in recent.events] == ["m3", "m4"]
        since = await service.get_session(app_name="shop", user_id="ann", session_id="s1",
                                          config=GetSessionConfig(after_timestamp=1003.0))
        assert since is not None and [e.timestamp for e in since.events] == [1003.0, 1004.0]
        bob = await service.get_session(app_name="shop", user_id="bob", session_id="s2")
        assert bob is not None and len(bob.events) == 1
        await service.close()

    run(check)


def test_a_retried_append_of_the_same_event_is_stored_once(store: statekeel.Store) -> None:
    service = StatekeelSessionService(store)

    async def scenario() -> None:
        s = await service.create_session(app_name="shop", user_id="ann", session_id="s1")
        event = said("hello", ts=2000.0)
        copy = s.model_copy(deep=True)
        await service.append_event(s, event)
        await service.append_event(copy, event.model_copy(deep=True))  # the retry of a lost reply
        got = await service.get_session(app_name="shop", user_id="ann", session_id="s1")
        assert got is not None and len(got.events) == 1
        await service.close()

    run(scenario)


def _setting(value: str, ts: float) -> Event:
    delta = {"app:mode": value, "user:tier": value, "step": value}
    return Event(author="agent", invocation_id="i", timestamp=ts, actions=EventActions(state_delta=delta))


def test_a_redelivered_event_does_not_rewind_app_and_user_state(store: statekeel.Store) -> None:
    """app:/user: deltas are in the event's own batch: a retry that stores nothing writes none of them
    (they were written after the batch, so a redelivered old event set them back)."""
    service = StatekeelSessionService(store)

    async def scenario() -> None:
        s = await service.create_session(app_name="shop", user_id="ann", session_id="s1")
        stale_copy = s.model_copy(deep=True)
        first = _setting("one", 2000.0)
        await service.append_event(s, first)
        await service.append_event(s, _setting("two", 2001.0))
        await service.append_event(stale_copy, first.model_copy(deep=True))  # the retry of a lost reply
        got = await service.get_session(app_name="shop", user_id="ann", session_id="s1")
        assert got is not None and len(got.events) == 2
        assert (got.state["app:mode"], got.state["user:tier"], got.state["step"]) == ("two", "two", "two")
        await service.close()

    run(scenario)


def test_a_stale_writer_changes_no_app_or_user_state(store: statekeel.Store) -> None:
    service = StatekeelSessionService(store)

    async def scenario() -> None:
        s = await service.create_session(app_name="shop", user_id="ann", session_id="s1")
        stale_copy = s.model_copy(deep=True)
        await service.append_event(s, _setting("one", 2000.0))
        with pytest.raises(StaleSessionError):
            await service.append_event(stale_copy, _setting("stale", 2001.0))
        got = await service.get_session(app_name="shop", user_id="ann", session_id="s1")
        assert got is not None and (got.state["app:mode"], got.state["user:tier"]) == ("one", "one")
        await service.close()

    run(scenario)


def test_events_and_state_are_encrypted_at_rest(store_url: str) -> None:
    key = base64.b64encode(b"A" * 32).decode()
    with statekeel.open(store_url, encryption=Encryption(master_key=key)) as store:
        service = StatekeelSessionService(store)

        async def scenario() -> None:
            s = await service.create_session(app_name="shop", user_id="ann", session_id="s1",
                                             state={"address": "12 PLAINTEXT Road", "app:motd": "PLAINTEXT too"})
            await service.append_event(s, said("my PLAINTEXT card ends 4242"))
            got = await service.get_session(app_name="shop", user_id="ann", session_id="s1")
            assert got is not None and got.state["address"] == "12 PLAINTEXT Road"
            await service.close()

        run(scenario)
        raw = [r.data for r in store.storage.scan("")]
        raw += [e.data for info in store.storage.scan_logs("") for e in store.storage.read(info.log)]
        assert raw and not any(b"PLAINTEXT" in d for d in raw)


def test_the_secret_guard_refuses_a_credential_and_stores_nothing(store: statekeel.Store) -> None:
    service = StatekeelSessionService(store)

    async def scenario() -> None:
        s = await service.create_session(app_name="shop", user_id="ann", session_id="s1")
        leak = Event(author="user", invocation_id="i", actions=EventActions(state_delta={"db_password": "hunter2"}))
        with pytest.raises(SecretDetectedError):
            await service.append_event(s.model_copy(deep=True), leak)
        got = await service.get_session(app_name="shop", user_id="ann", session_id="s1")
        assert got is not None and got.events == [] and "db_password" not in got.state
        await service.close()

    run(scenario)


def test_a_tenant_handle_sees_only_its_tenants_sessions(store: statekeel.Store) -> None:
    acme, globex = StatekeelSessionService(store.tenant("acme")), StatekeelSessionService(store.tenant("globex"))

    async def scenario() -> None:
        await acme.create_session(app_name="shop", user_id="ann", session_id="s1", state={"k": "acme"})
        assert await globex.get_session(app_name="shop", user_id="ann", session_id="s1") is None
        assert (await globex.list_sessions(app_name="shop")).sessions == []
        await globex.create_session(app_name="shop", user_id="ann", session_id="s1", state={"k": "globex"})
        got = await acme.get_session(app_name="shop", user_id="ann", session_id="s1")
        assert got is not None and got.state == {"k": "acme"}
        await acme.close()
        await globex.close()

    run(scenario)


def test_erasing_a_user_erases_their_adk_sessions(store: statekeel.Store) -> None:
    service = StatekeelSessionService(store)
    run(lambda: service.create_session(app_name="shop", user_id="ann", session_id="s1", state={"k": 1}))
    run(lambda: service.create_session(app_name="shop", user_id="bob", session_id="s1"))
    store.erase("ann")

    async def check() -> None:
        assert await service.get_session(app_name="shop", user_id="ann", session_id="s1") is None
        assert await service.get_session(app_name="shop", user_id="bob", session_id="s1") is not None
        await service.close()

    run(check)


def test_bad_input_is_refused_with_a_statekeel_error(store: statekeel.Store) -> None:
    with pytest.raises(InvalidInputError, match="from_url"):
        StatekeelSessionService("sqlite:///x.db")  # type: ignore[arg-type]


def test_ids_that_are_not_strings_are_refused_before_anything_is_written(store: statekeel.Store) -> None:
    service = StatekeelSessionService(store)

    async def scenario() -> None:
        with pytest.raises(InvalidInputError, match="session_id must be a str"):
            await service.create_session(app_name="shop", user_id="ann", session_id=42)  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError, match="app_name or user_id"):
            await service.get_session(app_name="shop", user_id=7, session_id="s")  # type: ignore[arg-type]
        assert (await service.list_sessions(app_name="shop")).sessions == []
        await service.close()

    run(scenario)
    assert list(store.sessions()) == []


def test_list_sessions_page_walks_the_range_in_pages_of_the_size_asked(store: statekeel.Store) -> None:
    service = StatekeelSessionService(store)

    async def scenario() -> None:
        for i in range(7):
            await service.create_session(app_name="shop", user_id=f"u{i % 2}", session_id=f"s{i}")
        await service.create_session(app_name="shopping", user_id="u0", session_id="other-app")
        seen, token, pages = [], None, 0
        while True:
            page = await service.list_sessions_page(app_name="shop", page_size=3, page_token=token)
            assert len(page.sessions) <= 3 and all(s.events == [] for s in page.sessions)
            seen += [(s.user_id, s.id) for s in page.sessions]
            pages, token = pages + 1, page.next_page_token
            if token is None:
                break
        assert seen == sorted((f"u{i % 2}", f"s{i}") for i in range(7)) and pages == 3
        mine = await service.list_sessions_page(app_name="shop", user_id="u1", page_size=10)
        assert [s.id for s in mine.sessions] == ["s1", "s3", "s5"] and mine.next_page_token is None
        with pytest.raises(InvalidInputError):
            await service.list_sessions_page(app_name="shop", page_token="adk/elsewhere/")
        with pytest.raises(InvalidInputError):
            await service.list_sessions_page(app_name="shop", page_size=0)
        await service.close()

    run(scenario)


def test_a_page_reads_the_index_and_states_only_at_once_on_servers(store: statekeel.Store, backend_name: str) -> None:
    """list_sessions_page reads no session records or log bounds (ADK shows neither), and on
    backends where every read is a round trip it reads the states on several threads."""
    service = StatekeelSessionService(store)

    async def fill() -> None:
        for i in range(40):
            await service.create_session(app_name="shop", user_id=f"u{i % 10}", session_id=f"s{i:02d}",
                                         state={"n": i, "user:seen": True, "app:name": "shop"})

    run(fill)
    backend = store.backend
    calls: list[tuple[str, str]] = []
    real = {name: getattr(backend, name) for name in ("scan", "get_many", "log_info_many")}

    def counted(name: str) -> Any:
        def call(*args: Any, **kw: Any) -> Any:  # the real method, noted with the thread it ran on
            calls.append((name, threading.current_thread().name))
            return real[name](*args, **kw)

        return call

    for name in real:
        setattr(backend, name, counted(name))
    page = run(lambda: service.list_sessions_page(app_name="shop", page_size=25))
    assert [(s.user_id, s.id) for s in page.sessions] == sorted((f"u{i % 10}", f"s{i:02d}") for i in range(40))[:25]
    assert all(s.state["n"] == int(s.id[1:]) and s.state["user:seen"] and s.state["app:name"] == "shop"
               for s in page.sessions)
    assert {name for name, _ in calls} == {"scan"}  # the index, then states: no get_many, no log bounds
    threads = {thread for _, thread in calls}
    assert (len(threads) > 1) == (backend_name in ("postgres", "redis"))
    run(service.close)
