"""StatekeelStore's index by write time (statekeel.integrations.langgraph._index), on every backend.

``search`` without a query walks the index newest first and stops at its page: it reads
O(page) records, not every item of the prefix, and returns exactly what decoding and sorting
every item returns — across updates, deletes, expiry, stale entries, a store written before the
index (built on the first search, resumably) and one whose index is newer than this code.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from langgraph.store.base import PutOp, SearchOp

import statekeel
from statekeel.core import layout
from statekeel.errors import SchemaTooNewError, UnavailableError
from statekeel.integrations.langgraph import StatekeelStore, _filters, _index
from statekeel.protocol import Delete, Put, Touch, keys


@pytest.fixture
def memory(store: statekeel.Store) -> StatekeelStore:
    return StatekeelStore(store)


def _entries(store: statekeel.Store) -> list[str]:
    return [r.key for r in store.backend.scan(_index.INDEX, limit=100_000)]


def _reference(store: statekeel.Store, prefix: tuple[str, ...], filt: dict[str, Any] | None = None,
               offset: int = 0, limit: int = 10) -> list[tuple[tuple[str, ...], str]]:  # fmt: skip
    """Every item decoded, filtered and sorted newest write first (ties in key order)."""
    recs = store.backend.scan(layout.langgraph_store_prefix(prefix), limit=100_000)
    docs = [(r, store.codec.decode(r.data, r.codec, r.key)) for r in recs]
    kept = [(r, d) for r, d in docs if not filt or _filters.matches(d["v"], filt)]
    kept.sort(key=lambda pair: -float(pair[1]["u"]))
    return [_index.parse(r.key) for r, _ in kept[offset : offset + limit]]


def _got(memory: StatekeelStore, prefix: tuple[str, ...], **kw: Any) -> list[tuple[tuple[str, ...], str]]:
    return [(item.namespace, item.key) for item in memory.search(prefix, **kw)]


def _fill(memory: StatekeelStore, n: int, batch: int = 50) -> None:
    for start in range(0, n, batch):
        memory.batch([PutOp(("u", f"g{i % 3}"), f"k{i:04d}", {"kind": f"k{i % 7}", "n": i})
                      for i in range(start, min(n, start + batch))])  # fmt: skip


def _counting(store: statekeel.Store, monkeypatch: pytest.MonkeyPatch) -> Callable[[], int]:
    """Count the records the backend hands back from scans and multi-gets (the real backend answers)."""
    seen = [0]
    backend = store.backend
    scan, get_many = backend.scan, backend.get_many

    def counted_scan(prefix: str, **kw: Any) -> Any:
        out = scan(prefix, **kw)
        seen[0] += len(out)
        return out

    def counted_get_many(ks: Any) -> Any:
        out = get_many(ks)
        seen[0] += len(out)
        return out

    monkeypatch.setattr(backend, "scan", counted_scan)
    monkeypatch.setattr(backend, "get_many", counted_get_many)
    return lambda: seen[0]


def test_a_page_reads_records_in_proportion_to_the_page_not_to_the_items(
    memory: StatekeelStore, store: statekeel.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fill(memory, 300, batch=100)
    memory.search(("u",), limit=1)  # the first search may build the index
    read = _counting(store, monkeypatch)
    page = _got(memory, ("u",), limit=10)
    assert read() <= 40  # the starting code read all 300 items
    before = read()
    filtered = _got(memory, ("u",), filter={"kind": "k3"}, limit=5)
    assert read() - before <= 150  # a seventh match: ~35 entries and their items, not 300
    assert page == _reference(store, ("u",), limit=10)
    assert filtered == _reference(store, ("u",), {"kind": "k3"}, 0, 5)


def test_search_returns_what_decoding_everything_does_through_updates_deletes_and_expiry(
    memory: StatekeelStore, store: statekeel.Store
) -> None:
    _fill(memory, 160)
    memory.batch([PutOp(("u", "g1"), f"k{i:04d}", {"kind": "k3", "n": -i}) for i in range(0, 160, 9)])  # rewritten
    memory.batch([PutOp(("u", "g2"), f"k{i:04d}", None) for i in range(2, 160, 11)])  # deleted
    memory.put(("u", "g0"), "short", {"kind": "k3", "n": 1}, ttl=5.0)
    memory.put(("v",), "other", {"kind": "k3", "n": 2})
    store.backend.apply([Touch(layout.langgraph_store_key(("u", "g0"), "short"), time.time() - 1.0)])  # expired
    filters: list[dict[str, Any] | None] = [None, {"kind": "k3"}, {"n": {"$gte": 150}}, {"kind": "none"}]
    for filt in filters:
        for prefix, offset, limit in (((), 0, 10), (("u",), 0, 25), (("u", "g1"), 3, 7), (("u",), 40, 200)):
            assert _got(memory, prefix, filter=filt, offset=offset, limit=limit) == \
                _reference(store, prefix, filt, offset, limit), (filt, prefix, offset)  # fmt: skip


def test_entries_follow_the_items_one_per_enclosing_namespace(memory: StatekeelStore, store: statekeel.Store) -> None:
    memory.put(("a", "b"), "x", {"n": 1})
    memory.put(("a",), "y", {"n": 2})
    assert len(_entries(store)) == 3 + 2  # x under (), (a), (a, b); y under (), (a)
    memory.put(("a", "b"), "x", {"n": 3})  # rewritten: its old entries go in the same batch
    assert len(_entries(store)) == 5
    memory.delete(("a", "b"), "x")
    assert len(_entries(store)) == 2
    assert _got(memory, ()) == [(("a",), "y")]


def test_dangling_entries_are_skipped_and_cleaned(memory: StatekeelStore, store: statekeel.Store) -> None:
    memory.put(("a",), "live", {"n": 1})
    memory.put(("a",), "soon", {"n": 2}, ttl=5.0)
    key = layout.langgraph_store_key(("a",), "live")
    stale = _index.entry_keys(("a",), key, time.time() + 3600)  # a racing writer's entry, written over since
    gone = _index.entry_keys(("a",), layout.langgraph_store_key(("a",), "gone"), time.time() + 7200)
    store.backend.apply([Put(k, b"0", "json") for k in stale + gone])
    store.backend.apply([Touch(layout.langgraph_store_key(("a",), "soon"), time.time() - 1.0)])
    assert _got(memory, ("a",)) == [(("a",), "live")]
    walked = {k for k in stale + gone if k.startswith(layout.langgraph_store_index_prefix(("a",)))}
    assert len(walked) == 2 and not set(_entries(store)) & walked  # deleted with the search's writes
    memory.sweep_ttl()  # the expired item's entries go too, on every backend (Redis expires by itself)
    assert len(_entries(store)) == 2 and _got(memory, ()) == [(("a",), "live")]


def _unindex(store: statekeel.Store) -> None:
    """Make the store look written before the index: no entries, no format record."""
    store.backend.apply([Delete(k) for k in _entries(store)] + [Delete(_index.FORMAT)])


def test_a_store_written_before_the_index_is_indexed_on_the_first_search(store: statekeel.Store) -> None:
    _fill(StatekeelStore(store), 130)
    _unindex(store)
    memory = StatekeelStore(store)
    assert _got(memory, ("u",), filter={"kind": "k2"}, limit=15) == _reference(store, ("u",), {"kind": "k2"}, 0, 15)
    assert len(_entries(store)) == 130 * 3
    assert store.codec.decode(*_format(store)) == {"index": _index.INDEX_VERSION}


def _format(store: statekeel.Store) -> tuple[bytes, str]:
    rec = store.backend.get(_index.FORMAT)
    assert rec is not None
    return rec.data, rec.codec


def test_an_interrupted_build_resumes_where_it_stopped(store: statekeel.Store, monkeypatch: pytest.MonkeyPatch) -> None:
    _fill(StatekeelStore(store), 210)
    _unindex(store)
    apply, pages = store.backend.apply, [0]

    def failing_on_the_second_page(ops: Any, **kw: Any) -> Any:
        pages[0] += any(getattr(op, "key", None) == _index.FORMAT for op in ops)
        if pages[0] == 2:
            raise UnavailableError("the connection broke")  # its entries are written, its progress is not
        return apply(ops, **kw)

    monkeypatch.setattr(store.backend, "apply", failing_on_the_second_page)
    broken = StatekeelStore(store)
    assert _got(broken, ("u",), limit=30) == _reference(store, ("u",), None, 0, 30)  # by scan meanwhile
    monkeypatch.undo()
    progress = store.codec.decode(*_format(store))
    hundredth = sorted(r.key for r in store.backend.scan("lgstore/", limit=1000))[99]
    assert progress == {"index": _index.INDEX_VERSION, "after": hundredth}
    assert len(_entries(store)) == 200 * 3  # two pages of items' entries: the build resumes after the first
    memory = StatekeelStore(store)
    assert _got(memory, ("u",), limit=30) == _reference(store, ("u",), None, 0, 30)
    assert len(_entries(store)) == 210 * 3
    assert store.codec.decode(*_format(store)) == {"index": _index.INDEX_VERSION}


def test_a_newer_index_is_searched_by_scan_and_not_written(memory: StatekeelStore, store: statekeel.Store) -> None:
    _fill(memory, 30)
    data, codec = store.codec.encode({"index": _index.INDEX_VERSION + 1}, "format", _index.FORMAT)
    store.backend.apply([Put(_index.FORMAT, data, codec)])
    newer = StatekeelStore(store)
    with pytest.raises(SchemaTooNewError, match="upgrade the statekeel package"):
        newer.put(("u", "g0"), "k9999", {"n": 1})
    assert store.backend.get(layout.langgraph_store_key(("u", "g0"), "k9999")) is None
    assert _got(newer, ("u",), filter={"kind": "k1"}) == _reference(store, ("u",), {"kind": "k1"})


def test_build_index_again_finds_items_an_older_writer_left_out(memory: StatekeelStore, store: statekeel.Store) -> None:
    _fill(memory, 20)
    memory.search(("u",), limit=1)  # indexed
    key = layout.langgraph_store_key(("u", "g0"), "legacy")  # written as the starting code did: no entries
    data, codec = store.codec.encode({"v": {"kind": "k1"}, "u": time.time() + 60, "ttl": None}, "item", key)
    store.backend.apply([Put(key, data, codec)])
    assert (("u", "g0"), "legacy") not in _got(memory, ("u",))
    memory.build_index(again=True)
    assert _got(memory, ("u",), limit=3) == _reference(store, ("u",), None, 0, 3)
    assert _got(memory, ("u",), limit=1) == [(("u", "g0"), "legacy")]


def test_the_write_time_stamp_sorts_newest_first() -> None:
    times = [0.0, 1e-7, 1.0, 1_700_000_000.123456, 1_700_000_000.123457, 4e9]
    stamps = [_index.stamp(t) for t in times]
    assert stamps == sorted(stamps, reverse=True) and len(set(stamps)) == len(stamps)
    assert all(len(s) == 16 for s in stamps)
    key = layout.langgraph_store_key(("a/b", "%c"), "k/1")
    entries = _index.entry_keys(("a/b", "%c"), key, 5.0)
    assert [keys.partition(e) for e in entries] == ["lgsindex/r", "lgsindex/na%2Fb", "lgsindex/na%2Fb"]
    assert all(_index._split(e) == (_index.stamp(5.0), key) for e in entries)


def test_two_searches_of_one_batch_meeting_one_dangling_entry_delete_it_once(memory: StatekeelStore,
                                                                          store: statekeel.Store) -> None:  # fmt: skip
    memory.put(("a",), "live", {"n": 1})
    gone = _index.entry_keys(("a",), layout.langgraph_store_key(("a",), "gone"), time.time() + 60)
    store.backend.apply([Put(k, b"0", "json") for k in gone])
    results = memory.batch([SearchOp(("a",), limit=5), SearchOp(("a",), filter={"n": 1}, limit=5)])
    assert [[i.key for i in found] for found in results] == [["live"], ["live"]]  # type: ignore[union-attr]
    assert gone[1] not in _entries(store)
