"""Long-term memory (issue 16): put/get/delete, hybrid search, dedup, TTL, forgetting, reindex, bad input.

Runs on every backend (``--statekeel-backends``) with the default embedder (WordLlama, whose
weights ship in its wheel) and, where a test needs a controlled vector space, a small
deterministic embedder written here (a real function, as a user would plug in).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
import pytest

import statekeel
from statekeel import EmbedderMismatchError, InvalidInputError, MemoryHit, UsageError
from statekeel.features.memory.ranking import RRF_K, fuse

FACTS = {
    "home": "The user lives in Lyon, France, near the old town",
    "diet": "The user is vegetarian and never eats fish",
    "dog": "Their dog Rex is a golden retriever who loves long walks",
    "job": "She works as a nurse on night shifts at the city hospital",
    "car": "The user drives an old blue bicycle to work, never a car",
    "lang": "The user speaks French and is learning Japanese",
}


class Words:
    """A bag-of-words embedder: each word lights one of ``dim`` dimensions (deterministic)."""

    def __init__(self, name: str = "words-v1", dim: int = 32) -> None:
        self.name, self.dim = name, dim

    def embed(self, texts: list[str]) -> list[list[float]]:
        out = []
        for text in texts:
            vec = [0.0] * self.dim
            for word in text.lower().split():
                vec[int(hashlib.sha256(word.encode()).hexdigest(), 16) % self.dim] += 1.0
            out.append(vec)
        return out


def _fill(mem: statekeel.Memory) -> None:
    mem.put_many([{"key": k, "value": {"fact": k}, "text": t, "metadata": {"topic": k, "n": i}}
                  for i, (k, t) in enumerate(FACTS.items())])


def test_put_get_delete_roundtrip(store: statekeel.Store) -> None:
    mem = store.memory(("user", "u-7", "facts"))
    item = mem.put("home", {"city": "Lyon"}, text=FACTS["home"], metadata={"kind": "fact"})
    assert (item.namespace, item.key, item.value, item.text) == (("user", "u-7", "facts"), "home", {"city": "Lyon"},
                                                                  FACTS["home"])
    assert item.metadata == {"kind": "fact"} and item.embedder == "wordllama/l2_supercat-256"
    got = mem.get("home")
    assert got is not None and got.value == {"city": "Lyon"} and got.created_at == item.created_at
    assert mem.put("plain", "a value that is its own text").text == "a value that is its own text"
    assert store.memory_namespaces() == [("user", "u-7", "facts")]
    assert mem.delete("home") is True and mem.get("home") is None and mem.delete("home") is False
    assert [i.key for i in mem.items()] == ["plain"]


def test_hybrid_search_ranks_the_relevant_memory_first(store: statekeel.Store) -> None:
    mem = store.memory(("user", "u-7"))
    _fill(mem)
    hits = mem.search("where does the user live", limit=3)
    assert isinstance(hits[0], MemoryHit) and hits[0].key == "home"
    assert "text" in hits[0].matched and "vector" in hits[0].matched and "term:live" in hits[0].matched
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert mem.search("puppy", mode="vector")[0].key == "dog"  # no shared word: only the vector side finds it
    assert mem.search("puppy", mode="text") == []
    assert [h.key for h in mem.search("japanese", mode="text")] == ["lang"]


def test_filter_offset_and_namespaces_below(store: statekeel.Store) -> None:
    mem = store.memory(("user", "u-7"))
    _fill(mem)
    store.memory(("user", "u-7", "old")).put("home", "The user lived in Paris before", metadata={"topic": "home"})
    store.memory(("user", "u-8")).put("home", "The user lives in Oslo", metadata={"topic": "home"})
    assert {(h.namespace, h.key) for h in mem.search("user lives", filter={"topic": "home"}, limit=10)} == {
        (("user", "u-7"), "home"), (("user", "u-7", "old"), "home")}
    assert {h.key for h in mem.search("user", filter={"topic": ["diet", "car"]}, mode="text")} == {"diet", "car"}
    assert mem.search("user", filter={"n": True}, mode="text") == []  # True is not 1
    every = mem.search("the user", limit=20)
    assert [h.key for h in mem.search("the user", limit=2, offset=1)] == [h.key for h in every[1:3]]
    assert store.memory_namespaces(("user",)) == [("user", "u-7"), ("user", "u-7", "old"), ("user", "u-8")]
    assert store.memory_namespaces(("user", "u-8")) == [("user", "u-8")]


def test_dedup_by_content_hash_and_by_similarity(store: statekeel.Store) -> None:
    mem = store.memory(("agent",), embedder=Words())
    first = mem.put("a", "The cat sat on the mat")
    assert mem.put("b", "The cat  sat on the mat ").key == "a"  # same text (whitespace aside): the existing item
    assert mem.get("b") is None
    assert mem.put("a", "The cat sat on the mat", metadata={"x": 1}).metadata == {"x": 1}  # same key: an update
    near = store.memory(("agent",), embedder=Words(), similarity=0.85)
    assert near.put("c", "the cat sat on the mat today").key == "a"  # cosine 0.93 with "a"
    assert near.put("d", "dogs bark at night").key == "d"
    assert store.memory(("agent",), embedder=Words(), dedup=False).put("e", "The cat sat on the mat").key == "e"
    mem.put("a", "A new text for a")  # the text changed: the old text is free again
    assert mem.put("f", "The cat sat on the mat").key == "e"  # e still holds it
    assert first.created_at is not None
    many = near.put_many([{"key": "g", "value": "red kites fly high"}, {"key": "h", "value": "red  kites fly high"},
                          {"key": "i", "value": "red kites fly high today"}, {"key": "j", "value": "green frogs"}])
    assert [i.key for i in many] == ["g", "g", "g", "j"]  # within one call too: same text, then similar
    with pytest.raises(InvalidInputError, match="twice"):
        mem.put_many([{"key": "k", "value": "x"}, {"key": "k", "value": "y"}])
    assert mem.get("k") is None


def test_ttl_and_forgetting(store: statekeel.Store) -> None:
    mem = store.memory(("s",), embedder=None)
    mem.put("short", "gone soon", ttl=0.05)
    mem.put("long", "kept", ttl="1h")
    assert mem.get("long") is not None and mem.get("long").expires_at is not None  # type: ignore[union-attr]
    time.sleep(0.15)
    assert mem.get("short") is None and [h.key for h in mem.search("gone soon kept")] == ["long"]
    for i in range(4):
        store.memory(("s", "sub"), embedder=None).put(f"k{i}", f"note number {i}")
    assert mem.forget(keep=2) == 2  # per namespace: ("s",) keeps its one, ("s","sub") its newest two
    assert [i.key for i in store.memory(("s", "sub"), embedder=None).items()] == ["k2", "k3"]
    time.sleep(0.02)
    assert mem.forget(max_age=0.01) == 3 and mem.items() == []


def test_changed_embedder_is_detected_and_reindexed(store: statekeel.Store) -> None:
    store.memory(("r",), embedder=Words("words-v1", 32)).put_many(
        [{"key": k, "value": t} for k, t in FACTS.items()])
    newer = store.memory(("r",), embedder=Words("words-v2", 16))
    with pytest.raises(EmbedderMismatchError, match="reindex"):
        newer.search("user")
    assert newer.search("japanese", mode="text")[0].key == "lang"  # full text needs no vectors
    assert newer.reindex() == len(FACTS) and newer.reindex() == 0
    assert newer.search("learning japanese", mode="vector")[0].key == "lang"
    assert newer.get("lang").embedder == "words-v2"  # type: ignore[union-attr]


def test_bad_input_is_refused_and_stores_nothing(store: statekeel.Store) -> None:
    class Broken:
        name, dim = "broken", 4

        def __init__(self, vec: list[float]) -> None:
            self.vec = vec

        def embed(self, texts: list[str]) -> list[list[float]]:
            return [self.vec for _ in texts]

    for vec, said in (([1.0, math.nan, 0.0, 0.0], "NaN"), ([1.0, 2.0], "dimension")):
        with pytest.raises(InvalidInputError, match=said):
            store.memory(("bad",), embedder=Broken(vec)).put("k", "text")
    assert store.memory_namespaces() == []
    for ns in ("user", (), ("user", ""), ("user", 7), None):
        with pytest.raises(InvalidInputError, match="namespace"):
            store.memory(ns)  # type: ignore[arg-type]
    mem = store.memory(("ok",), embedder=None)
    for call in (lambda: mem.put("", "x"), lambda: mem.put("k", "x", metadata={"f": math.inf}),
                 lambda: mem.put("k", "x", text=3),  # type: ignore[arg-type]
                 lambda: mem.search("x", filter=["kind"]),  # type: ignore[arg-type]
                 lambda: mem.search("x", limit=0), lambda: mem.search("x", offset=-1),
                 lambda: mem.search(None),  # type: ignore[arg-type]
                 lambda: mem.put_many([{"key": "k", "valeu": 1}])):
        with pytest.raises(InvalidInputError):
            call()
    with pytest.raises(InvalidInputError, match="embedder"):
        store.memory(("ok",), embedder=42)
    with pytest.raises(UsageError, match="embedder"):
        mem.search("x", mode="vector")
    assert store.memory_namespaces() == []


def test_encrypted_store_searches_after_decrypting(store_url: str) -> None:
    from statekeel import Encryption

    with statekeel.open(store_url, encryption=Encryption(master_key=b"k" * 32)) as enc:
        mem = enc.memory(("user", "u-1"))
        _fill(mem)
        assert mem.search("where does the user live", limit=1)[0].key == "home"
        raw = [r.data for r in enc.storage.scan("memory/", limit=100)]
        assert raw and not any(b"Lyon" in d or b"vegetarian" in d for d in raw)  # text is sealed at rest


def test_tenants_see_only_their_memories(store: statekeel.Store) -> None:
    store.tenant("a").memory(("u",), embedder=None).put("k", "tenant a secret plan")
    assert store.tenant("b").memory(("u",), embedder=None).search("secret plan") == []
    assert [h.key for h in store.tenant("a").memory(("u",), embedder=None).search("secret plan")] == ["k"]


def test_async_twin(store_url: str) -> None:
    async def main() -> list[str]:
        async with statekeel.open_async(store_url) as st:
            mem = st.memory(("u",), embedder=Words())
            await mem.put("k", "the async path works")
            return [h.key for h in await mem.search("async path")]

    assert asyncio.run(main()) == ["k"]


def test_reciprocal_rank_fusion_is_documented_formula() -> None:
    fused = dict(fuse([["a", "b"], ["b", "c"]]))
    assert fused["b"] == pytest.approx(1 / (RRF_K + 2) + 1 / (RRF_K + 1))
    assert fused["a"] == pytest.approx(1 / (RRF_K + 1)) and fused["c"] == pytest.approx(1 / (RRF_K + 2))


def test_native_index_and_in_process_search_agree(store: statekeel.Store) -> None:
    mem = store.memory(("eq",), embedder=Words())
    _fill(mem)
    mem.put("extra", "The user lives with a dog and a cat", metadata={"topic": "home", "n": 9})
    plain = statekeel.Memory(store, ("eq",), embedder=Words(), native=False)
    for query, options in (("the user lives", {}), ("dog walks", {"mode": "vector"}), ("user", {"mode": "text"}),
                           ("user home", {"filter": {"topic": "home"}}), ("user", {"offset": 2, "limit": 3}),
                           ("user", {"filter": {"n": [1, 2, 9]}, "mode": "text"})):
        native, fallback = mem.search(query, **options), plain.search(query, **options)  # type: ignore[arg-type]
        assert [(h.key, h.matched) for h in native] == [(h.key, h.matched) for h in fallback], (query, options)
        assert [h.score for h in native] == pytest.approx([h.score for h in fallback])


def test_cli_reindexes_a_changed_embedder_and_inspects(store_url: str) -> None:
    from click.testing import CliRunner

    from statekeel.cli import main

    with statekeel.open(store_url) as st:
        st.memory(("user", "u-7"), embedder=Words()).put_many([{"key": k, "value": t} for k, t in FACTS.items()])
        cli = CliRunner()
        out = cli.invoke(main, ["memory", "search", "user", "where does the user live", "--url", store_url])
        assert out.exit_code == 1 and "reindex" in out.output
        out = cli.invoke(main, ["memory", "reindex", store_url, "--namespace", "user", "--json"])
        assert out.exit_code == 0 and '"user": 6' in out.output, out.output
        out = cli.invoke(main, ["memory", "search", "user/u-7", "where does the user live", "--json", "--url", store_url])
        assert out.exit_code == 0 and '"key": "home"' in out.output.split("}")[0], out.output
        assert st.memory(("user", "u-7")).get("home").embedder == "wordllama/l2_supercat-256"  # type: ignore[union-attr]
        out = cli.invoke(main, ["memory", "delete", "user/u-7", "home", "--url", store_url])
        assert out.exit_code == 0 and cli.invoke(main, ["memory", "get", "user/u-7", "home", "--url", store_url]).exit_code == 1
