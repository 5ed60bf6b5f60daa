"""The tiered backend (Redis hot, PostgreSQL cold) when things go wrong, on real servers.

The conformance suite runs on it in both modes (``--statekeel-backends=tiered,tiered-wb``);
these tests cover what only a tiered store has: Redis wiped or down, PostgreSQL
restarted, a process killed with batches queued, idle partitions evicted, and the
URL options. What a Redis wipe loses in write-behind mode is exactly the batches
not yet replayed into PostgreSQL — tested below batch by batch.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing as mp
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
import redis as redis_py

import statekeel
from conftest import running
from statekeel import ConfigurationError, UnavailableError
from statekeel.backends.tiered import TieredBackend, tiered_url
from statekeel.backends.tiered.flusher import Lease
from statekeel.backends.tiered import hydrate as tiered_hydrate
from statekeel.backends.tiered.hydrate import drop, hydrate
from statekeel.backends.tiered.names import DIRTY, MARKERS, QUEUE, lock, marker, prefix_partition
from statekeel.backends.tiered.writes import behind_partitions, partitions
from statekeel.protocol import Append, Backend, Delete, Expire, Op, Put, Touch, Trim
from statekeel.testing.servers import PostgresServer, RedisServer

_n = itertools.count()


@pytest.fixture(scope="module")
def rd() -> Iterator[RedisServer]:
    yield from running(RedisServer())


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    yield from running(PostgresServer())


@pytest.fixture
def urls(rd: RedisServer, pg: PostgresServer) -> Iterator[tuple[str, str]]:
    """A fresh Redis prefix and PostgreSQL schema; both servers running again after the test."""
    n = next(_n)
    yield f"{rd.url}?prefix=t{n}&timeout=2", f"{pg.url}?schema=tiered_{n}&timeout=3"
    rd.start()
    if not pg.is_running:
        pg.restart()


def _open(urls: tuple[str, str], mode: str, **options: Any) -> statekeel.Store:
    options = {"flush_every": 10_000, "flush_interval": 3600, **options}  # flushes only when a test asks
    return statekeel.open(tiered_url(*urls, mode=mode, **options))


def _tiers(store: statekeel.Store) -> TieredBackend:
    backend = store.storage
    assert isinstance(backend, TieredBackend)
    return backend


def _say(store: statekeel.Store, *texts: str) -> None:
    s = store.session("s")
    for text in texts:
        s.append({"role": "user", "content": text})


def _history(store: statekeel.Store) -> list[str]:
    return [m["content"] for m in store.session("s").history()]


def _cold_history(urls: tuple[str, str]) -> list[str]:
    """What PostgreSQL alone holds, read without writing (``session()`` would create the session)."""
    with statekeel.open(urls[1]) as cold:
        found = cold.find_session("s")
        return [m["content"] for m in found.history()] if found is not None else []


def _flushall(rd: RedisServer) -> None:
    redis_py.Redis(port=rd.port).flushall()


# -- Redis wiped -------------------------------------------------------------------
def test_write_through_loses_nothing_when_redis_is_wiped(urls: tuple[str, str], rd: RedisServer) -> None:
    with _open(urls, "write-through") as store:
        _say(store, "a", "b")
        store.session("s").state.put("k", 1)
        _flushall(rd)
        assert _history(store) == ["a", "b"]  # hydrated from PostgreSQL
        assert store.session("s").state.get("k") == 1
        _say(store, "c")
        store.session("s").state.put("k", 2, expect=1)  # versions carried over by hydration
        assert _history(store) == _cold_history(urls) == ["a", "b", "c"]


def test_write_behind_wipe_loses_exactly_the_batches_not_yet_flushed(urls: tuple[str, str], rd: RedisServer) -> None:
    with _open(urls, "write-behind") as store:
        _say(store, "a", "b")
        assert _tiers(store).flush() >= 2
        _say(store, "c", "d")  # accepted by Redis, still queued
        _flushall(rd)
        assert _history(store) == ["a", "b"]  # the loss window: c and d
        _say(store, "e")
        _tiers(store).flush()
        assert _history(store) == _cold_history(urls) == ["a", "b", "e"]


def test_write_behind_loses_nothing_when_redis_crashes(urls: tuple[str, str], rd: RedisServer) -> None:
    with _open(urls, "write-behind") as store:
        _say(store, "a", "b")  # queued, not flushed
        rd.kill()  # SIGKILL: the AOF (appendfsync always) has the data and the queue
        rd.start()
        assert _history(store) == ["a", "b"]
        _tiers(store).flush()
        assert _cold_history(urls) == ["a", "b"]


# -- PostgreSQL down ---------------------------------------------------------------
def test_write_behind_keeps_accepting_while_postgres_restarts(urls: tuple[str, str], pg: PostgresServer) -> None:
    with _open(urls, "write-behind") as store:
        _say(store, "a")
        _tiers(store).flush()
        pg.kill()
        _say(store, "b", "c")  # Redis accepts them
        assert _history(store) == ["a", "b", "c"]
        with pytest.raises(UnavailableError):
            _tiers(store).flush()
        pg.restart()
        for _ in range(3):  # the pool replaces the connections the restart broke
            try:
                _tiers(store).flush()
                break
            except UnavailableError:
                continue
        assert _cold_history(urls) == ["a", "b", "c"]


# -- a process killed with batches queued -------------------------------------------
def _queue_then_hang(url: str, started: Any) -> None:
    store = statekeel.open(url)
    s = store.session("s")
    for i in range(5):
        s.append({"role": "user", "content": f"m{i}"})
    assert Lease(_tiers(store).hot, 1.0).acquire()  # and die holding the flusher lease
    started.set()
    time.sleep(600)


def test_another_process_finishes_the_flush_of_a_killed_one(urls: tuple[str, str]) -> None:
    url = tiered_url(*urls, mode="write-behind", flush_every=10_000, flush_interval=3600, lease=1.0)
    statekeel.open(url).close()
    ctx = mp.get_context("spawn")
    started = ctx.Event()
    child = ctx.Process(target=_queue_then_hang, args=(url, started))
    child.start()
    try:
        assert started.wait(60)
        child.kill()  # SIGKILL: no close(), no flush, the lease still held
        child.join()
    finally:
        if child.is_alive():
            child.kill()
    assert _cold_history(urls) == []
    with statekeel.open(url) as store:  # opening lists keys/, which waits the lease out and replays the queue
        _tiers(store).flush()
        assert _cold_history(urls) == [f"m{i}" for i in range(5)]
        assert _tiers(store).flush() == 0  # exactly once
    assert _cold_history(urls) == [f"m{i}" for i in range(5)]


def test_a_replay_interrupted_after_postgres_committed_does_not_append_twice(urls: tuple[str, str]) -> None:
    from statekeel.backends.tiered.flusher import _replay, _Watermark
    from statekeel.backends.tiered.names import DEAD, QUEUE

    with _open(urls, "write-behind") as store:
        _say(store, "first")  # the session exists in PostgreSQL: what follows are plain appends
        tiers = _tiers(store)
        tiers.flush()
        _say(store, "a", "b", "c")
        info = tiers.hot.log_info(QUEUE)
        assert info is not None
        queued = tiers.hot.read(QUEUE)[-3:]
        _replay(tiers.hot, tiers.cold, _Watermark(tiers.cold, info.created_at), queued[0])
        assert _cold_history(urls) == ["first", "a"]  # committed in PostgreSQL, then "killed" before the trim
        assert tiers.hot.read(QUEUE)[-3:] == queued
        tiers.flush()
        assert _cold_history(urls) == ["first", "a", "b", "c"]  # "a" replayed once, not twice
        assert tiers.hot.log_info(DEAD) is None  # and nothing refused


def test_write_behind_purge_sees_the_expiries_still_queued(urls: tuple[str, str]) -> None:
    with _open(urls, "write-behind") as store:
        tiers = _tiers(store)
        tiers.apply([Put("session/s/k", b"1", "json")])
        tiers.flush()
        tiers.apply([Touch("session/s/k", expires_at=time.time() - 1)])  # queued, not in PostgreSQL yet
        assert tiers.purge_expired() >= 1
        assert tiers.cold.get("session/s/k", include_expired=True) is None


def test_a_dirty_cache_is_not_dropped_over_batches_queued_since_the_flush(urls: tuple[str, str]) -> None:
    with _open(urls, "write-behind") as store:
        tiers = _tiers(store)
        _say(store, "a")
        tiers.flush()
        tiers.cold.apply([Put(DIRTY, b"true", "json")])  # PostgreSQL took a write Redis missed
        _say(store, "b")  # queued after the flush: only Redis has it
        tiers.maintenance._reset_if_dirty()
        assert tiers.hot.get(marker("session/s")) is not None  # not dropped over "b"
        for _ in range(3):  # a pass whose fence meets a queued batch leaves the drop to the next pass (by design);
            tiers.flush()  # CI under load once saw the first pass after this flush leave the marker
            tiers.maintenance._reset_if_dirty()
            if tiers.hot.get(marker("session/s")) is None:
                break
        assert tiers.hot.get(marker("session/s")) is None  # dropped once "b" reached PostgreSQL
        assert tiers.cold.get(DIRTY) is None
        assert _history(store) == ["a", "b"]


# -- idle partitions leave Redis ----------------------------------------------------
def test_idle_partitions_are_evicted_and_read_back(urls: tuple[str, str]) -> None:
    for mode in ("write-through", "write-behind"):
        with _open(urls, mode, hot_ttl=0.2) as store:
            store.session(mode).append({"role": "user", "content": "x"})
            tiers = _tiers(store)
            part = f"session/{mode}"
            _read_until_cached(store, tiers, mode)
            time.sleep(0.3)
            tiers.maintenance._last_evict = 0  # the next pass evicts now
            tiers.maintenance.tick()
            assert tiers.hot.get(marker(part)) is None
            assert tiers.hot.read(f"session/{mode}/history") == []  # gone from Redis ...
            assert [m["content"] for m in store.session(mode).history()] == ["x"]  # ... read back from PostgreSQL
            _read_until_cached(store, tiers, mode)  # and copied into Redis again beside that read
            assert [e.seq for e in tiers.hot.read(f"session/{mode}/history")] == [1]


def test_write_behind_writers_of_one_session_correct_each_others_marker_version(urls: tuple[str, str]) -> None:
    """Each write-behind write checks its partition's marker at the version its handle last saw
    and counts the write; another handle's writes move it on, which costs a retry, never a write."""
    with _open(urls, "write-behind") as a, _open(urls, "write-behind") as b:
        for i in range(6):
            (a if i % 3 else b).session("s").append({"role": "user", "content": str(i)})
        assert _history(a) == _history(b) == [str(i) for i in range(6)]
        cached, queue = _tiers(a).hot.get(marker("session/s")), _tiers(a).hot.log_info(QUEUE)
        assert queue is not None and queue.last_seq >= 6  # every write batch of either handle, in order
        assert cached is not None and cached.version == 1 + queue.last_seq  # hydrated at 1, then one per batch
        assert _tiers(a).flush() + _tiers(b).flush() >= 6
        assert _cold_history(urls) == [str(i) for i in range(6)]


@pytest.mark.parametrize(
    "ops",
    [
        [Append("session/a/log", ((b"1", "json"),)), Put("session/a/x", b"1", "json"), Put("idx/s/a", b"", "json")],
        [Delete("k"), Expire("session/a/state/", 1.0), Touch("session/b/meta"), Trim("session/a/history", 2)],
        [Put("session/a/x", b"1", "json"), Expire("session/", 1.0)],  # spans partitions: written through
        [Expire("", 1.0)],
    ],
)
def test_a_write_behind_batch_finds_its_partitions_in_one_pass(ops: list[Op]) -> None:
    memo: dict[str, str] = {}
    for _ in range(2):  # the second time from the memo
        spans = any(isinstance(op, Expire) and prefix_partition(op.prefix) is None for op in ops)
        assert behind_partitions(ops, memo) == (None if spans else partitions(ops))


# -- a copy into Redis racing a write-through write -----------------------------------
def _waiting_on_a_lock(pg: PostgresServer) -> bool:
    with psycopg.connect(pg.url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted").fetchone()
        return row is not None and row[0] > 0


def _race_a_copy(
    tiers: TieredBackend, pg: PostgresServer, monkeypatch: pytest.MonkeyPatch, ops: list[Op], check: Callable[[], None]
) -> None:
    """Copy ``session/s`` into Redis; between reading PostgreSQL and installing the copy, start a
    write of ``ops`` and wait until it waits on a lock; ``check`` then sees PostgreSQL without it.

    Only this copy is intercepted: copies started in the background (the store's own reads when it
    opened) are waited for first and, should another start, go through untouched."""
    tiers.hydrator.wait()
    real_copy = tiered_hydrate.partition_copy
    writer = threading.Thread(target=lambda: tiers.apply(ops))
    ours = threading.get_ident()

    def copy_then_write(cold: Backend, part: str) -> list[Op]:
        copy = real_copy(cold, part)
        if part != "session/s" or threading.get_ident() != ours:
            return copy
        writer.start()
        deadline = time.monotonic() + 30
        while not _waiting_on_a_lock(pg):  # the writer waits for the copy's lock ...
            assert time.monotonic() < deadline, "the write did not wait for the copy"
            time.sleep(0.01)
        check()  # ... so no reader can see it in PostgreSQL yet
        return copy

    monkeypatch.setattr(tiered_hydrate, "partition_copy", copy_then_write)
    assert hydrate(tiers.hot, tiers.cold, "session/s")  # the copy is installed, without the write
    writer.join(30)
    assert not writer.is_alive()


def test_a_write_through_write_waits_for_a_copy_into_redis_to_be_installed(
    urls: tuple[str, str], pg: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race this prevents: a copy reads PostgreSQL; a write commits; a reader misses Redis and
    reads that write from PostgreSQL; the copy is installed before the writer updates Redis — and
    the reader's next read, from Redis, would go back in time. The write waits for the copy instead."""
    with _open(urls, "write-through") as store:
        tiers = _tiers(store)
        tiers.apply([Put("session/s/k", b"1", "json")])
        drop(tiers.hot, ["session/s"])

        def unchanged() -> None:
            rec = tiers.cold.get("session/s/k")
            assert rec is not None and rec.data == b"1"

        _race_a_copy(tiers, pg, monkeypatch, [Put("session/s/k", b"2", "json")], unchanged)
        assert tiers.hot.get(marker("session/s")) is not None  # still cached: the writer updated it
        found = tiers.get("session/s/k")
        assert found is not None and found.data == b"2"


def test_a_write_spanning_partitions_waits_for_a_copy_into_redis_to_be_installed(
    urls: tuple[str, str], pg: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ``Expire`` of a prefix shorter than a partition names no partition lock; it holds the
    spanning lock exclusively, which every copy holds shared — so the copy cannot be installed
    without it (Redis would keep the old expiry for as long as the partition stays cached)."""
    with _open(urls, "write-through") as store:
        tiers = _tiers(store)
        tiers.apply([Put("session/s/k", b"1", "json")])
        drop(tiers.hot, ["session/s"])
        until = time.time() + 3600

        def not_committed() -> None:
            rec = tiers.cold.get("session/s/k")
            assert rec is not None and rec.expires_at is None

        _race_a_copy(tiers, pg, monkeypatch, [Expire("session/", until)], not_committed)
        for rec in (tiers.hot.get("session/s/k"), tiers.cold.get("session/s/k")):
            assert rec is not None and rec.expires_at == pytest.approx(until)


def test_a_write_to_a_partition_redis_does_not_hold_is_in_its_next_copy(urls: tuple[str, str]) -> None:
    with _open(urls, "write-through") as store:
        tiers = _tiers(store)
        tiers.apply([Put("session/s/k", b"1", "json")])
        drop(tiers.hot, ["session/s"])
        tiers.apply([Put("session/s/k", b"2", "json", expect=1)])  # nothing to update in Redis
        assert tiers.hot.get("session/s/k") is None
        assert hydrate(tiers.hot, tiers.cold, "session/s")
        tiers.apply([Put("session/s/k", b"3", "json", expect=2)])  # cached again: Redis is updated too
        found = tiers.hot.get("session/s/k")
        assert found is not None and (found.data, found.version) == (b"3", 3)


def test_a_copy_gives_up_while_a_write_holds_its_partition(
    urls: tuple[str, str], pg: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _open(urls, "write-through") as store:
        tiers = _tiers(store)
        tiers.apply([Put("session/s/k", b"1", "json")])
        drop(tiers.hot, ["session/s"])
        monkeypatch.setattr(tiered_hydrate, "LOCK_WAIT", 0.2)
        name = f"{urls[1].split('schema=')[1].split('&')[0]}/{lock('session/s')}"
        with psycopg.connect(pg.url, autocommit=True) as conn, conn.transaction():  # a writer, stuck
            conn.execute("SELECT pg_advisory_xact_lock_shared(hashtextextended(%s, 0))", [name])
            with pytest.raises(statekeel.StatekeelError):
                hydrate(tiers.hot, tiers.cold, "session/s")
            assert tiers.hot.get(marker("session/s")) is None
            found = tiers.get("session/s/k")  # served from PostgreSQL meanwhile (its copy gives up too)
            assert found is not None and found.data == b"1"
            tiers.hydrator.wait()
            assert tiers.hot.get(marker("session/s")) is None
        assert hydrate(tiers.hot, tiers.cold, "session/s")


def _read_until_cached(store: statekeel.Store, tiers: TieredBackend, sid: str) -> None:
    """Read the session until its partition is in Redis: a read that misses copies it in the
    background, and a write-through write racing that copy makes it give up (a fresh read retries)."""
    for _ in range(20):
        store.find_session(sid)
        tiers.hydrator.wait()
        if tiers.hot.get(marker(f"session/{sid}")) is not None:
            return
    raise AssertionError(f"session/{sid} never got cached in Redis")


# -- Redis down ---------------------------------------------------------------------
def test_write_through_works_with_redis_down_and_drops_its_stale_cache_after(
    urls: tuple[str, str], rd: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    with _open(urls, "write-through") as store:
        _say(store, "a")
        store.session("s").state.put("k", 1)
        rd.kill()
        with caplog.at_level(logging.WARNING, logger="statekeel.tiered"):
            _say(store, "b")  # degraded: PostgreSQL only
            store.session("s").state.put("k", 2, expect=1)
            assert _history(store) == ["a", "b"]
        assert "Redis unavailable" in caplog.text
        rd.start()  # Redis comes back with its AOF: its copy of "s" misses b and k=2
        _tiers(store).maintenance.tick()  # the cache is dropped ...
        assert _history(store) == ["a", "b"]  # ... so reads see PostgreSQL's
        assert store.session("s").state.get("k") == 2


def test_write_behind_with_redis_down_fails_or_writes_through_as_configured(
    urls: tuple[str, str], rd: RedisServer
) -> None:
    with _open(urls, "write-behind") as failing, _open(urls, "write-behind", on_hot_failure="write-through") as falling:
        _say(failing, "a")
        _tiers(failing).flush()
        rd.kill()
        with pytest.raises(UnavailableError):
            _say(failing, "b")
        _say(falling, "c")
        assert _cold_history(urls) == ["a", "c"]


# -- configuration ------------------------------------------------------------------
@pytest.mark.parametrize(
    "query, named",
    [
        ("mode=write-behind&flush_evry=5", "flush_every"),
        ("mode=sideways", "mode"),
        ("mode=write-behind&on_hot_failure=retry", "on_hot_failure"),
        ("flush_every=0", "flush_every"),
        ("hot_ttl=-1", "hot_ttl"),
    ],
)
def test_bad_options_are_refused_by_name(urls: tuple[str, str], query: str, named: str) -> None:
    given = {part.split("=", 1)[0] for part in query.split("&")}
    kept = [part for part in tiered_url(*urls).split("?", 1)[1].split("&") if part.split("=", 1)[0] not in given]
    url = "tiered://?" + "&".join([*kept, query])  # each option once: a repeated one is refused as such
    with pytest.raises(ConfigurationError, match=named):
        statekeel.open(url)


def test_a_cold_tier_with_one_pooled_connection_is_refused(urls: tuple[str, str]) -> None:
    with pytest.raises(ConfigurationError, match="pool_max of at least 2"):
        statekeel.open(tiered_url(urls[0], urls[1] + "&pool_max=1"))


def test_urls_and_constructor_say_the_same(urls: tuple[str, str]) -> None:
    with pytest.raises(ConfigurationError, match="names no \\?cold="):
        statekeel.open("tiered://?hot=redis%3A%2F%2Fh%3A1%2F0")
    with pytest.raises(ConfigurationError, match="postgresql://"):
        tiered_url(urls[0], "sqlite:///x.db")
    with pytest.raises(ConfigurationError, match="takes no option"):
        tiered_url(*urls, flush=3)
    with pytest.raises(ConfigurationError, match="mode in the tiered:// URL"):
        statekeel.open(tiered_url(*urls), mode="write-behind")  # never silently ignored
    backend = TieredBackend(hot=urls[0], cold=urls[1], mode="write-behind", flush_every=5)
    try:
        assert backend.settings.mode == "write-behind" and backend.settings.flush_every == 5
        assert "mode=write-behind" in backend.url and "flush_every=5" in backend.url
        with statekeel.Store(backend) as store:
            _say(store, "a")
            assert _history(store) == ["a"]
    finally:
        backend.close()
    assert MARKERS.startswith("_statekeel_tier/")


def test_a_copy_into_redis_waits_for_a_pause_in_the_callers_reads(
    urls: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A copy started by a read that missed waits until callers stop reading PostgreSQL (it used
    to compete with the rest of their burst of reads); closing the store drops a waiting copy."""
    monkeypatch.setattr(tiered_hydrate, "QUIET_MOST", 60.0)  # only a pause starts it here
    with _open(urls, "write-through") as store:
        tiers = _tiers(store)
        tiers.apply([Put("session/s/k", b"1", "json")])
        tiers.hydrator.wait()
        drop(tiers.hot, ["session/s"])
        with tiers.hydrator.pauses.reading():  # a caller reads PostgreSQL ...
            assert tiers.get("session/s/k") is not None  # ... and another read misses Redis: a copy is asked for
            time.sleep(0.3)
            assert tiers.hot.get(marker("session/s")) is None  # not copied while the caller reads
        tiers.hydrator.wait()
        assert tiers.hot.get(marker("session/s")) is not None  # copied in the pause after it
        drop(tiers.hot, ["session/s"])
        reading = tiers.hydrator.pauses.reading()
        reading.__enter__()
        assert tiers.get("session/s/k") is not None
    assert tiers.hydrator.pauses.wait() is False  # closed: the copy that waited was not made
    reading.__exit__(None, None, None)
