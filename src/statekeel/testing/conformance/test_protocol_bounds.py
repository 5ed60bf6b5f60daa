"""The backend protocol at the edges of its numbers: every backend must behave like memory.

* A ``limit`` beyond any integer the database can hold (``10**30``) means "no limit" on every
  read that takes one — ``scan``, ``scan_logs``, ``read``, ``read_values``,
  ``get_many_and_values`` and ``purge_expired`` — as on memory; it is never a driver's
  overflow surfacing as an error (SQLite, Redis and the tiers above Redis let it out).
* ``read``'s ``start`` and ``stop`` far outside a log's range select what lies inside it.
* The API's own limits go up to ``MAX_INT`` (2**63 - 1), sync and async: listing sessions
  with that limit lists them all (Redis refused it in a Lua script).
* A ``limit`` of zero or below returns nothing from every read that takes one (never everything,
  as SQLite's ``LIMIT -1`` would, nor all but the last, as a slice ``[:-1]`` would).
* ``LoadEntries`` takes entries numbered from 1: one at seq 0 or below is refused with
  :class:`~statekeel.errors.InvalidInputError` and the whole batch writes nothing.
"""

from __future__ import annotations

import asyncio
import time

import pytest

import statekeel
from statekeel import InvalidInputError, Store
from statekeel.core.validate import MAX_INT
from statekeel.protocol import Append, Entry, LoadEntries, Op, Put

HUGE = (2**63 - 1, 2**64, 10**30)
"""The largest limit the API takes (``core.validate.MAX_INT``), and limits past every database's integers."""


def _fill(store: Store) -> None:
    store.storage.apply([Put(f"b/x/k{i}", b"1", "json") for i in range(3)])
    store.storage.apply([Append(f"b/x/log{i}", ((b"1", "json"), (b"2", "json"))) for i in range(2)])


@pytest.mark.parametrize("limit", HUGE)
def test_a_huge_limit_on_a_scan_is_no_limit(store: Store, limit: int) -> None:
    _fill(store)
    b = store.storage
    assert [r.key for r in b.scan("b/x/", limit=limit)] == ["b/x/k0", "b/x/k1", "b/x/k2"]
    assert [r.key for r in b.scan("b/x/", after="b/x/k0", limit=limit)] == ["b/x/k1", "b/x/k2"]
    assert [i.log for i in b.scan_logs("b/x/", limit=limit)] == ["b/x/log0", "b/x/log1"]
    assert [i.log for i in b.scan_logs("b/x/", after="b/x/log0", limit=limit)] == ["b/x/log1"]


@pytest.mark.parametrize("limit", HUGE)
def test_a_huge_limit_on_a_log_read_is_no_limit(store: Store, limit: int) -> None:
    _fill(store)
    b = store.storage
    for reverse in (False, True):
        assert [e.seq for e in b.read("b/x/log0", limit=limit, reverse=reverse)] == [1, 2]
        assert b.read_values("b/x/log0", limit=limit, reverse=reverse) == [(b"1", "json"), (b"2", "json")]
        records, values = b.get_many_and_values(["b/x/k0"], "b/x/log0", limit=limit, reverse=reverse)
        assert [r.key for r in records if r is not None] == ["b/x/k0"] and len(values) == 2


def test_the_largest_limit_the_api_takes_lists_everything_sync_and_async(store: Store, store_url: str) -> None:
    for sid in ("a", "b"):
        store.session(sid).append("hi")
    assert [i.id for i in store.sessions(limit=MAX_INT).items] == ["a", "b"]
    assert store.session("a").history(last=MAX_INT) == ["hi"]

    async def main() -> None:
        async with statekeel.open_async(store_url) as astore:
            await (await astore.session("c")).append("hey")
            assert [i.id for i in (await astore.sessions(limit=MAX_INT)).items] == ["a", "b", "c"]
            assert await (await astore.session("c")).history(last=MAX_INT) == ["hey"]

    asyncio.run(main())


@pytest.mark.parametrize("bound", HUGE)
def test_start_and_stop_far_outside_a_log_select_what_lies_inside(store: Store, bound: int) -> None:
    _fill(store)
    b = store.storage
    assert [e.seq for e in b.read("b/x/log0", start=-bound, stop=bound)] == [1, 2]
    assert [e.seq for e in b.read("b/x/log0", start=bound)] == []
    assert [e.seq for e in b.read("b/x/log0", stop=-bound)] == []
    assert [e.seq for e in b.read("b/x/log0", start=-bound, limit=1, reverse=True)] == [2]


@pytest.mark.parametrize("limit", HUGE)
def test_a_huge_limit_on_purge_expired_purges_everything_expired(store: Store, limit: int) -> None:
    b = store.storage
    soon = time.time() + 0.2
    b.apply([Put("b/x/k", b"1", "json", expires_at=soon), Append("b/x/log", ((b"1", "json"),), expires_at=soon),
             Put("b/x/kept", b"1", "json")])  # fmt: skip
    time.sleep(0.3)
    assert b.purge_expired(limit=limit) >= 2  # Redis: the index entries of keys it expired; tiered: both tiers
    assert b.purge_expired(limit=limit) == 0
    assert [r.key for r in b.scan("b/x/")] == ["b/x/kept"] and b.scan_logs("b/x/") == []


@pytest.mark.parametrize("seq", [0, -1, -(2**63), -(10**30)])
def test_load_entries_refuses_a_seq_below_1_and_writes_nothing(store: Store, seq: int) -> None:
    b = store.storage
    b.apply([Append("b/x/old", ((b"1", "json"),))])
    bad = (Entry("b/x/new", seq, b"0", "json", 1000.0), Entry("b/x/new", 1, b"1", "json", 1001.0))
    batches: list[list[Op]] = [
        [LoadEntries("b/x/new", bad)],
        [Put("b/x/k", b"1", "json"), LoadEntries("b/x/new", bad[1:] + bad[:1])],  # the bad one last
        [LoadEntries("b/x/old", (Entry("b/x/old", seq, b"0", "json", 1000.0),))],  # onto a log that exists
    ]
    for ops in batches:
        with pytest.raises(InvalidInputError, match="seq"):
            b.apply(ops)
    assert b.read("b/x/new") == [] and b.log_info("b/x/new") is None and b.get("b/x/k") is None
    assert [(e.seq, e.data) for e in b.read("b/x/old")] == [(1, b"1")]
    assert [i.log for i in b.scan_logs("b/x/")] == ["b/x/old"]


@pytest.mark.parametrize("limit", (0, -1, -(10**30)))
def test_a_limit_of_zero_or_below_returns_nothing(store: Store, limit: int) -> None:
    """As on memory: nothing, never everything (SQLite's ``LIMIT -1``) or the tail sliced off."""
    _fill(store)
    b = store.storage
    assert b.scan("b/x/", limit=limit) == []
    assert b.scan_logs("b/x/", limit=limit) == []
    for reverse in (False, True):
        assert b.read("b/x/log0", limit=limit, reverse=reverse) == []
        assert b.read_values("b/x/log0", limit=limit, reverse=reverse) == []
        records, values = b.get_many_and_values(["b/x/k0"], "b/x/log0", limit=limit, reverse=reverse)
        assert [r.key for r in records if r is not None] == ["b/x/k0"] and values == []
    assert b.purge_expired(limit=limit) == 0
