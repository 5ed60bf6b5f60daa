"""Bad input through the three framework adapters (session 28 audit), on every backend.

Each case was a raw exception, a value silently coerced or stored, or a call that wrote part
of its data before failing; now a typed error (LangGraph's own ``InvalidNamespaceError`` for a
namespace, statekeel's otherwise) and the store as it was.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from google.adk.events.event import Event
from google.adk.events.event_actions import EventActions
from google.genai import types
from langgraph.store.base import (
    InvalidNamespaceError,
    ListNamespacesOp,
    PutOp,
    SearchOp,
)

import statekeel
from statekeel.errors import InvalidInputError, SerializationError
from statekeel.integrations.adk import StatekeelSessionService
from statekeel.integrations.langgraph import StatekeelSaver, StatekeelStore
from statekeel.integrations.openai_agents import StatekeelSession
from statekeel.protocol import Backend

T = TypeVar("T")
HUGE = 10**5000  # no str, no float


def run(make: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await make()

    return asyncio.run(main())


def dump(backend: Backend) -> dict[str, Any]:
    out: dict[str, Any] = {r.key: (r.data, r.version, r.expires_at) for r in backend.scan("", limit=10_000)}
    for info in backend.scan_logs("", limit=10_000):
        out["log " + info.log] = [(e.seq, e.data) for e in backend.read(info.log, start=1, limit=10_000)]
    return out


async def adump(backend: Backend) -> dict[str, Any]:
    """:func:`dump` off the event loop (the loop guard refuses blocking calls on it)."""
    return await asyncio.to_thread(dump, backend)


# -- Google ADK ----------------------------------------------------------------------------------
def said(text: str) -> Event:
    return Event(author="user", invocation_id="i", content=types.Content(role="user", parts=[types.Part(text=text)]))


def test_an_event_with_a_bad_timestamp_is_refused_and_the_session_stays_readable(store: statekeel.Store) -> None:
    """Before: the event was stored, and every later get_session raised pydantic's ValidationError."""
    service = StatekeelSessionService(store)

    async def scenario() -> None:
        session = await service.create_session(app_name="shop", user_id="ann", session_id="s1")
        await service.append_event(session, said("hello"))
        before = await adump(store.backend)
        for timestamp in ("soon", None, b"1", float("nan"), math.inf, -1e300, 10**400, True, {1}):
            bad = said("later").model_copy(update={"timestamp": timestamp})  # model_copy skips validation
            with pytest.raises(InvalidInputError, match="timestamp"):
                await service.append_event(session, bad)
        assert await adump(store.backend) == before
        again = await service.get_session(app_name="shop", user_id="ann", session_id="s1")
        assert again is not None
        assert [e.content.parts[0].text for e in again.events] == ["hello"]  # type: ignore[union-attr,index]
        await service.close()

    run(scenario)


def test_create_session_with_state_it_cannot_store_creates_nothing(store: statekeel.Store) -> None:
    """Before: the session was created (opening it writes) before its state was refused, or a raw
    AttributeError / UnicodeEncodeError came out of ADK's state helper."""
    service = StatekeelSessionService(store)
    states: list[Any] = [{"k": "\ud800"}, {"app:k": "\ud800"}, {"user:k": HUGE}, {"": 1}, {"x" * 2000: 1},
                         {"\ud800": 1}, {1: "one"}, "not a dict", 5]

    async def scenario() -> None:
        for state in states:
            with pytest.raises(InvalidInputError):
                await service.create_session(app_name="shop", user_id="ann", session_id="s1", state=state)
            assert await service.get_session(app_name="shop", user_id="ann", session_id="s1") is None
        await service.close()

    run(scenario)
    assert dump(store.backend) == {}


def test_app_and_user_ids_that_cannot_be_stored_are_refused(store: statekeel.Store) -> None:
    """Before: a raw UnicodeEncodeError (percent-quoting a lone surrogate) or ValueError (repr of the int)."""
    service = StatekeelSessionService(store)

    async def scenario() -> None:
        for ids in ({"app_name": "\ud800"}, {"user_id": "a\udfffb"}, {"app_name": HUGE}):
            names = {"app_name": "shop", "user_id": "ann", **ids}
            with pytest.raises(InvalidInputError):
                await service.create_session(**names)
            with pytest.raises(InvalidInputError):
                await service.get_session(**names, session_id="s1")
            with pytest.raises(InvalidInputError):
                await service.list_sessions(**names)
        with pytest.raises(InvalidInputError):
            await service.list_sessions_page(app_name="shop", page_token=HUGE)  # type: ignore[arg-type]
        await service.close()

    run(scenario)
    assert dump(store.backend) == {}


def test_an_event_holding_a_lone_surrogate_is_refused_and_writes_nothing(store: statekeel.Store) -> None:
    """Before: pydantic's PydanticSerializationError or a UnicodeEncodeError escaped append_event."""
    service = StatekeelSessionService(store)

    async def scenario() -> None:
        session = await service.create_session(app_name="shop", user_id="ann", session_id="s1")
        before = await adump(store.backend)
        for bad in (said("a\ud800b"), Event(author="user", invocation_id="i", custom_metadata={"m": "\ud800"}),
                    Event(author="user", invocation_id="i", actions=EventActions(state_delta={"k": "\ud800"})),
                    Event(author="user", invocation_id="i", actions=EventActions(state_delta={"\ud800": 1}))):
            with pytest.raises(InvalidInputError):  # SerializationError, or the key refused as a name
                await service.append_event(session, bad)
        assert await adump(store.backend) == before
        await service.append_event(session, said("fine"))
        await service.close()

    run(scenario)


# -- LangGraph store -----------------------------------------------------------------------------
def test_a_store_item_ttl_must_be_a_positive_number_of_minutes(store: statekeel.Store) -> None:
    """Before: NaN, infinity, 0 and negatives were accepted and turned into the record's expiry."""
    memory = StatekeelStore(store)
    for ttl in (float("nan"), math.inf, -1.0, 0, 1e300, True):
        with pytest.raises(InvalidInputError, match="ttl"):
            memory.batch([PutOp(("docs",), "k", {"v": 1}, ttl=ttl)])
    assert dump(store.backend) == {}
    memory.put(("docs",), "k", {"v": 1}, ttl=1.5)
    assert memory.get(("docs",), "k") is not None


WRONG_OPS: list[Any] = [  # typed wrong on purpose
    PutOp(("docs",), None, {"v": 1}), PutOp(("docs",), 7, {"v": 1}), PutOp(("docs",), HUGE, {"v": 1}),
    PutOp(("docs",), "a\ud800", {"v": 1}), PutOp(("docs",), "k", "text"), PutOp(("docs",), "k", [1, 2]),
    SearchOp(("docs",), limit="10"), SearchOp(("docs",), offset=None), SearchOp(("docs",), limit=-1),
    SearchOp(("docs",), filter="tag"), ListNamespacesOp(limit=1.5), ListNamespacesOp(offset="1"),
    ListNamespacesOp(max_depth="2"),
]


def test_store_ops_of_the_wrong_type_are_refused_not_coerced(store: statekeel.Store) -> None:
    """Before: a key None was stored as 'None', a str value as {}, and the reads raised raw TypeErrors."""
    memory = StatekeelStore(store)
    memory.put(("docs",), "a", {"v": 1})
    before = dump(store.backend)
    for op in WRONG_OPS:
        with pytest.raises(InvalidInputError):
            memory.batch([op])
    assert dump(store.backend) == before


def test_a_namespace_that_is_not_a_tuple_of_labels_is_refused(store: statekeel.Store) -> None:
    """Before: a str namespace was split into one label per character."""
    memory = StatekeelStore(store)
    for namespace in ("docs", ("docs", "a\ud800")):
        with pytest.raises(InvalidNamespaceError):
            memory.batch([PutOp(namespace, "k", {"v": 1})])
    assert dump(store.backend) == {}


def test_a_filter_operand_no_float_holds_matches_nothing(store: statekeel.Store) -> None:
    """Before: ``{"$gt": 10**400}`` raised a raw OverflowError; a non-str key in a nested filter a ValueError."""
    memory = StatekeelStore(store)
    memory.put(("docs",), "a", {"v": 1})
    assert memory.search(("docs",), filter={"v": {"$gt": 10**400}}) == []
    assert memory.search(("docs",), filter={"v": {HUGE: 1}}) == []


# -- LangGraph saver -----------------------------------------------------------------------------
BAD_CONFIGS: list[Any] = [
    None, "t1", 5, {}, {"configurable": "t1"}, {"configurable": {"thread_id": HUGE}},
    {"configurable": {"thread_id": "t", "checkpoint_ns": HUGE}},
    {"configurable": {"thread_id": "t", "checkpoint_id": HUGE}},
]


def test_the_saver_refuses_a_config_it_cannot_read(store: statekeel.Store) -> None:
    """Before: a raw TypeError / KeyError (not a config) or ValueError (str() of a 5,000-digit int)."""
    saver = StatekeelSaver(store)
    for config in BAD_CONFIGS:
        with pytest.raises(InvalidInputError):
            saver.get_tuple(config)
        named_checkpoint = isinstance(config, dict) and "checkpoint_id" in config.get("configurable", {})
        if config and not named_checkpoint:  # no config at all lists every thread; an unknown id, nothing
            with pytest.raises(InvalidInputError):
                list(saver.list(config))
    with pytest.raises(InvalidInputError):
        list(saver.list({"configurable": {"thread_id": "t"}}, limit="5"))  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        list(saver.list({"configurable": {"thread_id": "t"}}, before="abc"))  # type: ignore[arg-type]
    assert dump(store.backend) == {}


# -- OpenAI Agents SDK ---------------------------------------------------------------------------
def test_session_options_are_checked_when_the_session_is_made(store: statekeel.Store) -> None:
    """Before: a bad ttl passed the constructor and failed only at the first write."""
    for ttl in (float("nan"), "soon", -1, math.inf, 10**400):
        with pytest.raises(InvalidInputError, match="ttl"):
            StatekeelSession("chat", store, ttl=ttl)
    with pytest.raises(TypeError, match="Unknown session settings"):  # the SDK's own error, as SQLiteSession's
        StatekeelSession("chat", store, session_settings={"limitt": 1})


def test_an_item_with_an_int_no_str_holds_is_refused_and_writes_nothing(store: statekeel.Store) -> None:
    """Before: hashing the batch for its idempotency key raised a raw ValueError."""

    async def scenario() -> None:
        session = StatekeelSession("chat", store)
        await session.add_items([{"role": "user", "content": "hi"}])
        before = await adump(store.backend)
        for bad in ({"id": "m1", "type": "message", "content": HUGE}, {"id": "m1", 1: "x"}):
            with pytest.raises(SerializationError):
                await session.add_items([bad])
            assert await adump(store.backend) == before
        assert await session.get_items() == [{"role": "user", "content": "hi"}]
        session.close()

    run(scenario)
