"""The asyncio API on the native drivers (PostgreSQL, Redis): no thread hop on the hot paths.

Run on every backend given to ``--statekeel-backends``: on ``postgres`` and
``redis`` the hot calls must never start the store's worker thread; on the
others they must keep using it. Concurrency and ordering are checked on all.
"""

from __future__ import annotations

import asyncio
import base64
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
import pytest
import redis

import statekeel
from statekeel.backends import parse
from statekeel.backends.postgres.config import dsn
from statekeel.backends.redis.wire import Layout
from statekeel.core import layout
from statekeel import AsyncStore, CorruptionError, ConflictError, Encryption, ExpiredError, Integrity, NotFoundError
from statekeel.aio._native import Drivers, lane_for, native_backend
from statekeel.aio._worker import Worker

NATIVE = ("postgresql", "redis")
GROUPED = ("sqlite", "file")


def _run(url: str, main: Callable[[AsyncStore], Awaitable[None]], **options: Any) -> None:
    async def go() -> None:
        async with statekeel.open_async(url, **options) as store:
            await main(store)

    asyncio.run(go())


def _worker_threads(store: AsyncStore) -> int:
    """How many threads the store's worker pool has started (it starts them on first use)."""
    return len(store._worker._executor._threads)


def _is_native(url: str) -> bool:
    return url.startswith(NATIVE)


async def _hot_paths(store: AsyncStore) -> None:
    s = await store.session("hot", user="u-1", ttl="1h")
    assert await s.append({"role": "user", "content": "hi"}, state={"turn": 1}) == 1
    async with s.batch() as b:
        b.append({"role": "assistant", "content": "hello"})
        b.put("turn", 2)
    assert b.first_seq == 2
    await s.heartbeat()
    assert [m["content"] for m in await s.history()] == ["hi", "hello"]
    assert await s.history(last=1) == [{"role": "assistant", "content": "hello"}]
    assert await s.count() == 2 and (await s.info()).user == "u-1"
    assert (await s.state.update("turn", lambda n: n + 1)).value == 3
    assert await s.state.get("turn") == 3 and (await s.state.require("turn")).version == 3
    assert await s.state.delete("turn") and await s.state.item("turn") is None
    again = await store.session("hot")
    assert again.resumed is not None and again.user == "u-1" and await again.history(last=5) != []
    assert (await store.find_session("hot")) is not None and await store.find_session("nobody") is None
    app = store.app
    assert (await app.put("k", {"v": 1}, expect=None)).version == 1
    assert (await app.update("k", lambda v: {"v": v["v"] + 1})).value == {"v": 2}
    assert await app.contains("k") and await store.user("u-1").get("missing", 7) == 7


def test_hot_paths_run_without_the_worker_thread_on_native_drivers(store_url: str) -> None:
    """Session open/get, append, batch, heartbeat, history, count, info and state
    get/put/update/delete: none of them starts a worker thread on PostgreSQL or Redis
    (every other backend runs them on the worker, as before)."""

    async def main(store: AsyncStore) -> None:
        names_before = {t.name for t in threading.enumerate()}
        await _hot_paths(store)
        started = _worker_threads(store)
        if _is_native(store_url):
            assert store._lane is not None and started == 0
            assert not any(n.startswith("statekeel-aio") for n in {t.name for t in threading.enumerate()} - names_before)
            await store.sessions()  # a call without a native twin still reaches the worker
            assert _worker_threads(store) == 1
        elif store_url.startswith(GROUPED):  # writes planned on the loop, committed in groups on the worker
            assert store._lane is not None and not store._lane.reads and started == 1
        else:
            assert store._lane is None and started == 1

    _run(store_url, main)


def test_native_results_match_the_sync_api(store_url: str) -> None:
    """What the native path writes is what the sync API reads, and the other way round."""
    _run(store_url, _hot_paths)
    with statekeel.open(store_url) as sync:
        s = sync.session("hot")
        assert [m["content"] for m in s.history()] == ["hi", "hello"] and len(s) == 2
        assert "turn" not in s.state and sync.app.get("k") == {"v": 2}
        s.append("from sync", state={"turn": 9})

    async def read(store: AsyncStore) -> None:
        s = await store.session("hot")
        assert (await s.history(last=1)) == ["from sync"] and await s.state.get("turn") == 9

    _run(store_url, read)


async def conversations(store: AsyncStore, turns: int = 5) -> None:
    """32 coroutines, each with its own session, plus one shared counter updated by all:
    every history complete and in order, no counter increment lost."""

    async def conversation(n: int) -> None:
        s = await store.session(f"c-{n}")
        for turn in range(turns):
            await s.append({"n": n, "turn": turn}, state={"turn": turn})
            await store.app.update("turns", lambda t: t + 1, default=0)

    await asyncio.gather(*(conversation(n) for n in range(32)))
    for n in range(32):
        s = await store.session(f"c-{n}")
        assert [m["turn"] for m in await s.history()] == list(range(turns)) and await s.state.get("turn") == turns - 1
    assert await store.app.get("turns") == 32 * turns


def test_concurrent_conversations_share_one_store(store_url: str) -> None:
    """:func:`conversations` on one store."""
    _run(store_url, conversations)


def test_calls_through_one_session_keep_call_order_across_native_and_worker(store_url: str) -> None:
    """A session handle's calls run in the order they were made, whether they run natively
    (append) or on the worker (messages, checkpoint)."""

    async def main(store: AsyncStore) -> None:
        s = await store.session("ordered")
        first = asyncio.ensure_future(s.append("a"))
        seen = asyncio.ensure_future(s.messages())  # no native twin: on the worker
        second = asyncio.ensure_future(s.append("b"))
        cp = asyncio.ensure_future(s.checkpoint("after-b"))
        third = asyncio.ensure_future(s.append("c"))
        assert list(await asyncio.gather(first, second, third)) == [1, 2, 3]
        assert [m.value for m in await seen] == ["a"]
        await s.restore(await cp)
        assert await s.history() == ["a", "b"]  # the restore hid "c": read through the worker
        assert await s.history(include_hidden=True) == ["a", "b", "c"]

    _run(store_url, main)


def test_native_errors_are_the_sync_errors(store_url: str) -> None:
    """Compare-and-set conflicts, missing keys and expired sessions raise what the sync API raises,
    and a failed write leaves the stored data as it was."""

    async def main(store: AsyncStore) -> None:
        app = store.app
        await app.put("k", 1, expect=None)
        for bad in (None, 7):
            try:
                await app.put("k", 2, expect=bad)
                raise AssertionError("a stale expect must conflict")
            except ConflictError:
                pass
        assert (await app.item("k")) is not None and await app.get("k") == 1
        try:
            await app.require("absent")
            raise AssertionError("require of a missing key must raise")
        except NotFoundError:
            pass
        s = await store.session("brief", ttl=2)  # long enough for the first append on a loaded machine
        await s.append("hi")  # (at ttl=0.3 CI once found the session expired here)
        await asyncio.sleep(2.3)
        try:
            await s.append("too late")
            raise AssertionError("an expired session must refuse writes")
        except ExpiredError:
            pass
        assert await s.history() == []

    _run(store_url, main)


def test_tenant_views_get_their_own_lane(store_url: str) -> None:
    """A tenant's handle runs natively where the store does (its view on the driver,
    tests/test_aio_tenants.py); ``native_backend`` — a bare driver for a plain store — is not
    given for a tenant's view (nothing would map its keys)."""
    with statekeel.open(store_url) as plain:
        assert (native_backend(plain) is not None) == _is_native(store_url)
        assert native_backend(plain.tenant("acme")) is None
        lane = lane_for(plain.tenant("acme"), Worker(), Drivers())
        assert (lane is not None) == (_is_native(store_url) or store_url.startswith(GROUPED))


async def _on_the_worker(store: AsyncStore) -> None:
    assert store._lane is None
    s = await store.session("kept")
    await s.append("secret", state={"k": 1})
    assert await s.history() == ["secret"] and await s.state.get("k") == 1
    assert _worker_threads(store) == 1


def test_encrypted_stores_keep_the_worker_off_the_native_drivers(store_url: str) -> None:
    """An encrypted store runs on the loop only on PostgreSQL and Redis (tests/test_aio_sealed.py);
    on the others it keeps the worker, as before."""
    key = base64.b64encode(b"A" * 32).decode()
    with statekeel.open(store_url, encryption=Encryption(master_key=key)) as store:
        assert (lane_for(store, Worker(), Drivers()) is not None) == _is_native(store_url)
        assert (lane_for(store.tenant("acme"), Worker(), Drivers()) is not None) == _is_native(store_url)
    if not _is_native(store_url):
        _run(store_url, _on_the_worker, encryption=Encryption(master_key=key))


def test_tamper_evident_stores_keep_the_worker_off_the_native_drivers(store_url: str) -> None:
    """A tamper-evident store runs on the loop only on PostgreSQL and Redis (tests/test_aio_chained.py),
    a tenant's view of it too; on the others it keeps the worker."""
    integrity = Integrity(key=base64.b64encode(b"M" * 32).decode())
    with statekeel.open(store_url, integrity=integrity) as store:
        assert (lane_for(store, Worker(), Drivers()) is not None) == _is_native(store_url)
        assert (lane_for(store.tenant("acme"), Worker(), Drivers()) is not None) == _is_native(store_url)
    if not _is_native(store_url):
        _run(store_url, _on_the_worker, integrity=integrity)


def test_a_store_serves_a_second_event_loop(store_url: str) -> None:
    """The native pool/client belongs to the loop that opened it: a store used again in a
    second ``asyncio.run`` opens another there (docs/async.md: nothing is bound to one loop)."""
    store = asyncio.run(_opened(store_url))

    async def first() -> None:
        s = await store.session("two-loops")
        await s.append("one")

    async def second() -> None:
        s = await store.session("two-loops")
        await s.append("two")
        assert await s.history() == ["one", "two"] and await store.app.get("x", 0) == 0
        await store.aclose()

    asyncio.run(first())
    asyncio.run(second())


async def _opened(url: str) -> AsyncStore:
    return await statekeel.open_async(url)


def test_more_concurrent_calls_than_connections_wait_for_one(store_url: str) -> None:
    """150 coroutines writing at once on a store with ``max_connections``/``pool_max`` below that:
    calls wait for a free connection instead of failing (Redis raised "Too many connections")."""
    sep = "&" if "?" in store_url else "?"
    option = {"redis": "max_connections=8", "postgresql": "pool_max=4"}.get(store_url.split(":")[0])
    url = store_url + (sep + option if option else "")

    async def main(store: AsyncStore) -> None:
        sessions = [await store.session(f"many-{n}") for n in range(150)]
        assert await asyncio.gather(*(s.append(n) for n, s in enumerate(sessions))) == [1] * 150
        assert [await s.history() for s in sessions[:3]] == [[0], [1], [2]]

    _run(url, main)


def test_concurrent_writes_on_a_threaded_store_are_committed_together(store_url: str) -> None:
    """SQLite and files: 32 coroutines appending at once share commits (one transaction and
    fsync for many batches); a batch whose compare-and-set fails in a group fails alone —
    the others of its group are written, and it writes nothing."""
    if not store_url.startswith(GROUPED):
        with statekeel.open(store_url) as opened:  # closed: a tiered store left open flushes on forever
            assert native_backend(opened) is None or _is_native(store_url)
        return

    async def main(store: AsyncStore) -> None:
        sessions = [await store.session(f"g-{n}") for n in range(32)]
        before = store.stats["group_commits"]
        assert await asyncio.gather(*(s.append(n, state={"n": n}) for n, s in enumerate(sessions))) == [1] * 32
        assert store.stats["group_batches"] >= 32 and store.stats["group_commits"] - before < 32
        assert [await s.history() for s in sessions[:2]] == [[0], [1]] and await sessions[5].state.get("n") == 5

        outcomes = await asyncio.gather(
            store.app.put("once", "first", expect=None), store.app.put("once", "second", expect=None),
            sessions[0].append("kept"), return_exceptions=True,
        )
        assert [type(o).__name__ for o in outcomes] == ["Item", "ConflictError", "int"]
        assert await store.app.get("once") == "first" and await sessions[0].history() == [0, "kept"]

    _run(store_url, main)


def _damage(url: str, record: str, log: str) -> None:
    """Change stored bytes beneath the API: the record's version, entry 2's codec (PostgreSQL) or
    a character of its value (Redis)."""
    parsed = parse(url)
    if url.startswith("postgresql"):
        schema = parsed.option("schema", "statekeel")
        with psycopg.connect(dsn(parsed), autocommit=True) as sql:
            assert sql.execute(f'UPDATE "{schema}".sk_kv SET version = version + 5 WHERE key = %s', [record]).rowcount
            assert sql.execute(
                f'UPDATE "{schema}".sk_entries SET codec = %s WHERE seq = 2 AND log_id = '
                f'(SELECT id FROM "{schema}".sk_logs WHERE name = %s)', ["bin", log],
            ).rowcount  # fmt: skip
        return
    client = redis.Redis.from_url(url.split("?")[0])
    layout = Layout(parsed.option("prefix", "sk"))
    client.hset(layout.kv(record), "v", 99)
    frame = client.lindex(layout.log_data(log), 1)
    assert isinstance(frame, bytes) and b"late" in frame
    client.lset(layout.log_data(log), 1, frame.replace(b"late", b"lat3"))  # type: ignore[arg-type]  # bytes are fine
    client.close()


def test_native_reads_verify_checksums(store_url: str) -> None:
    """Bytes changed beneath the API raise CorruptionError naming the record or entry on the native
    paths too (get, require, update, history), and a refused update writes nothing."""
    if not _is_native(store_url):
        return

    async def write(store: AsyncStore) -> None:
        await store.app.put("ticket", {"id": 1})
        s = await store.session("damaged")
        await s.append("first", "order is late", "third")

    async def read(store: AsyncStore) -> None:
        key = layout.state_key("app", "_", "ticket")
        for call in (lambda: store.app.get("ticket"), lambda: store.app.require("ticket"),
                     lambda: store.app.update("ticket", lambda t: t)):  # fmt: skip
            try:
                await call()
                raise AssertionError("a damaged record must not be returned")
            except CorruptionError as err:
                assert err.key == key
        s = await store.session("damaged")
        for last in (None, 2):
            try:
                await s.history(last=last)
                raise AssertionError("a damaged entry must not be returned")
            except CorruptionError as err:
                assert (err.key, err.seq) == (layout.history_log("damaged"), 2)
        assert await s.history(last=1) == ["third"]

    _run(store_url, write)
    _damage(store_url, layout.state_key("app", "_", "ticket"), layout.history_log("damaged"))
    _run(store_url, read)


def test_calls_waiting_for_a_pool_that_cannot_connect_fail_together(store_url: str) -> None:
    """PostgreSQL down when a loop's pool is opened: the calls that waited for that attempt fail
    with it (UnavailableError) instead of each trying again for the whole timeout in turn."""
    if not store_url.startswith("postgresql"):
        return  # the pool of native asyncio PostgreSQL is what is tested
    from statekeel import UnavailableError
    from statekeel.backends.postgres import PostgresBackend
    from statekeel.backends.postgres.aio import AsyncPostgresBackend
    from statekeel.testing.servers import free_port

    sep = "&" if "?" in store_url else "?"
    sync = PostgresBackend(parse(f"{store_url}{sep}timeout=1"))
    try:
        native = AsyncPostgresBackend(sync)
        port = native._conninfo.rsplit(":", 1)[1].split("/")[0]
        native._conninfo = native._conninfo.replace(f":{port}/", f":{free_port()}/")  # nothing listens there
        assert f":{port}/" not in native._conninfo

        async def main() -> tuple[list[BaseException | Any], float]:
            loop = asyncio.get_running_loop()
            start = loop.time()
            got = await asyncio.gather(*(native.get(f"k/{i}") for i in range(6)), return_exceptions=True)
            return got, loop.time() - start

        got, took = asyncio.run(main())
        assert all(isinstance(e, UnavailableError) for e in got), got
        assert took < 4.5, f"6 calls took {took:.1f} s at timeout=1: they waited one after another"
    finally:
        sync.close()


_GROWING_AT_THE_END = '''
import asyncio, logging, sys, time
import psycopg
import pytest
import statekeel

logging.basicConfig(format="%(name)s %(message)s")
logging.getLogger("psycopg.pool").setLevel(logging.INFO)  # psycopg sets its loggers to WARNING
url, gather = sys.argv[1] + "&application_name=statekeel-grow-test", sys.argv[2] == "gather"
server = psycopg.connect(url.split("?")[0], autocommit=True)

def connections() -> int:  # this store's, whatever other tests left open on the server
    query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'statekeel-grow-test'"
    return server.execute(query).fetchone()[0]

async def open_store() -> statekeel.AsyncStore:
    return await statekeel.open_async(url)

store = asyncio.run(open_store())  # used in every run below (a store is not bound to a loop)
sync = connections()  # the store's sync pool: it stays open (the store is never closed)

async def main() -> None:
    sessions = [await store.session(f"grow-{i}") for i in range(8)]
    await sessions[0].append({"role": "user", "content": "hi"})
    calls = [asyncio.create_task(s.history()) for s in sessions]  # 8 at once: the pool grows
    if gather:
        await asyncio.gather(*calls)
    else:
        await asyncio.wait(calls, return_when=asyncio.FIRST_COMPLETED)  # the rest left running

for run in range(5):
    asyncio.run(main())  # the store is not closed: asyncio.run ending must end the loop's pool
    deadline = time.monotonic() + 30  # the server notices soon after; a loaded machine can take seconds
    while connections() > sync and time.monotonic() < deadline:
        time.sleep(0.05)  # the server notices a closed connection soon after
    print("run", run, "ended; connections left", connections() - sync, flush=True)
'''


def test_asyncio_run_ends_while_the_pool_is_growing(store_url: str, tmp_path: Any) -> None:
    """Calls at once make the pool grow; ``asyncio.run`` ending (its tasks cancelled) while a
    connection is being added must not hang — psycopg_pool swallows that cancellation, and its
    worker would wait forever but for the task that closes the loop's pool (backends/_loop_end.py)
    — and must close the loop's connections, though the store was never closed."""
    if not store_url.startswith("postgresql"):
        return  # the pool of native asyncio PostgreSQL is what is tested
    import subprocess
    import sys

    sep = "&" if "?" in store_url else "?"
    script = tmp_path / "grow.py"
    script.write_text(_GROWING_AT_THE_END)
    for how in ("gather", "first"):
        try:
            done = subprocess.run(
                [sys.executable, str(script), f"{store_url}{sep}pool_min=1&pool_max=8", how],
                capture_output=True, text=True, timeout=120, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"asyncio.run did not end ({how}): {exc.stdout!r} {exc.stderr!r}") from None
        assert done.returncode == 0, done.stderr
        assert done.stdout.count("ended; connections left 0") == 5, done.stdout  # each run's pool closed
        assert "growing pool 'statekeel-aio'" in done.stderr, done.stderr  # what is tested happened


def _connections_made(store_url: str) -> Callable[[], int]:
    """How many connections the store's server has accepted so far (a counter, not those open now)."""
    if store_url.startswith("postgresql"):
        server = psycopg.connect(dsn(parse(store_url)), autocommit=True)

        def made() -> int:
            server.execute("SELECT pg_stat_clear_snapshot()")
            row = server.execute("SELECT sessions FROM pg_stat_database WHERE datname = current_database()").fetchone()
            assert row is not None
            return int(row[0])

        return made
    raw = redis.Redis.from_url(store_url.split("?")[0])
    return lambda: int(raw.info("stats")["total_connections_received"])


def test_threads_each_running_a_loop_share_a_store_with_a_pool_each(store_url: str) -> None:
    """One AsyncStore used at once from two threads, each running its own event loop: each loop
    keeps its own pool (or client) instead of the loops replacing each other's at every turn —
    which opened a pool per switch (tens of connections, seconds of connecting) and left the
    replaced ones open."""
    if not _is_native(store_url):
        return  # the native drivers' pools are what is tested
    made = _connections_made(store_url)

    async def open_store() -> AsyncStore:
        return await statekeel.open_async(store_url)

    store = asyncio.run(open_store())
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def writer(name: str) -> None:
        async def main() -> None:
            s = await store.session(name)
            await s.append("first")  # this loop's pool (or client) opened
            start.wait()  # then the two loops take turns
            for i in range(40):
                await s.append({"role": "user", "content": f"{name} {i}"})
                await asyncio.sleep(0.002)

        try:
            asyncio.run(main())
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    before = made()
    threads = [threading.Thread(target=writer, args=(f"loop-{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == [] and not any(t.is_alive() for t in threads), errors
    assert made() - before <= 6, f"{made() - before} connections for two loops: the loops replaced each other's pools"

    async def check() -> None:
        for i in range(2):
            s = await store.session(f"loop-{i}")
            assert await s.count() == 41
        await store.aclose()

    asyncio.run(check())


def test_idempotent_appends_and_batches_run_natively(store_url: str) -> None:
    """``append(..., idempotency_key=k)`` and ``batch(idempotency_key=k)``: the first attempt is one
    native batch (no worker hop on PostgreSQL and Redis); a retry with the same key writes nothing
    and returns the first attempt's seq (its conflict is read on the worker, once); a keyed batch
    whose own compare-and-set fails raises ConflictError and writes nothing, key included."""
    from test_aio_sealed import _count_worker_calls

    async def main(store: AsyncStore) -> None:
        s = await store.session("idem")
        await s.append("zero")
        calls = _count_worker_calls(store)
        assert await s.append("one", "two", state={"n": 1}, idempotency_key="k1") == 2
        async with s.batch(idempotency_key="k2") as b:
            b.append("three")
            b.put("n", 2)
        assert b.first_seq == 4
        if _is_native(store_url):
            assert calls == [], calls
        assert await s.append("one again", state={"n": 9}, idempotency_key="k1") == 2  # a retry: nothing new
        async with s.batch(idempotency_key="k2") as again:
            again.append("three again")
        assert again.first_seq == 4
        assert await s.history() == ["zero", "one", "two", "three"] and await s.state.get("n") == 2
        with pytest.raises(ConflictError):
            async with s.batch(idempotency_key="k3") as bad:
                bad.append("never")
                bad.put("n", 3, expect=1)  # n is at version 2
        assert await s.history(last=1) == ["three"]
        assert await s.append("four", idempotency_key="k3") == 5  # k3 was not used up by the failed batch
        assert await s.history(last=2) == ["three", "four"]

    _run(store_url, main)


def test_event_appends_run_natively_in_call_order(store_url: str) -> None:
    """``stream.append``/``append_many`` on PostgreSQL and Redis: one native batch and the events
    read back (their seqs and times as stored), no worker hop; appends made at once through one
    stream handle keep their call order; what they wrote reads the same through the sync API."""
    from test_aio_sealed import _count_worker_calls

    async def main(store: AsyncStore) -> None:
        stream = store.events("audit")
        calls = _count_worker_calls(store)
        first = await stream.append("started", {"n": 0}, agent="a-1")
        assert (first.seq, first.type, first.data, first.agent) == (1, "started", {"n": 0}, "a-1")
        batch = await stream.append_many([("step", {"n": 1}), ("step", {"n": 2})])
        assert [e.seq for e in batch] == [2, 3] and batch[0].time == batch[1].time
        done = await asyncio.gather(*(stream.append("tick", {"n": n}) for n in range(10)))
        assert [e.seq for e in done] == list(range(4, 14))  # in the order the calls were made
        if _is_native(store_url):
            assert calls == [], calls
        assert [e.data["n"] for e in await stream.read(start=4)] == list(range(10))
        assert await stream.read() == [first, *batch, *done]  # as a read gives them, times included
        with pytest.raises(statekeel.InvalidInputError):
            await stream.append_many([])

    _run(store_url, main)
    with statekeel.open(store_url) as sync:
        events = sync.events("audit").read()
        assert [e.type for e in events[:3]] == ["started", "step", "step"] and len(events) == 13


def test_state_listings_run_natively(store_url: str) -> None:
    """``items`` (a page), ``keys`` and ``to_dict`` of app, user and session state on PostgreSQL and
    Redis: scans on the driver, no worker hop; pages, prefixes and expiry as the sync API gives them."""
    from test_aio_sealed import _count_worker_calls

    async def main(store: AsyncStore) -> None:
        s = await store.session("listing")
        for n in range(7):
            await store.app.put(f"k{n}", n)
            await s.state.put(f"s/{n}", {"n": n})
        await store.app.put("gone", 1, ttl=0.05)
        await asyncio.sleep(0.1)
        calls = _count_worker_calls(store)
        page = await store.app.items(limit=3)
        assert [i.key for i in page] == ["k0", "k1", "k2"] and page.next == "k2"
        rest = await store.app.items(after=page.next, limit=10)
        assert [i.value for i in rest] == [3, 4, 5, 6] and rest.next is None  # the expired one is not listed
        assert [k async for k in store.app.keys("k")] == [f"k{n}" for n in range(7)]
        assert await s.state.to_dict() == {f"s/{n}": {"n": n} for n in range(7)}
        assert [i.key for i in await s.state.items("s/", limit=2)] == ["s/0", "s/1"]
        assert await store.user("nobody").to_dict() == {}
        if _is_native(store_url):
            assert calls == [], calls
        with pytest.raises(statekeel.InvalidInputError):
            await store.app.items(limit=0)

    _run(store_url, main)
