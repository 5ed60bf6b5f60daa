"""How ``get_items`` reads: on SQLite, on the event loop when that waits for nothing; on Redis,
in one round trip whatever the history's size.

A thread hop cost more than reading 20 rows (the SDK's SQLiteSession pays one per call), so
a plain SQLite store's ``get_items(limit=N)``, N <= 100, reads on the loop (a whole history
stays on the worker: the loop must not stall on it) — but never behind a write another
thread is making on the store's connection: that read goes to the worker, and the loop keeps
running meanwhile. Damaged rows, compaction marks and restore views also go to the worker,
which handles them as before.

On Redis a whole history arrives in many pieces, and an error reply (a foreign value at the
session's key) must become statekeel's typed error, leaving the client usable.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from statekeel.errors import CorruptionError, NotAStoreError
from statekeel.integrations.openai_agents import StatekeelSession


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def _session(tmp_path: Path, url_options: str = "") -> StatekeelSession:
    s = StatekeelSession.from_url("chat", f"sqlite:///{tmp_path}/s.db{url_options}")
    asyncio.run(s.add_items([user(f"u{i}") for i in range(30)]))
    return s


def _counting_worker(s: StatekeelSession) -> list[int]:
    """Counts the calls ``s`` sends to its worker thread (instrumentation only: the store is real)."""
    calls: list[int] = []
    run = s._worker.run

    def counted(fn: Callable[[], Any], **kwargs: Any) -> Awaitable[Any]:
        calls.append(1)
        return run(fn, **kwargs)

    s._worker.run = counted  # type: ignore[method-assign]
    return calls


def test_get_items_reads_on_the_loop_when_the_connection_is_free(tmp_path: Path) -> None:
    s = _session(tmp_path)
    calls = _counting_worker(s)

    async def reads() -> None:
        for _ in range(3):
            assert await s.get_items(limit=20) == [user(f"u{i}") for i in range(10, 30)]
        assert await s.get_items(limit=100) == [user(f"u{i}") for i in range(30)]
        assert await StatekeelSession("none", s._store).get_items(limit=5) == []
        assert calls == []
        assert await s.get_items() == [user(f"u{i}") for i in range(30)]  # a whole history: on the worker
        assert await s.get_items(limit=101) == [user(f"u{i}") for i in range(30)]
        assert calls == [1, 1]

    asyncio.run(reads())
    s.close()


def test_a_write_holding_the_connection_sends_the_read_to_the_worker(tmp_path: Path) -> None:
    """Another thread's write holds the store's connection (its fsync): the loop does not wait
    for it — the lock is only let go once another task on the loop has run meanwhile."""
    s = _session(tmp_path)
    calls = _counting_worker(s)
    lock = s._store.backend._lock  # type: ignore[attr-defined]
    held, release = threading.Event(), threading.Event()
    let_go_by_the_loop: list[bool] = []

    def writer() -> None:
        with lock:
            held.set()
            let_go_by_the_loop.append(release.wait(10))  # False: the loop was stuck in the read

    async def read() -> Any:
        async def other_task() -> None:
            for _ in range(3):  # runs only while the read leaves the loop free
                await asyncio.sleep(0.001)
            release.set()

        task = asyncio.create_task(other_task())
        items = await s.get_items(limit=3)
        await task
        return items

    t = threading.Thread(target=writer)
    t.start()
    held.wait(10)
    items = asyncio.run(read())
    t.join(10)
    assert items == [user("u27"), user("u28"), user("u29")]
    assert let_go_by_the_loop == [True] and calls == [1]  # read by the worker once the lock was free
    s.close()


def test_a_damaged_entry_is_named_by_the_worker(tmp_path: Path) -> None:
    s = _session(tmp_path)
    s.close()
    db = sqlite3.connect(f"{tmp_path}/s.db")
    db.execute("UPDATE sk_entries SET data = CAST('tampered' AS BLOB) WHERE id = (SELECT max(id) FROM sk_entries)")
    db.commit()
    db.close()
    s = StatekeelSession.from_url("chat", f"sqlite:///{tmp_path}/s.db")
    with pytest.raises(CorruptionError, match="entry 30"):
        asyncio.run(s.get_items(limit=5))
    s.close()


def test_restored_and_compacted_sessions_are_read_by_the_worker(tmp_path: Path) -> None:
    s = _session(tmp_path)
    store = s._store
    sk = store.session("chat")
    cp = sk.checkpoint("at-30")
    asyncio.run(s.add_items([user("later")]))
    sk = store.session("chat")
    sk.restore(cp)
    calls = _counting_worker(s)
    assert asyncio.run(s.get_items(limit=2)) == [user("u28"), user("u29")]  # "later" is hidden by the restore
    assert calls == [1]
    other = StatekeelSession("other", store)
    asyncio.run(other.add_items([user("a"), user("b")]))
    asyncio.run(other._atomic_replace_items([user("summary")]))
    compacted = _counting_worker(other)
    assert asyncio.run(other.get_items(limit=5)) == [user("summary")]  # "a" and "b" are compacted
    assert compacted == [1]
    other.close()
    s.close()


def test_a_whole_history_arriving_in_pieces_on_redis(redis_url: str) -> None:
    """Two megabytes of history: the reply comes in dozens of reads of the socket."""
    s = StatekeelSession.from_url("long", redis_url)
    items = [user(f"{i:05d} " + "x" * 1000) for i in range(2000)]

    async def scenario() -> None:
        for i in range(0, 2000, 500):
            await s.add_items(items[i : i + 500])
        assert await s.get_items() == items
        assert await s.get_items(limit=1500) == items[500:]
        assert await s.get_items(limit=2) == items[-2:]

    asyncio.run(scenario())
    s.close()


def test_an_error_reply_inside_the_transaction_is_a_typed_error_on_redis(redis_url: str) -> None:
    """A foreign value at the session record's key: Redis answers WRONGTYPE inside EXEC."""
    s = StatekeelSession.from_url("foreign", redis_url)
    asyncio.run(s.add_items([user("hi")]))
    raw = redis.Redis.from_url(redis_url)
    meta = next(k for k in raw.keys("*{session/foreign}:kv:*") if k.endswith(b"/meta"))
    saved = raw.dump(meta)
    raw.delete(meta)
    raw.set(meta, "not statekeel's")

    async def reads() -> None:
        with pytest.raises(NotAStoreError, match="WRONGTYPE"):
            await s.get_items(limit=5)
        raw.delete(meta)
        raw.restore(meta, 0, saved)
        assert await s.get_items(limit=5) == [user("hi")]  # the same connection reads on

    asyncio.run(reads())
    raw.close()
    s.close()
