"""Tamper-evident stores (``integrity=``, with or without encryption) on the native asyncio drivers
(PostgreSQL, Redis): chained and checked on the event loop (core/chained_aio.py), no thread hop.

Run on every backend given to ``--statekeel-backends``: on ``postgres`` and ``redis`` the hot
calls of a tamper-evident store run natively; every other backend keeps the worker thread for
it, as before. Real servers; nothing stands in for a database.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from test_aio_native import _hot_paths, _is_native, conversations
from test_aio_sealed import _count_worker_calls

import statekeel
from statekeel import AsyncStore, Encryption, Integrity, IntegrityError
from statekeel.core import layout
from statekeel.core.chained_aio import AsyncChainedBackend
from statekeel.protocol import Append, Delete, Put, Rewrite, keys

KEY = base64.b64encode(b"M" * 32).decode()
MODES = ("chain", "chain+encrypted")


def _options(mode: str, **integrity: Any) -> dict[str, Any]:
    options: dict[str, Any] = {"integrity": Integrity(key=KEY, **integrity)}
    if mode == "chain+encrypted":
        options["encryption"] = Encryption(master_key=base64.b64encode(b"E" * 32).decode())
    return options


def _run(url: str, mode: str, main: Callable[[AsyncStore], Awaitable[None]], **integrity: Any) -> None:
    async def go() -> None:
        async with statekeel.open_async(url, **_options(mode, **integrity)) as store:
            await main(store)

    asyncio.run(go())


@pytest.mark.parametrize("mode", MODES)
def test_tamper_evident_hot_paths_run_on_the_event_loop(store_url: str, mode: str) -> None:
    """Every hot call of a tamper-evident store, plain or encrypted too: on PostgreSQL and Redis
    chained and checked on the loop (the worker only creates an encrypted partition's data key);
    every other backend keeps the worker. The store verifies afterwards."""

    async def main(store: AsyncStore) -> None:
        if not _is_native(store_url):
            assert store._lane is None
            await _hot_paths(store)
            return
        assert store._lane is not None and isinstance(store._lane.backend, AsyncChainedBackend)
        calls = _count_worker_calls(store)
        await _hot_paths(store)
        assert all("fetch" in c for c in calls) and (calls == []) == (mode == "chain")
        calls.clear()
        s = await store.session("hot")
        for turn in range(5):
            await s.append({"role": "user", "content": f"q{turn}"}, state={"turn": turn})
        assert len(await s.history()) == 7 and await s.history(last=2) == [
            {"role": "user", "content": "q3"}, {"role": "user", "content": "q4"}]
        assert await s.count() == 7 and await store.app.get("k") == {"v": 2}
        assert calls == []  # not one hop

    _run(store_url, mode, main)
    with statekeel.open(store_url, **_options(mode)) as sync:
        assert sync.verify().ok and len(sync.session("hot").history()) == (7 if _is_native(store_url) else 2)


@pytest.mark.parametrize("mode", MODES)
def test_a_head_moved_by_another_writer_is_planned_again(store_url: str, mode: str) -> None:
    """The loop's handle caches its partition's head; another process's append moves it. The next
    batch is refused on the head's compare-and-set (nothing written), planned again on the head read
    afresh, and the chain stays whole."""

    def other_writer() -> None:
        with statekeel.open(store_url, **_options(mode)) as other:
            other.session("shared").append("b", "c", state={"n": 2})

    async def main(store: AsyncStore) -> None:
        s = await store.session("shared")
        await s.append("a", state={"n": 1})
        await asyncio.to_thread(other_writer)
        await s.append("d", state={"n": 3})
        assert await s.history() == ["a", "b", "c", "d"] and await s.state.get("n") == 3

    _run(store_url, mode, main)
    with statekeel.open(store_url, **_options(mode)) as sync:
        assert sync.verify().ok and sync.session("shared").history() == ["a", "b", "c", "d"]


@pytest.mark.parametrize("mode", MODES)
def test_concurrent_tamper_evident_conversations(store_url: str, mode: str) -> None:
    """32 conversations and one shared counter (test_aio_native's): the counter's partition head is
    contended by all 32 coroutines at once; no increment lost, every chain whole."""
    _run(store_url, mode, conversations)
    with statekeel.open(store_url, **_options(mode)) as sync:
        assert sync.verify().ok


def _tamper_read(store_url: str, mode: str, name: str, match: str) -> None:
    """Session ``name`` opened and its history read on the loop (whole, and its last entry) raises
    IntegrityError (opening reads the log's bounds: a forged tail is refused there already)."""

    async def main(store: AsyncStore) -> None:
        for last in (None, 1):
            with pytest.raises(IntegrityError, match=match):
                await (await store.session(name)).history(last=last)

    _run(store_url, mode, main)


@pytest.mark.parametrize("mode", MODES)
def test_the_loop_detects_edits_forgeries_and_copies(store_url: str, mode: str) -> None:
    """Writes made beneath the API, as an attacker with database access makes them, are refused on
    the loop as on the sync API: an entry edited, an entry appended without the chain, a record's
    value copied from another record."""

    async def write(store: AsyncStore) -> None:
        for name in ("edited", "forged"):
            s = await store.session(name)
            await s.append("one", "two", state={"k": name})

    _run(store_url, mode, write)
    with statekeel.open(store_url, **_options(mode)) as sync:
        stored = sync.storage
        first = stored.read(layout.history_log("edited"))[0]
        stored.apply([Rewrite(first.log, 2, first.data, first.codec)])  # entry 1's bytes over entry 2
        stored.apply([Append(layout.history_log("forged"), ((b'"three"', "json"),))])
        mine, theirs = layout.state_key("session", "edited", "k"), layout.state_key("session", "forged", "k")
        rec = stored.get(theirs)
        assert rec is not None
        stored.apply([Put(mine, rec.data, rec.codec)])
    _tamper_read(store_url, mode, "edited", "breaks the chain|failed authentication")
    _tamper_read(store_url, mode, "forged", "appended beneath the API")

    async def copied(store: AsyncStore) -> None:
        s = await store.session("edited")
        with pytest.raises(IntegrityError):
            await s.state.get("k")

    _run(store_url, mode, copied)


@pytest.mark.parametrize("mode", MODES)
def test_scans_are_checked_on_the_loop(store_url: str, mode: str) -> None:
    """State listings (``items``, ``to_dict``) of a tamper-evident store: on PostgreSQL and Redis
    scanned and checked on the loop, no hop, in pages that skip the chain's own records; a value
    copied over another, and a record deleted beneath the API (its head still lists it), are
    refused there as by the sync scan."""

    async def write(store: AsyncStore) -> None:
        calls = _count_worker_calls(store)
        for n in range(7):
            await store.app.put(f"k{n}", {"n": n})
        calls.clear()
        page = await store.app.items("k", limit=3)
        assert [i.key for i in page] == ["k0", "k1", "k2"] and page.next == "k2"
        rest = await store.app.items("k", after=page.next, limit=10)
        assert [i.value["n"] for i in rest] == [3, 4, 5, 6] and rest.next is None
        assert await store.app.to_dict() == {f"k{n}": {"n": n} for n in range(7)}
        if _is_native(store_url):
            assert calls == [], calls

    _run(store_url, mode, write)
    with statekeel.open(store_url, **_options(mode)) as sync:
        stored = sync.storage
        k1, k2 = stored.get(layout.state_key("app", "_", "k1")), layout.state_key("app", "_", "k2")
        assert k1 is not None
        stored.apply([Put(k2, k1.data, k1.codec)])  # k1's value copied over k2's

    async def copied(store: AsyncStore) -> None:
        with pytest.raises(IntegrityError):
            await store.app.items("k")
        assert [i.key for i in await store.app.items("k", after="k3")] == ["k4", "k5", "k6"]

    _run(store_url, mode, copied)
    with statekeel.open(store_url, **_options(mode)) as sync:
        sync.storage.apply([Delete(layout.state_key("app", "_", "k5"))])  # gone beneath the API

    async def deleted(store: AsyncStore) -> None:
        with pytest.raises(IntegrityError):
            await store.app.items("k", after="k3")
        with pytest.raises(IntegrityError):
            await store.app.to_dict()

    _run(store_url, mode, deleted)


def test_an_anchored_store_reads_its_anchor_on_the_worker_once(store_url: str, tmp_path: Path) -> None:
    """With the heads anchored outside the store, the anchor is read once per handle — on the worker,
    not on the loop — and every read after it is checked against it on the loop."""
    anchor = f"file:{tmp_path / 'anchor'}"
    with statekeel.open(store_url, **_options("chain", anchor=anchor)) as sync:
        sync.session("anchored").append("kept")
        assert sync.anchor().ok

    async def main(store: AsyncStore) -> None:
        calls = _count_worker_calls(store)
        s = await store.session("anchored")
        await s.append("more")
        assert await s.history() == ["kept", "more"]
        if _is_native(store_url):
            assert len(calls) == 1 and "anchored_heads" in calls[0]

    _run(store_url, "chain", main, anchor=anchor)


@pytest.mark.parametrize("mode", MODES)
def test_a_partition_with_buckets_is_written_and_read_on_the_loop(store_url: str, mode: str) -> None:
    """A partition past ``SPILL`` records lists them in buckets: a fresh asyncio handle reads its root
    and the buckets it needs awaited (on PostgreSQL and Redis on the loop, no hop), writes into them,
    and plans again when another process moved the root and a bucket meanwhile; a bucket deleted
    beneath the API is refused there as by the sync API."""
    from statekeel.core.chain_plan import SPILL

    n = 3 * SPILL
    with statekeel.open(store_url, **_options(mode)) as sync:
        for i in range(n):
            sync.app.put(f"k{i}", i)

    def other_writer() -> None:
        with statekeel.open(store_url, **_options(mode)) as other:
            other.app.put("k1", 101)
            other.app.put(f"k{n}", n)

    async def main(store: AsyncStore) -> None:
        calls = _count_worker_calls(store)
        assert await store.app.get("k5") == 5
        await store.app.put("k2", 102)  # its bucket read awaited while the batch is planned
        await asyncio.to_thread(other_writer)
        calls.clear()
        await store.app.put("k1", 201)  # the cached root and bucket moved: planned again
        await store.app.put(f"k{n + 1}", n + 1)
        assert [await store.app.get(k) for k in ("k1", "k2", f"k{n}", f"k{n + 1}")] == [201, 102, n, n + 1]
        assert len(await store.app.to_dict()) == n + 2
        if _is_native(store_url):
            assert calls == [], calls

    _run(store_url, mode, main)
    with statekeel.open(store_url, **_options(mode)) as sync:
        assert sync.verify().ok
        part = keys.partition(layout.state_key("app", "_", "k1"))
        buckets = [r.key for r in sync.storage.scan(part + "/~head~", limit=100)]
        assert len(buckets) >= 2
        sync.storage.apply([Delete(buckets[0])])

    async def deleted(store: AsyncStore) -> None:
        with pytest.raises(IntegrityError, match="bucket"):
            await store.app.to_dict()

    _run(store_url, mode, deleted)
