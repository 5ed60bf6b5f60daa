"""StatekeelStore (LangGraph's BaseStore) on every backend.

The behaviours are those LangGraph's own store tests check for ``InMemoryStore`` and
``SqliteStore`` (libs/checkpoint and libs/checkpoint-sqlite tests: batch ordering,
get/put/delete, search with filters and pagination, list_namespaces with
prefix/suffix/max_depth/limit/offset, TTL with refresh on read), written here
against statekeel's fixtures. TTL expiry is made deterministic by moving a record's
expiry with the protocol's ``Touch`` instead of sleeping.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone
from typing import Any

import pytest
from langgraph.store.base import GetOp, InvalidNamespaceError, Item, ListNamespacesOp, MatchCondition, PutOp, SearchOp

import statekeel
from statekeel.core import layout
from statekeel.errors import InvalidInputError
from statekeel.integrations.langgraph import StatekeelStore
from statekeel.integrations.langgraph import _filters
from statekeel.protocol import Delete, Touch, keys


@pytest.fixture
def memory(store: statekeel.Store) -> StatekeelStore:
    return StatekeelStore(store)


def test_batch_runs_ops_in_order_and_reads_see_the_store_before_its_writes(memory: StatekeelStore) -> None:
    memory.put(("test", "foo"), "key1", {"data": "value1"})
    memory.put(("test", "bar"), "key2", {"data": "value2"})
    results = memory.batch([
        GetOp(("test", "foo"), "key1"),
        PutOp(("test",), "key3", {"data": "value3"}),
        SearchOp(("test",), filter={"data": "value1"}, limit=10, offset=0),
        ListNamespacesOp(match_conditions=None, max_depth=None, limit=10, offset=0),
        GetOp(("test",), "key3"),
    ])  # fmt: skip
    first = results[0]
    assert isinstance(first, Item) and first.value == {"data": "value1"} and first.namespace == ("test", "foo")
    assert results[1] is None
    assert [i.key for i in results[2]] == ["key1"]  # type: ignore[union-attr]
    assert results[3] == [("test", "bar"), ("test", "foo")]
    assert results[4] is None  # the put lands at the end of the batch
    assert memory.get(("test",), "key3").value == {"data": "value3"}  # type: ignore[union-attr]


def test_get_put_update_delete(memory: StatekeelStore) -> None:
    ns = ("test", "documents")
    memory.put(ns, "doc1", {"title": "Test Document", "when": datetime(2026, 1, 2, tzinfo=timezone.utc)})
    item = memory.get(ns, "doc1")
    assert item is not None and item.key == "doc1" and item.namespace == ns
    assert item.value["when"] == datetime(2026, 1, 2, tzinfo=timezone.utc)  # statekeel's codec round-trips it
    memory.put(ns, "doc1", {"title": "Updated"})
    updated = memory.get(ns, "doc1")
    assert updated is not None and updated.value == {"title": "Updated"}
    assert updated.created_at == item.created_at and updated.updated_at >= item.updated_at
    assert memory.get(("test", "other"), "doc1") is None
    memory.delete(ns, "doc1")
    assert memory.get(ns, "doc1") is None
    memory.batch([PutOp(ns, "a", {"n": 1}), PutOp(ns, "b", {"n": 2}), PutOp(ns, "a", None)])
    assert memory.get(ns, "a") is None and memory.get(ns, "b").value == {"n": 2}  # type: ignore[union-attr]


def test_search_by_prefix_filter_and_pages(memory: StatekeelStore) -> None:
    data = [
        (("test", "docs"), "doc1", {"title": "First", "author": "Alice", "tags": ["important"], "score": 3}),
        (("test", "docs"), "doc2", {"title": "Second", "author": "Bob", "tags": ["draft"], "score": 7}),
        (("test", "images"), "img1", {"title": "Image", "author": "Alice", "tags": ["final"], "score": 5}),
        (("testing",), "other", {"title": "Not under test/", "author": "Alice", "score": 1}),
    ]
    for ns, key, value in data:
        memory.put(ns, key, value)
    assert len(memory.search(("test",))) == 3
    assert {i.key for i in memory.search(("test", "docs"))} == {"doc1", "doc2"}
    assert {i.key for i in memory.search(("test",), filter={"author": "Alice"})} == {"doc1", "img1"}
    assert [i.key for i in memory.search(("test",), filter={"tags": ["draft"]})] == ["doc2"]
    assert len(memory.search(("test",), limit=2)) == 2 and len(memory.search(("test",), offset=2)) == 1
    ops = {"$gt": 3, "$gte": 3, "$lt": 5, "$lte": 5, "$ne": 3, "$eq": 7}
    found = {op: {i.key for i in memory.search(("test",), filter={"score": {op: v}})} for op, v in ops.items()}
    assert found == {"$gt": {"doc2", "img1"}, "$gte": {"doc1", "doc2", "img1"}, "$lt": {"doc1"},
                     "$lte": {"doc1", "img1"}, "$ne": {"doc2", "img1"}, "$eq": {"doc2"}}  # fmt: skip
    assert {i.key for i in memory.search(("test",), filter={"score": {"$gt": 2, "$lt": 6}})} == {"doc1", "img1"}
    with pytest.raises(InvalidInputError, match=r"\$regex"):
        memory.search(("test",), filter={"score": {"$regex": "x"}})


def test_list_namespaces_with_prefix_suffix_depth_and_pages(memory: StatekeelStore) -> None:
    spaces = [("test", "documents", "public"), ("test", "documents", "private"), ("test", "images", "public"),
              ("test", "images", "private"), ("prod", "documents", "public"), ("prod", "documents", "private")]  # fmt: skip
    for ns in spaces:
        memory.put(ns, "dummy", {"content": "dummy"})
    assert memory.list_namespaces() == sorted(spaces)
    assert len(memory.list_namespaces(prefix=("test",))) == 4
    assert memory.list_namespaces(suffix=("public",)) == sorted(s for s in spaces if s[-1] == "public")
    assert memory.list_namespaces(prefix=("*", "documents")) == sorted(s for s in spaces if s[1] == "documents")
    assert memory.list_namespaces(max_depth=2) == [("prod", "documents"), ("test", "documents"), ("test", "images")]
    assert memory.list_namespaces(prefix=("test",), suffix=("private",), max_depth=2) == [("test", "documents"), ("test", "images")]
    assert len(memory.list_namespaces(limit=3)) == 3 and memory.list_namespaces(offset=5) == [sorted(spaces)[5]]
    cond = MatchCondition(match_type="suffix", path=("public",))
    assert memory.batch([ListNamespacesOp(match_conditions=(cond,), limit=10)])[0] == memory.list_namespaces(suffix=("public",))
    for ns in spaces:
        memory.delete(ns, "dummy")
    assert memory.list_namespaces() == []


def test_bad_namespaces_are_refused(memory: StatekeelStore) -> None:
    for bad in [("a.b",), ("",), ("langgraph", "x")]:
        with pytest.raises(InvalidNamespaceError):
            memory.put(bad, "k", {"v": 1})
    with pytest.raises(InvalidNamespaceError):
        memory.batch([GetOp(("a.b",), "k")])


def _expires_at(store: statekeel.Store, ns: tuple[str, ...], key: str) -> float | None:
    rec = store.backend.get(layout.langgraph_store_key(ns, key))
    assert rec is not None
    return rec.expires_at


def test_ttl_expires_items_and_reads_refresh_it(store: statekeel.Store) -> None:
    memory = StatekeelStore(store, ttl={"default_ttl": 60.0, "refresh_on_read": True})
    assert memory.supports_ttl
    memory.put(("t",), "default", {"v": 1})
    memory.put(("t",), "short", {"v": 2}, ttl=5.0)
    memory.put(("t",), "forever", {"v": 3}, ttl=None)
    assert _expires_at(store, ("t",), "forever") is None
    soon = time.time() + 2.0
    store.backend.apply([Touch(layout.langgraph_store_key(("t",), k), soon) for k in ("default", "short")])
    memory.get(("t",), "default")  # a read renews the item's whole TTL
    assert _expires_at(store, ("t",), "default") > soon + 3000  # type: ignore[operator]
    memory.get(("t",), "short", refresh_ttl=False)
    assert _expires_at(store, ("t",), "short") == pytest.approx(soon)
    memory.search(("t",))
    assert _expires_at(store, ("t",), "short") > soon + 200  # type: ignore[operator]
    past = time.time() - 1.0
    store.backend.apply([Touch(layout.langgraph_store_key(("t",), "short"), past)])
    assert memory.get(("t",), "short") is None
    assert [i.key for i in memory.search(("t",), filter={"v": 2})] == []
    memory.sweep_ttl()  # Redis drops expired keys itself; the others purge them now
    assert store.backend.get(layout.langgraph_store_key(("t",), "short"), include_expired=True) is None
    assert {i.key for i in memory.search(("t",))} == {"default", "forever"}


def test_an_expired_namespace_is_not_listed(store: statekeel.Store) -> None:
    memory = StatekeelStore(store)
    memory.put(("omit", "expired"), "e", {"data": "gone"}, ttl=5.0)
    memory.put(("omit", "control"), "c", {"data": "keep"})
    store.backend.apply([Touch(layout.langgraph_store_key(("omit", "expired"), "e"), time.time() - 1.0)])
    assert memory.list_namespaces(prefix=("omit",)) == [("omit", "control")]


def test_the_async_api_runs_off_the_loop(store: statekeel.Store) -> None:
    memory = StatekeelStore(store, ttl={"default_ttl": 10.0})

    async def main() -> list[Any]:
        await memory.aput(("users", "u1"), "prefs", {"theme": "dark"})
        got = await memory.aget(("users", "u1"), "prefs")
        found = await memory.asearch(("users",), filter={"theme": "dark"})
        spaces = await memory.alist_namespaces(prefix=("users",))
        await memory.adelete(("users", "u1"), "prefs")
        return [got.value if got else None, [i.key for i in found], spaces, await memory.aget(("users", "u1"), "prefs")]

    assert asyncio.run(main()) == [{"theme": "dark"}, ["prefs"], [("users", "u1")], None]
    memory.close()


def test_tenants_do_not_share_items(store: statekeel.Store) -> None:
    acme, globex = StatekeelStore(store.tenant("acme")), StatekeelStore(store.tenant("globex"))
    acme.put(("users",), "u1", {"name": "Ann"})
    assert globex.get(("users",), "u1") is None and globex.list_namespaces() == []
    assert acme.list_namespaces() == [("users",)]


def _reference_search(store: statekeel.Store, prefix: tuple[str, ...], filt: dict[str, Any] | None,
                      offset: int, limit: int) -> list[tuple[tuple[str, ...], str]]:  # fmt: skip
    """Every item decoded, filtered and sorted newest write first: what search must return."""
    recs = store.backend.scan(layout.langgraph_store_prefix(prefix), limit=10_000)
    docs = [(r, store.codec.decode(r.data, r.codec, r.key)) for r in recs]
    kept = [(r, d) for r, d in docs if not filt or _filters.matches(d["v"], filt)]
    kept.sort(key=lambda pair: -float(pair[1]["u"]))
    return [(tuple(p[1:] for p in keys.split(r.key)[1:-1]), keys.split(r.key)[-1][1:]) for r, _ in kept[offset : offset + limit]]


def test_search_decoding_only_what_it_must_returns_what_decoding_everything_does(memory: StatekeelStore,
                                                                                 store: statekeel.Store) -> None:  # fmt: skip
    ns = ("docs", "a")
    for i in range(40):
        value: dict[str, Any] = {"kind": f"k{i % 3}", "n": i, "text": 'quote " and é ' * (i % 2),
                                 "inner": {"kind": "k1"}}  # fmt: skip
        if i % 5 == 0:
            value["when"] = datetime(2026, 1, 1 + i % 28, tzinfo=timezone.utc)  # a tagged (tjson1) record
        if i % 7 == 0:
            value["kind"] = 'k"1é'  # escaped in JSON
        memory.put(ns if i % 4 else ("docs", "b"), f"i{i:03d}", value)
    memory.put(ns, "i005", {"kind": "k1", "n": 5})  # rewritten: newest
    filters: list[dict[str, Any] | None] = [
        None, {"kind": "k1"}, {"kind": {"$eq": "k2"}}, {"kind": 'k"1é'}, {"inner": {"kind": "k1"}, "kind": "k0"},
        {"kind": "k1", "n": {"$gte": 10}}, {"kind": {"$ne": "k1"}}, {"text": 'quote " and é '}, {"kind": "nope"},
    ]  # fmt: skip
    for filt in filters:
        for prefix, offset, limit in ((("docs",), 0, 100), (ns, 2, 5), (("docs",), 7, 3)):
            got = [(item.namespace, item.key) for item in memory.search(prefix, filter=filt, offset=offset, limit=limit)]
            assert got == _reference_search(store, prefix, filt, offset, limit), (filt, prefix, offset)


def test_items_written_together_are_listed_in_key_order_whatever_their_codec(memory: StatekeelStore,
                                                                            store: statekeel.Store) -> None:  # fmt: skip
    when = datetime(2026, 1, 2, tzinfo=timezone.utc)  # a tagged (tjson1) value: decoded, not read from its bytes
    memory.batch([PutOp(("docs",), k, {"n": i, **({"when": when} if i % 2 == 0 else {})})
                  for i, k in enumerate(["a", "b", "c", "d", "e"])])  # fmt: skip  # one batch: one write time
    for offset, limit in ((0, 10), (1, 2), (3, 10)):
        got = [(item.namespace, item.key) for item in memory.search(("docs",), offset=offset, limit=limit)]
        assert got == _reference_search(store, ("docs",), None, offset, limit)  # was b, d, a, c, e
        assert [k for _, k in got] == ["a", "b", "c", "d", "e"][offset : offset + limit]


def test_a_filter_no_stored_value_can_match_finds_nothing(memory: StatekeelStore) -> None:
    memory.put(("docs",), "a", {"kind": "k1"})
    assert memory.search(("docs",), filter={"kind": "\ud800"}) == []  # was UnicodeEncodeError: a lone surrogate
    assert memory.search(("docs",), filter={"\ud800": "k1"}) == []


@pytest.mark.parametrize("meanwhile", ["rewritten", "deleted and put again"])
def test_a_read_renewing_a_ttl_leaves_an_item_put_meanwhile_as_it_was_put(store: statekeel.Store,
                                                                          meanwhile: str) -> None:
    """A read's TTL refresh is written after its reads; an item another writer put in between
    (here without a TTL) keeps what that put gave it — never the reader's expiry."""
    reader = StatekeelStore(store, ttl={"refresh_on_read": True})
    writer = StatekeelStore(store)
    reader.put(("r",), "item", {"v": 1}, ttl=5.0)
    before = _expires_at(store, ("r",), "item")
    write = reader._write

    def racing_write(*args: Any) -> Any:  # the other writer's put lands between the read and the refresh
        if meanwhile != "rewritten":
            writer.delete(("r",), "item")
        writer.put(("r",), "item", {"v": 2}, ttl=None)
        return (yield from write(*args))  # the write's steps (the batch's last)

    reader._write = racing_write  # type: ignore[method-assign]
    got = reader.get(("r",), "item")
    assert got is not None and got.value == {"v": 1}  # what the read saw
    assert before is not None and _expires_at(store, ("r",), "item") is None
    reader._write = write  # type: ignore[method-assign]
    item = reader.get(("r",), "item")
    assert item is not None and item.value == {"v": 2}
    assert _expires_at(store, ("r",), "item") is None


def test_ttl_refreshes_on_a_tamper_evident_store_verify(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The chain head follows a refresh exactly when the record does: a refresh that lost the race
    leaves the head's expiry as the winner's put set it, so deleting that record beneath the API
    later is still found (a head expecting it gone would not look for it)."""
    monkeypatch.setenv("STATEKEEL_MASTER_KEY", "TExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTEw=")
    with statekeel.open(f"sqlite:///{tmp_path / 'chain.db'}", integrity="chain") as chained:
        memory = StatekeelStore(chained, ttl={"default_ttl": 60.0, "refresh_on_read": True})
        memory.put(("c",), "kept", {"v": 1})
        memory.put(("c",), "raced", {"v": 1}, ttl=0.001)  # 60 ms
        first = _expires_at(chained, ("c",), "kept")
        time.sleep(0.01)
        assert memory.get(("c",), "kept") is not None
        assert _expires_at(chained, ("c",), "kept") > first  # type: ignore[operator]
        write = memory._write

        def racing_write(*args: Any) -> Any:
            StatekeelStore(chained).put(("c",), "raced", {"v": 2}, ttl=None)
            return (yield from write(*args))

        memory._write = racing_write  # type: ignore[method-assign]
        memory.get(("c",), "raced")  # its refresh (60 ms again) loses to the put without a TTL
        memory._write = write  # type: ignore[method-assign]
        assert _expires_at(chained, ("c",), "raced") is None
        report = chained.verify()
        assert report.failures == [] and report.records > 0
        time.sleep(0.1)  # past the refresh's expiry: the head must still expect the record
        chained.storage.apply([Delete(layout.langgraph_store_key(("c",), "raced"))])  # beneath the API
        assert [f for f in chained.verify().failures if "is missing" in f]
