"""StatekeelSession against the OpenAI Agents SDK's documented session contract, on every backend.

The contract (agents.memory.session.Session): ``get_items(limit)`` returns the latest
``limit`` items in chronological order, ``add_items`` appends, ``pop_item`` removes and
returns the newest item, ``clear_session`` empties the session. Beyond what the SDK's
own sessions guarantee, these tests hold statekeel to: one order whatever the clocks
say, atomic batches, concurrent first writers losing nothing, a damaged record that
spoils only itself, stores owned by the caller left open.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from agents.memory.session import Session as SdkSession
from agents.memory.session import _session_accepts_wrapper
from agents.memory.session_settings import SessionSettings
from agents.run_context import RunContextWrapper

import statekeel
from statekeel import Encryption
from statekeel.errors import CorruptionError, InvalidInputError, SecretDetectedError, UsageError
from statekeel.integrations.openai_agents import StatekeelCompactionSession, StatekeelSession
from statekeel.protocol import Rewrite

from .hops import count_worker_calls

T = TypeVar("T")


def run(make: Callable[[], Awaitable[T]]) -> T:
    """Run one coroutine on a fresh loop (the store was opened off the loop, as it must be)."""
    async def main() -> T:
        return await make()

    return asyncio.run(main())


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def reply(text: str, item_id: str) -> dict[str, Any]:
    return {"id": item_id, "type": "message", "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": []}]}


def test_it_is_an_sdk_session_that_takes_the_run_wrapper(store: statekeel.Store) -> None:
    s = StatekeelSession("chat", store)
    assert isinstance(s, SdkSession)
    assert _session_accepts_wrapper(s)  # the runner passes its context wrapper to every method
    s.close()


def test_items_come_back_as_given_in_write_order_and_limit_takes_the_newest(store: statekeel.Store) -> None:
    s = StatekeelSession("chat", store)
    items = [user(f"u{i}") if i % 2 == 0 else reply(f"a{i}", f"msg_{i}") for i in range(40)]

    async def scenario() -> None:
        for i in range(0, 40, 4):  # batches written faster than the clock ticks: equal timestamps
            await s.add_items(items[i:i + 4])
        assert await s.get_items() == items
        assert await s.get_items(limit=7) == items[-7:]
        assert await s.get_items(limit=7) == items[-7:]  # deterministic
        assert await s.get_items(limit=1000) == items
        assert await s.get_items(limit=0) == []
        assert await s.get_items(limit=-1) == items  # SQLiteSession's LIMIT -1: everything
        s.close()

    run(scenario)


def test_session_settings_limit_is_the_default(store: statekeel.Store) -> None:
    s = StatekeelSession("chat", store, session_settings=SessionSettings(limit=2))

    async def scenario() -> None:
        await s.add_items([user("a"), user("b"), user("c")])
        assert await s.get_items() == [user("b"), user("c")]
        assert await s.get_items(limit=3) == [user("a"), user("b"), user("c")]
        s.close()

    run(scenario)


def test_pop_and_clear(store: statekeel.Store) -> None:
    s = StatekeelSession("chat", store)

    async def scenario() -> None:
        assert await s.pop_item() is None  # never written: nothing, and nothing created
        await s.clear_session()
        assert await asyncio.to_thread(store.find_session, "chat") is None
        await s.add_items([user("a"), reply("b", "msg_b")])
        assert await s.pop_item() == reply("b", "msg_b")
        assert await s.get_items() == [user("a")]
        await s.clear_session()
        assert await s.get_items() == []
        assert await s.pop_item() is None
        await s.add_items([user("again")])
        assert await s.get_items() == [user("again")]
        s.close()

    run(scenario)


def test_a_bad_batch_is_refused_whole_and_leaves_the_session_as_it_was(store: statekeel.Store) -> None:
    s = StatekeelSession("chat", store)

    async def scenario() -> None:
        await s.add_items([user("kept")])
        with pytest.raises(InvalidInputError, match="item 1"):
            await s.add_items([user("x"), "not an item"])  # type: ignore[list-item]
        with pytest.raises(InvalidInputError):
            await s.add_items([user("x"), {"content": object()}])  # type: ignore[list-item]
        with pytest.raises(InvalidInputError, match="limit"):
            await s.get_items(limit="3")  # type: ignore[arg-type]
        assert await s.get_items() == [user("kept")]
        s.close()

    run(scenario)


def test_a_retried_batch_with_item_ids_is_stored_once_but_repeated_user_text_is_not_merged(
    store: statekeel.Store,
) -> None:
    s = StatekeelSession("chat", store)
    turn = [user("hi"), reply("hello", "msg_1")]

    async def scenario() -> None:
        await s.add_items(turn)
        await s.add_items(turn)  # the runner retried after a timeout that hid the success
        await s.add_items([user("hi")])
        await s.add_items([user("hi")])  # the user said it twice: two turns
        assert await s.get_items() == [*turn, user("hi"), user("hi")]
        s.close()

    run(scenario)


def test_concurrent_first_writers_lose_nothing(store: statekeel.Store) -> None:
    writers = [StatekeelSession("new", store) for _ in range(4)]  # four workers: truly parallel

    async def scenario() -> None:
        await asyncio.gather(*(
            w.add_items([user(f"w{n}-{i}") for i in range(3)]) for n, w in enumerate(writers) for _ in [0]
        ))
        items = await writers[0].get_items()
        assert sorted(i["content"] for i in items) == sorted(f"w{n}-{i}" for n in range(4) for i in range(3))
        for n in range(4):  # each batch stayed together, in its own order
            start = items.index(user(f"w{n}-0"))
            assert items[start:start + 3] == [user(f"w{n}-{i}") for i in range(3)]
        for w in writers:
            w.close()

    run(scenario)


def test_concurrent_pops_take_each_item_once(store: statekeel.Store) -> None:
    poppers = [StatekeelSession("chat", store) for _ in range(3)]

    async def scenario() -> None:
        await poppers[0].add_items([user(str(i)) for i in range(12)])
        got = await asyncio.gather(*(p.pop_item() for p in poppers for _ in range(5)))
        popped = [g["content"] for g in got if g is not None]
        assert sorted(popped, key=int) == [str(i) for i in range(12)]
        assert await poppers[0].get_items() == []
        for p in poppers:
            p.close()

    run(scenario)


def test_a_damaged_item_is_reported_and_spoils_nothing_else(store: statekeel.Store) -> None:
    a, b = StatekeelSession("a", store), StatekeelSession("b", store)

    async def fill() -> None:
        await a.add_items([user("a1"), user("a2"), user("a3")])
        await b.add_items([user("b1")])

    run(fill)
    log = store.session("a")._log
    first = store.storage.read(log, limit=1)[0]
    store.storage.apply([Rewrite(log, first.seq, b"\xff{garbled", first.codec)])  # not JSON, not UTF-8: beneath the API, as a disk would

    async def check() -> None:
        with pytest.raises(CorruptionError) as err:
            await a.get_items()
        assert err.value.key == log
        assert await a.get_items(limit=2) == [user("a2"), user("a3")]  # the newest still read
        assert await a.pop_item() == user("a3")
        assert await b.get_items() == [user("b1")]  # another session is untouched
        a.close()
        b.close()

    run(check)


def test_a_store_the_caller_owns_stays_open_one_from_a_url_is_closed(store_url: str) -> None:
    with statekeel.open(store_url) as store:
        s = StatekeelSession("chat", store)
        run(lambda: s.add_items([user("hi")]))
        s.close()
        assert store.session("chat").history() == [user("hi")]  # still usable
    owned = StatekeelSession.from_url("chat", store_url)
    assert run(owned.get_items) == [user("hi")]
    owned.close()
    with pytest.raises(UsageError):
        run(owned.get_items)


def test_an_async_store_shares_its_worker(store_url: str) -> None:
    async def scenario() -> None:
        async with statekeel.open_async(store_url) as astore:
            s = StatekeelSession("chat", astore)
            await s.add_items([user("hi")])
            assert await s.get_items() == [user("hi")]
            s.close()  # not the store's worker
            assert await (await astore.session("chat")).history() == [user("hi")]

    asyncio.run(scenario())


def test_the_run_wrapper_routes_each_call_to_its_tenant(store: statekeel.Store) -> None:
    s = StatekeelSession("chat", store, tenant_of=lambda w: w.context["tenant"])
    acme, globex = RunContextWrapper({"tenant": "acme"}), RunContextWrapper({"tenant": "globex"})

    async def scenario() -> None:
        await s.add_items([user("acme secret plan")], wrapper=acme)
        await s.add_items([user("globex note")], wrapper=globex)
        assert await s.get_items(wrapper=acme) == [user("acme secret plan")]
        assert await s.get_items(wrapper=globex) == [user("globex note")]
        assert await s.pop_item(wrapper=globex) == user("globex note")
        await s.clear_session(wrapper=acme)
        s.close()

    run(scenario)
    assert store.tenant("acme").session("chat").history() == []
    assert store.find_session("chat") is None  # the store itself holds neither


def test_routed_calls_on_an_async_store_run_on_their_tenants_view(store_url: str) -> None:
    """Given an AsyncStore, a routed call reads and writes through its tenant's asyncio view: on
    PostgreSQL and Redis no worker hop once the tenant's session is open (the first write opens it
    there), the same order and isolation as on the worker; pop, clear and compaction stay there."""
    native = store_url.startswith(("postgresql", "redis"))
    acme, globex = RunContextWrapper({"tenant": "acme"}), RunContextWrapper({"tenant": "globex"})

    async def scenario() -> None:
        async with statekeel.open_async(store_url) as astore:
            s = StatekeelSession("chat", astore, tenant_of=lambda w: w.context["tenant"])
            for w in (acme, globex):
                await s.add_items([user(f"{w.context['tenant']} opens")], wrapper=w)
            calls = count_worker_calls(astore)
            for turn in range(3):
                await asyncio.gather(*(s.add_items([user(f"{w.context['tenant']} {turn}")], wrapper=w)
                                       for w in (acme, globex)))  # fmt: skip
            assert await s.get_items(wrapper=acme) == [user("acme opens"), *(user(f"acme {t}") for t in range(3))]
            assert await s.get_items(2, wrapper=globex) == [user("globex 1"), user("globex 2")]
            assert (calls == []) == native, calls
            assert await s.pop_item(wrapper=globex) == user("globex 2")  # on the worker
            assert await s.get_items(1, wrapper=globex) == [user("globex 1")]
            await s.add_items([user("globex 3")], wrapper=globex)  # the kept handle moved on: reopened
            assert await s.get_items(1, wrapper=globex) == [user("globex 3")]
            s.close()
            assert await astore.find_session("chat") is None  # the store itself holds neither
            assert len(await (await astore.tenant("acme").session("chat")).history()) == 4

    asyncio.run(scenario())


def test_a_call_without_a_wrapper_goes_where_the_tasks_last_routed_call_went(store: statekeel.Store) -> None:
    s = StatekeelSession("chat", store, tenant_of=lambda w: w.context["tenant"])

    async def routed() -> None:
        await s.add_items([user("acme note")], wrapper=RunContextWrapper({"tenant": "acme"}))
        assert await s.get_items() == [user("acme note")]

    async def unrouted() -> None:  # another task that routed nothing: the store itself
        assert await s.get_items() == []

    run(routed)
    run(unrouted)
    s.close()


def test_compaction_of_a_routed_run_stays_in_its_tenant(store: statekeel.Store) -> None:
    """The SDK's compaction session gives the session beneath no wrapper; ours routes every call."""
    inner = StatekeelSession("chat", store, tenant_of=lambda w: w.context["tenant"])
    client = _Compactor()
    session = StatekeelCompactionSession("chat", inner, client=client)  # type: ignore[arg-type]
    assert _session_accepts_wrapper(session)  # so the Runner passes the run's wrapper
    acme = RunContextWrapper({"tenant": "acme"})

    async def scenario() -> None:
        await session.add_items([user("where is A7?"), reply("ships tomorrow", "msg_1")], wrapper=acme)
        await session.run_compaction({"force": True, "compaction_mode": "input"}, wrapper=acme)
        assert len(client.inputs) == 1 and len(client.inputs[0]) == 2  # it compacted acme's history
        visible = await inner.get_items(wrapper=acme)
        assert len(visible) == 1 and visible[0]["content"][0]["text"] == "Summary: A7"
        inner.close()

    run(scenario)
    assert store.find_session("chat") is None  # nothing reached the store itself
    assert len(store.tenant("acme").session("chat").history()) == 3


def test_items_are_encrypted_and_secrets_refused_through_the_adapter(store_url: str) -> None:
    key = base64.b64encode(b"E" * 32).decode()
    with statekeel.open(store_url, encryption=Encryption(master_key=key)) as store:
        s = StatekeelSession("chat", store)
        run(lambda: s.add_items([user("my tracking number is 4711-PLAINTEXT")]))
        with pytest.raises(SecretDetectedError):
            run(lambda: s.add_items([user("here: password=hunter2")]))
        assert run(s.get_items) == [user("my tracking number is 4711-PLAINTEXT")]
        raw = [e.data for e in store.storage.read(store.session("chat")._log)]
        assert raw and all(b"PLAINTEXT" not in d for d in raw)
        s.close()


def test_calls_never_run_on_the_event_loop_thread(store: statekeel.Store) -> None:
    """The store refuses blocking calls made on the event loop's thread (its loop guard), so
    every method succeeding inside a running loop shows none of them blocks the loop."""
    s = StatekeelSession("chat", store)

    async def scenario() -> None:
        with pytest.raises(UsageError, match="event loop"):
            store.find_session("chat")  # the guard is on for this store
        await s.add_items([user("a"), user("b")])
        assert await s.get_items(limit=1) == [user("b")]
        assert await s.pop_item() == user("b")
        await s.clear_session()
        assert await s.get_items() == []
        s.close()

    run(scenario)


class _Compactor:
    """Stands in for the OpenAI API's responses.compact endpoint (not for storage): returns
    a canned summary and records the history it was asked to compact."""

    def __init__(self) -> None:
        self.inputs: list[Any] = []
        self.responses = self

    async def compact(self, **kwargs: Any) -> Any:
        self.inputs.append(kwargs.get("input"))
        summary = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Summary: A7"}]}
        return type("Compacted", (), {"output": [summary], "usage": None})()


def test_compaction_replaces_the_visible_history_and_keeps_the_old_one(store: statekeel.Store) -> None:
    from agents.memory import OpenAIResponsesCompactionSession

    inner = StatekeelSession("chat", store)
    client = _Compactor()
    session = OpenAIResponsesCompactionSession("chat", inner, client=client)  # type: ignore[arg-type]
    turns = [user("where is A7?"), reply("ships tomorrow", "msg_1"), user("thanks"), reply("welcome", "msg_2")]

    async def scenario() -> None:
        await session.add_items(turns)
        await session.run_compaction({"force": True, "compaction_mode": "input"})
        assert len(client.inputs) == 1 and len(client.inputs[0]) == 4  # it was sent the history
        visible = await inner.get_items()
        assert len(visible) == 1 and visible[0]["content"][0]["text"] == "Summary: A7"
        await inner.add_items([user("and B9?")])
        assert [i["content"] if isinstance(i["content"], str) else "summary" for i in await inner.get_items()] == [
            "summary", "and B9?"]
        assert await inner.get_items(limit=1) == [user("and B9?")]
        assert await inner.pop_item() == user("and B9?")
        assert (await inner.pop_item())["content"][0]["text"] == "Summary: A7"  # type: ignore[index]
        assert await inner.pop_item() is None  # the compacted turns are not reachable by pop
        assert await inner.get_items() == []
        inner.close()

    run(scenario)
    kept = store.session("chat").history()
    assert kept == turns  # nothing destroyed: the original turns are all still stored


def test_a_session_restored_to_a_checkpoint_shows_what_the_checkpoint_saw(store: statekeel.Store) -> None:
    s = StatekeelSession("chat", store)
    run(lambda: s.add_items([user("a"), user("b")]))
    cp = store.session("chat").checkpoint("before")
    run(lambda: s.add_items([user("c")]))
    store.session("chat").restore(cp)  # statekeel's own API: later history is hidden, not deleted
    assert run(s.get_items) == [user("a"), user("b")]
    assert run(lambda: s.get_items(limit=1)) == [user("b")]
    s.close()


@pytest.mark.multiprocess
def test_first_writers_on_separate_store_handles_lose_nothing(open_store: Callable[..., statekeel.Store]) -> None:
    """Two handles, two connections (as two processes would have): both first batches are kept."""
    a, b = StatekeelSession("new", open_store()), StatekeelSession("new", open_store())

    async def scenario() -> None:
        await asyncio.gather(*(w.add_items([user(f"{n}-{i}") for i in range(5)]) for n, w in (("a", a), ("b", b))
                               for _ in range(3)))
        items = await a.get_items()
        assert sorted(i["content"] for i in items) == sorted(f"{n}-{i}" for n in "ab" for i in range(5) for _ in range(3))
        a.close()
        b.close()

    run(scenario)


def test_the_routed_compaction_session_needs_a_statekeel_session() -> None:
    from agents import SQLiteSession

    with pytest.raises(InvalidInputError, match="StatekeelSession"):
        StatekeelCompactionSession("chat", SQLiteSession("chat"), client=_Compactor())  # type: ignore[arg-type]
