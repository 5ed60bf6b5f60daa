"""The write-behind flusher replays its queue in groups: a page of queued batches in ONE
PostgreSQL transaction (issue 17), on real Redis and PostgreSQL servers.

What PostgreSQL ends up holding must be exactly what one transaction per batch gave —
records, versions, log seqs and every timestamp of every batch — in fewer transactions
(counted as transaction ids PostgreSQL assigned: every write transaction takes one; the
server runs without autovacuum so nothing else takes any). A batch PostgreSQL refuses
still goes to the dead letters alone; a group committed just before a crash, or by a
flusher that lost its lease, is never replayed twice.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

import statekeel
from conftest import running
from statekeel import ConflictError
from statekeel.backends import open_backend
from statekeel.backends.postgres import PostgresBackend
from statekeel.backends.tiered import TieredBackend, tiered_url
from statekeel.backends.tiered import batches
from statekeel.backends.tiered.flusher import (
    GROUP_BYTES,
    GROUP_OPS,
    READ_PAGE,
    LeaseHeld,
    _groups,
    _replay,
    _replay_group,
    _Watermark,
)
from statekeel.backends.tiered.names import DEAD, QUEUE, WATERMARK
from statekeel.backends.tiered.refs import resolve
from statekeel.protocol import Append, Backend, Delete, Entry, Op, Put
from statekeel.testing.servers import PostgresServer, RedisServer

_n = itertools.count()


@pytest.fixture(scope="module")
def rd() -> Iterator[RedisServer]:
    yield from running(RedisServer())


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    yield from running(PostgresServer(settings={"autovacuum": "off"}))  # no transactions but ours


@pytest.fixture
def urls(rd: RedisServer, pg: PostgresServer) -> tuple[str, str]:
    n = next(_n)
    return f"{rd.url}?prefix=g{n}&timeout=5", f"{pg.url}?schema=groups_{n}&timeout=5"


def _open(urls: tuple[str, str]) -> statekeel.Store:
    url = tiered_url(*urls, mode="write-behind", flush_every=10_000, flush_interval=3600)
    return statekeel.open(url)  # flushes only when a test asks


def _tiers(store: statekeel.Store) -> TieredBackend:
    backend = store.storage
    assert isinstance(backend, TieredBackend)
    return backend


def _pending(tiers: TieredBackend) -> list[Entry]:
    """The queued entries PostgreSQL does not hold yet."""
    info = tiers.hot.log_info(QUEUE)
    assert info is not None
    return tiers.hot.read(QUEUE, start=_Watermark(tiers.cold, info.created_at).seq + 1)


def _mark(tiers: TieredBackend) -> _Watermark:
    info = tiers.hot.log_info(QUEUE)
    assert info is not None
    return _Watermark(tiers.cold, info.created_at)


class _Xids:
    """Write transactions PostgreSQL committed or rolled back meanwhile: the transaction ids it assigned."""

    def __init__(self, pg: PostgresServer) -> None:
        self.conn = psycopg.connect(pg.url, autocommit=True)
        self.last = self._next()

    def _next(self) -> int:
        row = self.conn.execute("SELECT pg_current_xact_id()::text::bigint").fetchone()
        assert row is not None
        return int(row[0])

    def since(self) -> int:
        now = self._next()
        used, self.last = now - self.last - 1, now  # - 1: the id this very query took
        return used


def _dump(pg: PostgresServer, schema: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of a store's tables as statekeel sees them (the tiered backend's own keys left out)."""
    data = "coalesce({t}data, convert_to({t}doc::text, 'UTF8')), {t}doc IS NULL"
    queries = {
        "kv": f"SELECT key, {data.format(t='')}, codec, version, created_at, updated_at, expires_at, checksum "
        f"FROM {schema}.sk_kv WHERE key NOT LIKE '\\_statekeel\\_tier/%%' ORDER BY key",
        "logs": f"SELECT name, first_seq, last_seq, created_at, updated_at, expires_at FROM {schema}.sk_logs "
        "ORDER BY name",
        "entries": f"SELECT l.name, e.seq, {data.format(t='e.')}, e.codec, e.created_at, e.checksum "
        f"FROM {schema}.sk_entries e JOIN {schema}.sk_logs l ON l.id = e.log_id ORDER BY l.name, e.seq",
    }
    with psycopg.connect(pg.url) as conn:
        return {name: conn.execute(q).fetchall() for name, q in queries.items()}


def _workload(store: statekeel.Store) -> None:
    """Every kind of write a feature makes, across partitions, each batch building on earlier ones."""
    s = store.session("support-1", user="u-7", ttl="2h")
    for i in range(6):
        s.append({"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": f"answer {i}"},
                 state={"turn": i})  # fmt: skip
    s.state.put("ticket", {"id": 991}, expect=None)
    s.state.update("ticket", lambda t: {**t, "status": "open"})
    s.state.put("draft", "x", ttl="5m")
    s.state.delete("draft")
    with s.decide("refund order 991", rationale="late", action="refund(991)"):
        pass
    s.notes.write("observer", {"issues": []})
    s.checkpoint("before-tool")
    s.append({"role": "user", "content": "after the checkpoint"})
    store.events("orders").append("task_created", {"task_id": "T1"})
    store.events("orders").append("task_done", {"task_id": "T1"})
    store.run("report-1").step("generate", lambda: ["w1", "w2"])
    store.app.put("flag", True)
    other = store.session("support-2")
    other.append({"role": "user", "content": "hello"})
    other.state.put("k", 1)


# -- the same data, in fewer transactions -------------------------------------------
def test_a_grouped_flush_gives_postgres_what_one_transaction_per_batch_gave(
    urls: tuple[str, str], pg: PostgresServer
) -> None:
    with _open(urls) as store:
        tiers = _tiers(store)
        _workload(store)
        queued = _pending(tiers)
        assert len(queued) >= 25
        reference = open_backend(f"{pg.url}?schema=groups_ref_{next(_n)}")
        try:  # today's replay: each batch alone, with its own clock
            for entry in queued:  # Appends by reference read back from Redis (tiered/refs.py)
                ops, now = batches.decode(entry.data, "test", entry.codec)
                (resolved,), error = resolve(tiers.hot, [(ops, now, "test")])
                assert error is None and not any(isinstance(op, batches.AppendRef) for op in resolved)
                reference.apply(resolved, now=now)
            xids = _Xids(pg)
            assert tiers.flush() == len(queued)
            assert xids.since() == 1  # one transaction, not len(queued)
        finally:
            reference.close()
        assert tiers.hot.log_info(DEAD) is None
        grouped, one_by_one = _dump(pg, _schema(tiers.cold)), _dump(pg, _schema(reference))
        assert grouped == one_by_one
        assert len(grouped["kv"]) >= 10 and len(grouped["entries"]) >= 15
        assert _mark(tiers).seq == queued[-1].seq
    with statekeel.open(urls[1]) as cold:  # and it reads back as what was written
        found = cold.find_session("support-1")
        assert found is not None and found.history()[-1]["content"] == "after the checkpoint"
        assert found.state.get("ticket") == {"id": 991, "status": "open"}


def _schema(backend: Backend) -> str:
    assert isinstance(backend, PostgresBackend)
    return backend.schema


def test_a_long_queue_takes_one_transaction_per_page(urls: tuple[str, str], pg: PostgresServer) -> None:
    with _open(urls) as store:
        tiers = _tiers(store)
        s = store.session("s")
        for i in range(READ_PAGE + 30):
            s.append({"role": "user", "content": f"m{i}"})
        queued = len(_pending(tiers))
        xids = _Xids(pg)
        assert tiers.flush() == queued
        assert xids.since() == 2  # a page of READ_PAGE batches, then the rest
        assert [m["content"] for m in s.history()] == [f"m{i}" for i in range(READ_PAGE + 30)]
    with statekeel.open(urls[1]) as cold:
        found = cold.find_session("s")
        assert found is not None
        assert [m["content"] for m in found.history()] == [f"m{i}" for i in range(READ_PAGE + 30)]


def test_groups_stay_within_their_byte_and_op_bounds() -> None:
    def entry(seq: int, ops: list[Op]) -> Entry:
        return Entry(QUEUE, seq, batches.encode(ops, 1.0), batches.CODEC, 1.0)

    hot = open_backend("memory://")  # no Append by reference: nothing is read from it
    small = [entry(i, [Append("session/s/history", ((b"x" * 100, "raw"),))]) for i in range(1, 11)]
    assert [len(g) for g in _groups(hot, small, True)] == [10]
    assert [len(g) for g in _groups(hot, small, False)] == [1] * 10  # a cold tier without apply_batches
    big = [entry(i, [Put(f"k/{i}", b"x" * (GROUP_BYTES // 3), "raw")]) for i in range(1, 5)]
    assert [len(g) for g in _groups(hot, big, True)] == [2, 2]
    huge = entry(1, [Put("k/huge", b"x" * (GROUP_BYTES + 1), "raw")])
    assert [[q.entry.seq for q in g] for g in _groups(hot, [huge, *small[1:3]], True)] == [[1], [2, 3]]
    many = [entry(i, [Delete(f"k/{i}/{j}") for j in range(GROUP_OPS // 4)]) for i in range(1, 10)]
    assert [len(g) for g in _groups(hot, many, True)] == [4, 4, 1]
    for group in _groups(hot, many, True):
        assert sum(len(q.ops) for q in group) <= GROUP_OPS


def test_an_undecodable_entry_stops_the_replay_after_the_group_before_it() -> None:
    good = [Entry(QUEUE, i, batches.encode([], 1.0), batches.CODEC, 1.0) for i in (1, 2)]
    bad = Entry(QUEUE, 3, b"\x00\x00", batches.CODEC, 1.0)
    got = []
    with pytest.raises(statekeel.CorruptionError, match="#3"):
        for group in _groups(open_backend("memory://"), [*good, bad, *good], True):
            got.append([q.entry.seq for q in group])
    assert got == [[1, 2]]


# -- a refused batch ------------------------------------------------------------------
def test_a_refused_batch_of_a_group_goes_to_the_dead_letters_alone(
    urls: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    with _open(urls) as store:
        tiers = _tiers(store)
        s = store.session("s")
        s.append({"role": "user", "content": "a"}, {"role": "user", "content": "b"})
        tiers.apply([Put("app/x", b"1", "json", expect=None)])  # queued ...
        s.append({"role": "user", "content": "c"})
        s.append({"role": "user", "content": "d"})
        queued = _pending(tiers)
        refused = next(e for e in queued if b"app/x" in e.data)
        tiers.cold.apply([Put("app/x", b"2", "json", expect=None)])  # ... while PostgreSQL got another
        with caplog.at_level(logging.ERROR, logger="statekeel.tiered"):
            assert tiers.flush() == len(queued)
        assert caplog.text.count("refused queued batch") == 1
        (dead,) = tiers.hot.read(DEAD)  # the batch whole, its messages read back from Redis' log
        ops, now = batches.decode(refused.data, "q", refused.codec)
        assert (dead.codec, batches.decode(dead.data, "d", dead.codec)) == (batches.CODEC, (resolve(tiers.hot, [(ops, now, "q")])[0][0], now))
        cold_x = tiers.cold.get("app/x")
        assert cold_x is not None and cold_x.data == b"2"
        assert _mark(tiers).seq == queued[-1].seq
        assert tiers.flush() == 0
    with statekeel.open(urls[1]) as cold:
        found = cold.find_session("s")
        assert found is not None and [m["content"] for m in found.history()] == ["a", "b", "c", "d"]


# -- exactly once ---------------------------------------------------------------------
def test_a_group_committed_before_the_queue_was_trimmed_is_not_replayed(urls: tuple[str, str]) -> None:
    with _open(urls) as store:
        tiers = _tiers(store)
        s = store.session("s")
        for text in ("a", "b", "c"):
            s.append({"role": "user", "content": text})
        queued = _pending(tiers)
        (group,) = _groups(tiers.hot, queued, True)
        _replay_group(tiers.hot, tiers.cold, _mark(tiers), group)  # committed, then "killed" before the trim
        assert tiers.hot.read(QUEUE)[-len(queued) :] == queued
        s.append({"role": "user", "content": "d"})
        assert tiers.flush() == 1  # only "d"
        assert tiers.hot.log_info(DEAD) is None
    with statekeel.open(urls[1]) as cold:
        found = cold.find_session("s")
        assert found is not None and [m["content"] for m in found.history()] == ["a", "b", "c", "d"]


@pytest.mark.parametrize("grouped", [True, False], ids=["group", "one-batch"])
def test_a_flusher_that_lost_the_race_stops_without_writing_or_dead_lettering(
    urls: tuple[str, str], grouped: bool
) -> None:
    """A paused flusher (its lease ran out) read the watermark before another one replayed the
    same batches. Its replay meets the winner's watermark first — not the session record the
    winner's replay created, which would look like a refused batch."""
    with _open(urls) as store:
        tiers = _tiers(store)
        s = store.session("s")  # a new session: its first batch creates records (expect=None)
        s.append({"role": "user", "content": "a"})
        s.append({"role": "user", "content": "b"})
        queued = _pending(tiers)
        paused, winner = _mark(tiers), _mark(tiers)
        for queued_one in queued:
            _replay(tiers.hot, tiers.cold, winner, queued_one)
        with pytest.raises(LeaseHeld):
            if grouped:
                (group,) = _groups(tiers.hot, queued, True)
                _replay_group(tiers.hot, tiers.cold, paused, group)
            else:
                _replay(tiers.hot, tiers.cold, paused, queued[0])
        assert tiers.hot.log_info(DEAD) is None
        assert _mark(tiers).seq == queued[-1].seq
    with statekeel.open(urls[1]) as cold:
        found = cold.find_session("s")
        assert found is not None and [m["content"] for m in found.history()] == ["a", "b"]


# -- PostgresBackend.apply_batches ------------------------------------------------------
@pytest.fixture
def two(pg: PostgresServer) -> Iterator[tuple[PostgresBackend, PostgresBackend]]:
    n = next(_n)
    a, b = open_backend(f"{pg.url}?schema=pair_a{n}"), open_backend(f"{pg.url}?schema=pair_b{n}")
    assert isinstance(a, PostgresBackend) and isinstance(b, PostgresBackend)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def _same(pg: PostgresServer, a: Backend, b: Backend) -> None:
    assert _dump(pg, _schema(a)) == _dump(pg, _schema(b))


def test_apply_batches_is_apply_one_batch_at_a_time_in_one_transaction(
    pg: PostgresServer, two: tuple[PostgresBackend, PostgresBackend]
) -> None:
    grouped, single = two
    t = time.time() - 100
    group: list[tuple[list[Op], float]] = [
        ([Put("k/a", b"1", "json", expect=None), Append("l/x", ((b"e1", "raw"), (b"e2", "raw")))], t),
        ([Put("k/a", b"2", "json", expect=1), Append("l/x", ((b"e3", "raw"),), expires_at=t + 1000)], t + 1),
        ([], t + 2),
        ([Delete("k/a", expect=2), Put("k/b", b'{"v": 1}', "json", expires_at=t + 50), Append("l/x", ((b"e4", "raw"),)),
          *(Put(f"k/many/{i}", b"0", "raw") for i in range(20))], t + 3),  # fmt: skip
        ([Put("k/a", b"3", "json", expect=None)], t + 4),
    ]
    xids = _Xids(pg)
    results = grouped.apply_batches(group)
    assert xids.since() == 1
    assert results == [single.apply(ops, now=now) for ops, now in group]
    _same(pg, grouped, single)
    a = grouped.get("k/a")
    assert a is not None and (a.version, a.created_at, a.updated_at) == (1, t + 4, t + 4)


def test_apply_batches_writes_nothing_when_one_batch_is_refused(two: tuple[PostgresBackend, PostgresBackend]) -> None:
    backend, _ = two
    backend.apply([Put("k/taken", b"1", "json")])
    with pytest.raises(ConflictError) as caught:
        backend.apply_batches([
            ([Put("k/new", b"1", "json", expect=None), Append("l/y", ((b"e1", "raw"),))], 1.0),
            ([Put("k/taken", b"2", "json", expect=None)], 2.0),
        ])  # fmt: skip
    assert caught.value.key == "k/taken"
    assert backend.get("k/new") is None and backend.log_info("l/y") is None


def test_apply_batches_replaces_a_log_only_if_it_is_dead_at_that_batchs_clock(
    pg: PostgresServer, two: tuple[PostgresBackend, PostgresBackend]
) -> None:
    """``l/live`` expired by the wall clock, but the group's first batch (clocked before that)
    renews it; ``l/dead`` is dead at its batch's clock and starts again from 1 — as one batch
    at a time does."""
    grouped, single = two
    t = time.time() - 1000
    for backend in two:
        backend.apply([Append("l/live", ((b"old", "raw"),), expires_at=t + 10),
                       Append("l/dead", ((b"old", "raw"),), expires_at=t + 10)], now=t)  # fmt: skip
    group: list[tuple[list[Op], float]] = [
        ([Append("l/live", ((b"renewed", "raw"),), expires_at=t + 10_000)], t + 5),
        ([Append("l/live", ((b"later", "raw"),)), Append("l/dead", ((b"new", "raw"),))], t + 20),
    ]
    assert grouped.apply_batches(group) == [single.apply(ops, now=now) for ops, now in group]
    _same(pg, grouped, single)
    assert [e.data for e in grouped.read("l/live")] == [b"old", b"renewed", b"later"]
    assert [(e.seq, e.data) for e in grouped.read("l/dead")] == [(1, b"new")]


def test_apply_batches_keeps_json_postgres_rejects_as_bytes(two: tuple[PostgresBackend, PostgresBackend]) -> None:
    backend, _ = two
    backend.apply_batches([([Put("k/ok", b'{"a": 1}', "json")], 1.0), ([Put("k/bad", b"{not json", "json")], 2.0)])
    assert [r.data for r in backend.get_many(["k/ok", "k/bad"]) if r is not None] == [b'{"a": 1}', b"{not json"]
