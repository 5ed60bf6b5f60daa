"""StatekeelSession keeps its statekeel session handle between calls (no read before a write).

The handle is revalidated by the write itself (the append's ``at=`` precondition): these
tests change the session behind its back — deleted, expired, written by another writer,
compacted — and check that no write goes through a stale handle, nothing is lost and
nothing deleted comes back.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
import redis

import statekeel
from statekeel.errors import ConflictError
from statekeel.integrations.openai_agents import StatekeelSession
from statekeel.integrations.openai_agents._writer import _writes

T = TypeVar("T")


def run(make: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await make()

    return asyncio.run(main())


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def reply(text: str, item_id: str) -> dict[str, Any]:
    return {"id": item_id, "type": "message", "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": []}]}


def test_a_session_deleted_elsewhere_is_not_written_through_the_kept_handle(store: statekeel.Store) -> None:
    s = StatekeelSession("chat", store)
    run(lambda: s.add_items([user("old 1"), user("old 2")]))
    run(lambda: s.add_items([user("old 3")]))
    handle = s._writer._handles[None]
    assert handle.next == 4  # kept, with the seq its next append must get
    assert store.delete_session("chat")  # another process, say

    with pytest.raises(ConflictError):  # the kept handle's own write is refused, nothing written
        handle.session._sc.commit(_writes(handle, [user("through the stale handle")], None))
    assert store.find_session("chat") is None
    assert store.backend.log_info(handle.session._log) is None  # no history without its session

    run(lambda: s.add_items([user("new")]))  # the SDK's call: a new session with only the new item
    assert run(s.get_items) == [user("new")]
    found = store.find_session("chat")
    assert found is not None and found.history() == [user("new")]
    assert "chat" in [info.id for info in store.sessions()]  # listed: a whole session, not a stray log
    s.close()


def test_another_writer_in_between_loses_nothing_and_keeps_the_order(store: statekeel.Store) -> None:
    ours, theirs = StatekeelSession("chat", store), StatekeelSession("chat", store)

    async def scenario() -> None:
        await ours.add_items([user("1")])
        await theirs.add_items([user("2"), reply("3", "msg_3")])
        await ours.add_items([user("4")])  # its kept handle is one batch behind: refused, redone
        store_side = await asyncio.to_thread(lambda: store.session("chat").history())
        await theirs.add_items([user("5")])
        assert await ours.get_items() == [user("1"), user("2"), reply("3", "msg_3"), user("4"), user("5")]
        assert store_side == [user("1"), user("2"), reply("3", "msg_3"), user("4")]
        ours.close()
        theirs.close()

    run(scenario)


def test_a_retried_batch_through_a_kept_handle_is_applied_once(store: statekeel.Store) -> None:
    s = StatekeelSession("chat", store)
    batch = [reply("a", "msg_a"), {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"}]

    async def scenario() -> None:
        await s.add_items([user("q")])
        await s.add_items(batch)
        await s.add_items(batch)  # the SDK retrying after a timeout whose write went through
        await s.add_items([user("next")])
        assert await s.get_items() == [user("q"), *batch, user("next")]
        s.close()

    run(scenario)


def test_an_expired_session_starts_again_from_the_kept_handle(store: statekeel.Store) -> None:
    s = StatekeelSession("chat", store, ttl=0.3)
    run(lambda: s.add_items([user("before")]))
    time.sleep(0.7)  # past the TTL (and its renewal margin): the session is gone
    store.purge_expired()
    run(lambda: s.add_items([user("after")]))
    assert run(s.get_items) == [user("after")]
    found = store.find_session("chat")
    assert found is not None and found.history() == [user("after")]
    s.close()


def test_adding_after_compaction_clear_and_pop_keeps_one_history(store: statekeel.Store) -> None:
    s = StatekeelSession("chat", store)

    async def scenario() -> None:
        await s.add_items([user("1"), user("2")])
        assert await s._atomic_replace_items([user("summary")])
        await s.add_items([user("3")])
        assert await s.get_items() == [user("summary"), user("3")]
        assert await s.pop_item() == user("3")
        await s.add_items([user("4")])
        assert await s.get_items() == [user("summary"), user("4")]
        await s.clear_session()
        await s.add_items([user("5")])
        assert await s.get_items() == [user("5")]
        s.close()

    run(scenario)


def _monitored(url: str, work: Callable[[], None]) -> list[str]:
    """The commands clients sent (not those scripts ran) while ``work()`` ran: Redis MONITOR."""
    raw = redis.Redis.from_url(url)
    seen: list[str] = []
    with raw.monitor() as m:
        started = threading.Event()

        def listen() -> None:
            started.set()
            for cmd in m.listen():
                if cmd["command"] == "ECHO statekeel-test-done":
                    return
                if cmd.get("client_type") != "lua":
                    seen.append(cmd["command"].split()[0].upper())

        t = threading.Thread(target=listen)
        t.start()
        started.wait()
        time.sleep(0.2)  # MONITOR is on before the work starts
        work()
        raw.echo("statekeel-test-done")
        t.join(10)
    raw.close()
    return seen


def test_a_turn_on_redis_is_one_round_trip(redis_url: str) -> None:
    """No session-open read per call (it was get_many + log_info before each write)."""
    s = StatekeelSession.from_url("chat", redis_url)
    run(lambda: s.add_items([user("first")]))  # opens the session once

    async def turns() -> None:
        for i in range(10):
            await s.add_items([user(f"u{i}"), reply(f"a{i}", f"msg_{i}")])

    sent = _monitored(redis_url, lambda: run(turns))
    assert sent.count("EVALSHA") == 10 and [c for c in sent if c not in ("EVALSHA", "HELLO", "CLIENT")] == []
    assert len(run(s.get_items)) == 21
    s.close()


def test_get_items_on_redis_is_one_round_trip(redis_url: str) -> None:
    """The session's records and the history's tail in one script call (it was a pipeline of
    record reads and a MULTI/EXEC of the log, sent at once), also after the server lost its scripts."""
    s = StatekeelSession.from_url("reads", redis_url)
    run(lambda: s.add_items([user(f"u{i}") for i in range(30)]))
    run(lambda: s.get_items(limit=1))  # the first read on a server loads the script

    async def reads() -> None:
        for _ in range(5):
            assert await s.get_items(limit=20) == [user(f"u{i}") for i in range(10, 30)]

    sent = _monitored(redis_url, lambda: run(reads))
    assert sent.count("EVALSHA") == 5 and [c for c in sent if c not in ("EVALSHA", "HELLO", "CLIENT")] == [], sent
    redis.Redis.from_url(redis_url).script_flush()
    assert run(lambda: s.get_items(limit=2)) == [user("u28"), user("u29")]  # the script is loaded again
    assert run(lambda: s.get_items(limit=2)) == [user("u28"), user("u29")]
    none = StatekeelSession.from_url("none", redis_url)
    assert run(lambda: none.get_items(limit=5)) == []
    none.close()
    s.close()
