"""Tiered store gaps left by the session-28 audit, each on real Redis and PostgreSQL servers.

* A Redis wipe (FLUSHALL, a restart without its data) in the middle of a flush: the flusher read
  the queue's epoch once, then read a page of the NEW queue as if it were the old one (its batches
  replayed under the old epoch's watermark, so replayed again in the new epoch: doubled appends), or
  trimmed the new queue up to where the old one was replayed (new batches dropped unreplayed).
* A write-behind listing while another process holds the flusher lease past twice its length
  went on without the queued writes (reads went back in time); a cross-partition ``Expire`` was
  written before batches queued ahead of it.
* PostgreSQL dropping right after it committed a write Redis could not take: flagging Redis'
  cache dirty raised, and the committed write was reported as a plain failure — a caller's retry
  appended it twice.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

import statekeel
from statekeel import UnavailableError
from statekeel.backends.postgres import PostgresBackend
from statekeel.backends.tiered.flusher import Lease, LeaseHeld, flush_queue, watermark
from statekeel.backends.tiered.names import DIRTY, QUEUE, WATERMARK, marker
from statekeel.core.layout import history_log
from statekeel.protocol import Append, Expire, Put, Trim
from statekeel.testing.servers import PostgresServer, RedisServer
from test_tiered import _cold_history, _flushall, _history, _open, _say, _tiers, pg, rd, urls  # noqa: F401

_T = TypeVar("_T")


# -- 1. a Redis wipe in the middle of a flush ------------------------------------------
def _wipe_at(point: str, tiers: Any, rd: RedisServer, store: statekeel.Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Wipe Redis and write eight new turns at ``point`` of the next flush: before it reads the
    queue's page (``read``) or before it trims what it replayed (``trim``)."""
    hot, armed = tiers.hot, [True]
    real_read, real_apply = hot.read, hot.apply

    def wipe() -> None:
        armed.clear()
        _flushall(rd)
        _say(store, *(f"x{i}" for i in range(8)))  # the new queue: seqs 1..8, over the old ones' numbers

    def read(log: str, **kw: Any) -> Any:
        if armed and point == "read" and log == QUEUE:
            wipe()
        return real_read(log, **kw)

    def apply(ops: Any, **kw: Any) -> Any:
        if armed and point == "trim" and any(isinstance(op, Trim) and op.log == QUEUE for op in ops):
            wipe()
        return real_apply(ops, **kw)

    monkeypatch.setattr(hot, "read", read)
    monkeypatch.setattr(hot, "apply", apply)


@pytest.mark.parametrize("point", ["read", "trim"])
def test_a_redis_wipe_during_a_flush_moves_no_watermark_for_the_wrong_queue(
    urls: tuple[str, str], rd: RedisServer, monkeypatch: pytest.MonkeyPatch, point: str
) -> None:
    with _open(urls, "write-behind") as store:
        tiers = _tiers(store)
        _say(store, "a", "b")
        tiers.flush()
        _say(store, "c", "d")  # queued: the wipe loses them unless they were replayed before it
        lease = Lease(tiers.hot, 60.0)
        assert lease.acquire()
        _wipe_at(point, tiers, rd, store, monkeypatch)
        try:
            flush_queue(tiers.hot, tiers.cold, lease)
        except LeaseHeld:
            pass  # the wipe took the lease with the queue: this flusher stops
        monkeypatch.undo()
        tiers.flush()  # the new queue, from its start
        before = ["a", "b", "c", "d"] if point == "trim" else ["a", "b"]  # c, d replayed before the wipe or not
        assert _cold_history(urls) == _history(store) == [*before, *(f"x{i}" for i in range(8))]
        mark, queue = tiers.cold.get(WATERMARK), tiers.hot.log_info(QUEUE)
        assert mark is not None and queue is not None
        doc = json.loads(mark.data)  # (since session 30 it also names the entry replayed last)
        assert (doc["epoch"], doc["seq"]) == (repr(queue.created_at), queue.last_seq)
        assert tiers.flush() == 0  # exactly once


# -- 2. a listing while another process holds the flusher lease -------------------------
def test_a_write_behind_listing_never_goes_without_acknowledged_writes(urls: tuple[str, str]) -> None:
    with _open(urls, "write-behind", lease=0.2) as store:  # a reader gives up after 2 x 0.2 s without progress
        tiers = _tiers(store)
        other = Lease(tiers.hot, 3600.0)  # another process, with a longer lease (this test's flushes are its)
        assert other.acquire()
        store.session("s1").append({"role": "user", "content": "a"})
        flush_queue(tiers.hot, tiers.cold, other)
        store.session("s2").append({"role": "user", "content": "b"})  # acknowledged, still queued: the holder is stuck
        with pytest.raises(UnavailableError, match="flusher lease"):
            _listed(tiers)  # PostgreSQL alone would list s1 only
        with pytest.raises(UnavailableError, match="flusher lease"):
            tiers.apply([Expire("session/", 1e12)])  # must land after the queued batches, not before
        with pytest.raises(UnavailableError, match="flusher lease"):
            tiers.flush()
        assert flush_queue(tiers.hot, tiers.cold, other)[0] >= 1  # the holder replays the queue ...
        assert _listed(tiers) == ["session/s1/history", "session/s2/history"]  # ... all a reader waits for
        tiers.apply([Expire("session/", 1e12)])
        other.release()
        assert {r.expires_at for r in tiers.cold.scan("session/s2/")} == {1e12}


def test_a_reader_waits_for_the_holders_flush_to_pass_what_it_saw_queued(
    urls: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reader waits on the watermark, not the lease: the holder's progress is what it needs."""
    with _open(urls, "write-behind", lease=0.2) as store:
        tiers = _tiers(store)
        store.session("s1").append({"role": "user", "content": "a"})
        other = Lease(tiers.hot, 3600.0)
        assert other.acquire()
        real_get = tiers.cold.get
        armed = [True]

        def get(key: str, **kw: Any) -> Any:  # the holder replays the queue while the reader waits
            if key == WATERMARK and armed:
                armed.clear()
                flush_queue(tiers.hot, tiers.cold, other)
            return real_get(key, **kw)

        monkeypatch.setattr(tiers.cold, "get", get)
        assert _listed(tiers) == ["session/s1/history"]  # PostgreSQL alone had none
        other.release()


def _listed(tiers: Any) -> list[str]:
    """A listing across partitions (from PostgreSQL, once the queue reached it)."""
    return [i.log for i in tiers.scan_logs("session/")]


# -- 3. PostgreSQL dropping right after it committed a write Redis missed ----------------
def _append_retrying(store: statekeel.Store, text: str, pg: PostgresServer) -> list[UnavailableError]:
    """A caller's retry logic: retry an UnavailableError unless it says the write may have been applied."""
    errors: list[UnavailableError] = []
    for _ in range(5):
        try:
            store.session("s").append({"role": "user", "content": text})
            return errors
        except UnavailableError as exc:
            errors.append(exc)
            if exc.maybe_applied:
                return errors
            if not pg.is_running:
                pg.restart()
    return errors


@pytest.mark.parametrize("mode, options", [("write-through", {}), ("write-behind", {"on_hot_failure": "write-through"})])
def test_a_write_postgres_committed_is_committed_even_if_postgres_drops_right_after(
    urls: tuple[str, str], rd: RedisServer, pg: PostgresServer, monkeypatch: pytest.MonkeyPatch,
    mode: str, options: dict[str, Any],
) -> None:  # fmt: skip
    with _open(urls, mode, **options) as store:
        tiers = _tiers(store)
        _say(store, "a")
        tiers.flush()
        armed = [True]

        def committed_then_down(real: Callable[..., Any]) -> Callable[..., Any]:
            def run(self: Any, ops: Any, *args: Any, **kw: Any) -> Any:
                results = real(self, ops, *args, **kw)
                if armed and any(isinstance(op, Append) for op in ops):
                    armed.clear()
                    pg.kill()  # PostgreSQL committed the turn, then went away
                return results

            return run

        monkeypatch.setattr(PostgresBackend, "apply", committed_then_down(PostgresBackend.apply))
        monkeypatch.setattr(PostgresBackend, "apply_sharing", committed_then_down(PostgresBackend.apply_sharing))
        rd.kill()  # Redis cannot take the write: the cache must be flagged dirty in PostgreSQL
        errors = _append_retrying(store, "b", pg)
        monkeypatch.undo()
        assert errors == []  # committed: reported so, not as a failure that invites a retry
        if not pg.is_running:
            pg.restart()
        assert _cold_history(urls) == ["a", "b"]  # once
        rd.start()  # with its AOF: its copy of "s" lacks "b"
        stale = tiers.hot.get(marker("session/s"))  # None if Redis never cached "s"
        _until_available(tiers.maintenance.tick)  # writes the flag the write missed, then drops the stale cache
        assert _until_available(lambda: tiers.cold.get(DIRTY)) is None
        # the stale copy is gone; a read that missed while Redis was down may have copied "s" from
        # PostgreSQL again since (in the background, after the drop): then Redis' copy has "b"
        cached = tiers.hot.get(marker("session/s"))
        if cached is not None:
            assert stale is None or cached.created_at > stale.updated_at
            assert len(tiers.hot.read(history_log("s"))) == 2
        assert _until_available(lambda: _history(store)) == ["a", "b"]


def _until_available(fn: Callable[[], _T]) -> _T:
    """``fn``, retried while the store's pool reconnects after PostgreSQL's restart (at most ten tries)."""
    for _ in range(9):
        try:
            return fn()
        except UnavailableError:
            continue
    return fn()


# -- 4. a flush replays what was queued when it began ----------------------------------
def _queue_during_the_replay(tiers: Any, store: statekeel.Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Once the next flush has read its page of the queue, one more turn is queued (a writer during the flush)."""
    hot, armed = tiers.hot, [True]
    real = hot.read

    def read(log: str, **kw: Any) -> Any:
        found = real(log, **kw)
        if armed and log == QUEUE:
            armed.clear()
            _say(store, "during")
        return found

    monkeypatch.setattr(hot, "read", read)


def test_a_flush_stops_at_the_queue_end_it_found_and_a_pass_due_to_evict_follows_it(
    urls: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flush that chased the writers replayed, trimmed and committed a few batches at a time
    (a Redis fsync and a PostgreSQL commit every few turns). It replays what it found; the next
    flush takes the rest — except when the pass drops or evicts, which need the queue empty."""
    with _open(urls, "write-behind") as store:
        tiers = _tiers(store)
        _say(store, "a", "b")
        _queue_during_the_replay(tiers, store, monkeypatch)
        queued = tiers.hot.log_info(QUEUE)
        assert queued is not None and tiers.flush() == queued.last_seq  # "a" and "b"; "during" came in meanwhile and waits
        assert _cold_history(urls) == ["a", "b"]
        info = tiers.hot.log_info(QUEUE)
        assert info is not None and info.last_seq == watermark(tiers.cold)[1] + 1
        assert tiers.flush() == 1
        assert _cold_history(urls) == ["a", "b", "during"]

        _say(store, "c")
        _queue_during_the_replay(tiers, store, monkeypatch)
        tiers.maintenance._last_evict = 0  # this pass evicts: it follows the queue to its end
        tiers.maintenance.tick()
        assert _cold_history(urls) == ["a", "b", "during", "c", "during"]
        info = tiers.hot.log_info(QUEUE)
        assert info is not None and info.last_seq == watermark(tiers.cold)[1]


# -- 5. PostgreSQL down under a write-behind listing ---------------------------------------
def test_a_write_behind_listing_with_postgres_down_says_postgres_not_redis(
    urls: tuple[str, str], pg: PostgresServer
) -> None:
    """With ``on_hot_failure=fail`` the listing's failure was worded as Redis' ("Redis holds
    acknowledged writes … retry once it answers") when PostgreSQL was the tier that was down."""
    with _open(urls, "write-behind", on_hot_failure="fail") as store:
        _say(store, "a")
        pg.kill()
        try:
            with pytest.raises(UnavailableError) as raised:
                store.storage.scan("session/", limit=10)  # across partitions: read from PostgreSQL
            assert "PostgreSQL" in str(raised.value) and "on_hot_failure" not in str(raised.value)
        finally:
            pg.restart()


# -- 6. a write-behind batch over many partitions Redis does not hold --------------------------
def test_a_write_behind_batch_over_many_uncached_partitions_is_written(urls: tuple[str, str]) -> None:
    """Each partition Redis lacked cost one refused attempt and one copy, at most five a batch: a
    batch over six new sessions (a LangGraph store batch over several namespaces writes more) failed
    with "a partition kept leaving Redis". The copies of every missing partition are made at once."""
    with _open(urls, "write-behind") as store:
        tiers = _tiers(store)
        ops = [Put(f"session/n{i}/state/k", b"1", "json") for i in range(12)]
        tiers.apply(ops)
        assert [r is not None for r in tiers.get_many([op.key for op in ops])] == [True] * 12
        tiers.flush()
        assert all(tiers.cold.get(op.key) is not None for op in ops)
