"""The in-process search cache (features/memory/cache.py): exact under writes by anyone.

A search keeps the namespace's decoded items, postings and vector matrix between queries and
checks one generation record per query. These tests write through *other* handles and
another process and check the next search sees it; count what a cached search reads; and
compare the cached ranking with the uncached one on the same items.
"""

from __future__ import annotations

import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import statekeel
from statekeel import Memory
from statekeel.features.memory import cache
from statekeel.features.memory.memory import rank

from test_memory import FACTS, Words


def _plain(store: statekeel.Store, ns: tuple[str, ...] = ("u",)) -> Memory:
    """A handle that searches in process even where a native index exists (the cache's path)."""
    return Memory(store, ns, embedder=Words(), native=False)


def _keys(mem: Memory, query: str, **kw: Any) -> list[str]:
    return [h.key for h in mem.search(query, **kw)]


def test_writes_by_another_handle_are_seen_by_the_next_search(open_store: Any) -> None:
    reader, writer = open_store(), open_store()
    mine, theirs = _plain(reader), _plain(writer, ("u", "sub"))
    mine.put_many([{"key": k, "value": t} for k, t in FACTS.items()])
    assert _keys(mine, "golden retriever", mode="text") == ["dog"]  # cached now
    theirs.put("cat", "a golden cat sleeps on the retriever")  # a namespace below: the prefix's generation moves
    assert set(_keys(mine, "golden retriever", mode="text")) == {"dog", "cat"}
    _plain(writer).delete("dog")
    assert _keys(mine, "golden retriever", mode="text") == ["cat"]
    _plain(writer).put("home", "the user moved to a golden house")  # same key, new text
    assert _keys(mine, "lyon", mode="text") == [] and "home" in _keys(mine, "golden house", mode="text")
    assert _plain(writer).forget(keep=1) == len(FACTS) - 2  # ("u",) keeps its newest: home; ("u","sub") its cat
    assert sorted(_keys(mine, "golden user night nurse", mode="hybrid")) == ["cat", "home"]


def test_reindex_by_another_handle_is_seen(open_store: Any) -> None:
    reader, writer = open_store(), open_store()
    Memory(writer, ("r",), embedder=Words("words-v1"), native=False).put("k", "red kites fly high")
    newer = Memory(reader, ("r",), embedder=Words("words-v2", 16), native=False)
    with pytest.raises(statekeel.EmbedderMismatchError):
        newer.search("kites")
    assert Memory(writer, ("r",), embedder=Words("words-v2", 16), native=False).reindex() == 1
    assert _keys(newer, "kites", mode="vector") == ["k"]


_WRITER = """
import sys, statekeel
from statekeel import Memory
sys.path.insert(0, {tests!r})
from test_memory import Words
with statekeel.open({url!r}) as store:
    Memory(store, ("u",), embedder=Words(), native=False).put("late", "a zebra crossed the road")
"""


@pytest.mark.parametrize("scheme", ["sqlite", "files"])
def test_a_write_by_another_process_is_seen(tmp_path: Path, scheme: str) -> None:
    url = f"sqlite:///{tmp_path}/m.db" if scheme == "sqlite" else f"file://{tmp_path}/m"
    with statekeel.open(url) as store:
        mem = _plain(store)
        mem.put_many([{"key": k, "value": t} for k, t in FACTS.items()])
        assert _keys(mem, "zebra road", mode="text") == []  # cached
        code = _WRITER.format(tests=str(Path(__file__).parent), url=url)
        subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
        assert _keys(mem, "zebra road", mode="text") == ["late"] and _keys(mem, "zebra")[0] == "late"


def test_expired_items_leave_a_cached_snapshot(store: statekeel.Store) -> None:
    mem = _plain(store)
    mem.put("short", "gone soon", ttl=2)
    mem.put("long", "kept for an hour", ttl="1h")
    assert set(_keys(mem, "gone soon kept", mode="text")) == {"short", "long"}
    time.sleep(2.1)
    assert _keys(mem, "gone soon kept", mode="text") == ["long"]


class Counting:
    """The real backend, with the records its reads return counted."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.read: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def get(self, key: str) -> Any:
        self.read["get"] += 1
        return self._inner.get(key)

    def scan(self, prefix: str, **kw: Any) -> Any:
        out = self._inner.scan(prefix, **kw)
        self.read["scanned"] += len(out)
        return out


def test_a_repeated_search_reads_one_record_not_the_namespace(store: statekeel.Store) -> None:
    mem = _plain(store)
    mem.put_many([{"key": f"k{i}", "value": f"note {i} about {t}"} for i, t in enumerate(FACTS.values())])
    mem.search("user")  # fills the snapshot
    counting = Counting(store.backend)
    store.backend = counting  # type: ignore[assignment]
    try:
        assert len(mem.search("user lives")) > 0
    finally:
        store.backend = counting._inner
    assert counting.read == {"get": 1}  # the generation record; before the cache: every item, every query


def test_cached_ranking_equals_a_pass_over_the_items(store: statekeel.Store) -> None:
    rng = random.Random(3)
    words = "apple river stone cloud paper night green house music garden tiger ocean lamp".split()
    mem = _plain(store)
    items = [{"key": f"k{i:03d}", "value": " ".join(rng.choices(words, k=rng.randint(2, 12)))} for i in range(150)]
    for start in range(0, 150, 30):  # DynamoDB commits at most 100 records (a memory is two) in one batch
        mem.put_many(items[start : start + 30], ttl="1h")
    snap = cache.snapshot(store, mem._prefix, mem._scan())
    assert len(snap.docs) == 150
    for query in ("apple river", "night ocean tiger", "music", "green green lamp stone"):
        for mode in ("text", "vector", "hybrid"):
            cached = rank(snap.docs, query, mode, mem._embedding, 3, 20, snap)  # type: ignore[arg-type]
            plain = rank(list(snap.docs), query, mode, mem._embedding, 3, 20)  # type: ignore[arg-type]
            assert [(h.key, h.score, h.matched) for h in cached] == [(h.key, h.score, h.matched) for h in plain]
            assert cached


def test_a_cut_fusion_is_the_head_of_the_whole_one() -> None:
    from statekeel.features.memory.ranking import combine

    rng = random.Random(11)
    for _ in range(300):
        n = rng.randint(0, 80)
        text = [(i, float(rng.randint(0, 5)), (f"w{i % 3}",)) for i in rng.sample(range(100), n)]
        near = [(i, rng.random()) for i in rng.sample(range(100), rng.randint(0, 60))]
        for top in (1, 3, 10, 50):
            for mode in ("hybrid", "text", "vector"):
                assert combine(mode, text, near, top) == combine(mode, text, near)[:top], (mode, top)


def test_own_writes_patch_the_snapshot_without_a_rescan(store: statekeel.Store) -> None:
    mem, sub = _plain(store), _plain(store, ("u", "sub"))
    mem.put_many([{"key": k, "value": t} for k, t in FACTS.items()])
    assert _keys(mem, "golden retriever", mode="text") == ["dog"]  # the snapshot of ("u",)
    sub.put("cat", "a golden cat sleeps")  # below: patched into ("u",)'s snapshot too
    mem.put("home", "the user moved to a golden house")
    mem.delete("job")
    assert mem.forget(keep=4) == 1  # ("u",) had 5 after the delete
    Memory(store, ("u",), embedder=Words("words-v2", 16), native=False).reindex()  # rewrites all 5 with v2 vectors
    counting = Counting(store.backend)
    store.backend = counting  # type: ignore[assignment]
    try:
        v2 = Memory(store, ("u",), embedder=Words("words-v2", 16), native=False)
        assert set(_keys(v2, "moved sleeps", mode="text")) == {"cat", "home"}
        assert _keys(v2, "nurse night shifts", mode="text") == []
        assert len(v2.search("golden dog", mode="hybrid")) == 5
    finally:
        store.backend = counting._inner
    assert counting.read == {"get": 3}  # one generation read per search: every write was patched in
    patched = cache.snapshot(store, mem._prefix, iter(()))
    scanned = list(mem._scan())  # what a re-read would give
    assert [(d.record.key, d.record.version, d.payload, d.stats) for d in patched.docs] == [
        (d.record.key, d.record.version, d.payload, d.stats) for d in scanned]
    assert patched.terms is not None  # the postings were carried over, not rebuilt
    fresh = cache.Snapshot(None, scanned, float("inf"))
    for query in ("golden moved sleeps", "user", "vegetarian fish nurse", "a"):
        assert patched.bm25(query) == fresh.bm25(query)


def test_patched_postings_match_a_rebuild_over_random_writes(store: statekeel.Store) -> None:
    rng = random.Random(5)
    words = "apple river stone cloud paper night green house music garden".split()
    mem = Memory(store, ("p",), embedder=None, native=False)
    mem.put_many([{"key": f"k{i}", "value": " ".join(rng.choices(words, k=4))} for i in range(20)])
    mem.search("apple")  # builds the postings, carried over by every write below
    for step in range(25):
        key = f"k{rng.randrange(30)}"
        if rng.random() < 0.3:
            mem.delete(key)
        else:
            mem.put(key, " ".join(rng.choices(words, k=rng.randint(1, 6))) + f" s{step}")
        snap = cache.snapshot(store, mem._prefix, mem._scan())
        assert snap.terms is not None
        fresh = cache.Snapshot(None, list(mem._scan()), float("inf"))
        assert [d.record.key for d in snap.docs] == [d.record.key for d in fresh.docs]
        for query in ("apple night", "music", f"s{step} river"):
            assert snap.bm25(query) == fresh.bm25(query), (step, query)
