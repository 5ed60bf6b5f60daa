"""The native memory indexes (SQLite FTS5, PostgreSQL tsvector, PostgreSQL + pgvector).

The index is derived data: these tests make it stale behind its back — as a crash
between a record write and its index write would, or a writer that bypasses it —
and check that search still answers from the records (never a wrong hit) and
rebuilds it. ``pgvector`` is a PostgreSQL with the extension, from the ``pgserver``
package (:mod:`statekeel.testing.servers.pgvector`); it runs with ``postgres``.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import statekeel
from statekeel import Encryption, Memory
from statekeel.features.memory.native import index_of, planned_row
from statekeel.protocol.capabilities import MemoryIndex
from statekeel.testing.plugin import selected_backends
from statekeel.testing.servers import ServerPool
from statekeel.testing.servers.pgvector import PgvectorServer

from conftest import running
from test_memory import FACTS, Words

_n = iter(range(1_000_000))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "indexed" in metafunc.fixturenames:
        chosen = selected_backends(metafunc.config)
        kinds = [k for k in ("sqlite", "postgres") if k in chosen] + (["pgvector"] if "postgres" in chosen else [])
        metafunc.parametrize("kind", kinds)


@pytest.fixture(scope="session")
def pgvector_server() -> Iterator[PgvectorServer]:
    yield from running(PgvectorServer())


@pytest.fixture
def indexed(kind: str, tmp_path: Path, statekeel_servers: ServerPool, request: pytest.FixtureRequest
            ) -> Iterator[statekeel.Store]:
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path}/store.db"
    elif kind == "postgres":
        url = f"{statekeel_servers.postgres().url}?schema=sk_mem_{next(_n)}"
    else:
        url = f"{request.getfixturevalue('pgvector_server').url}?schema=sk_mem_{next(_n)}"
    with statekeel.open(url) as store:
        yield store


def _index(store: statekeel.Store) -> MemoryIndex:
    index = index_of(store)
    assert index is not None
    return index


def _indexed(store: statekeel.Store) -> list[tuple[str, int]]:
    return [(r[0], r[1]) for r in _index(store).vectors("memory/", {}, time.time())]


def test_the_native_index_is_used_and_pgvector_where_installed(indexed: statekeel.Store, kind: str) -> None:
    mem = indexed.memory(("u",), embedder=Words())
    mem.put_many([{"key": k, "value": t} for k, t in FACTS.items()])
    assert len(_indexed(indexed)) == len(FACTS)
    assert (getattr(_index(indexed), "pgvector", False)) is (kind == "pgvector")
    assert mem.search("learning japanese", mode="vector")[0].key == "lang"
    assert mem.search("learning japanese")[0].key == "lang"


def test_a_crash_after_the_index_write_leaves_no_wrong_hit(indexed: statekeel.Store) -> None:
    mem = indexed.memory(("u",), embedder=None)
    mem.put("a", "the red kite circles")
    payload = {"t": "a ghost text never stored", "h": "0" * 32, "m": {}}  # the row of a put that then crashed
    for key, version in (("a", 1), ("a", 2), ("b", 1)):  # another text at the same version; a newer one; no record
        _index(indexed).upsert([planned_row(f"memory/nu/={key}", version, None, payload)])
        assert mem.search("ghost") == [], (key, version)
        assert _indexed(indexed) == [("memory/nu/=a", 1)]  # rebuilt from the records by that search
    assert [h.key for h in mem.search("kite")] == ["a"]


def test_records_written_around_the_index_are_found_after_reindex(indexed: statekeel.Store) -> None:
    Memory(indexed, ("u",), embedder=None, native=False).put("a", "the red kite circles")  # as `statekeel import` does
    mem = indexed.memory(("u",), embedder=None)
    assert mem.search("kite") == []  # missed, never wrong
    assert mem.reindex() == 0 and [h.key for h in mem.search("kite")] == ["a"]
    assert _indexed(indexed) == [("memory/nu/=a", 1)]


def test_an_outdated_index_row_never_yields_its_old_text(indexed: statekeel.Store) -> None:
    indexed.memory(("u",), embedder=None).put("a", "the password hint is blue")
    Memory(indexed, ("u",), embedder=None, native=False).put("a", "nothing to see")  # the index is not told
    mem = indexed.memory(("u",), embedder=None)
    assert mem.search("password hint") == []
    assert [h.text for h in mem.search("nothing")] == ["nothing to see"]
    assert _indexed(indexed) == [("memory/nu/=a", 2)]


def test_an_index_row_of_a_deleted_record_is_not_a_hit(indexed: statekeel.Store) -> None:
    mem = indexed.memory(("u",), embedder=None)
    mem.put("a", "alpha note")
    mem.put("b", "alpha other")
    Memory(indexed, ("u",), embedder=None, native=False).delete("a")  # the index still has "a"
    assert [h.key for h in mem.search("alpha")] == ["b"]
    assert _indexed(indexed) == [("memory/nu/=b", 1)]


def test_expiry_and_filters_push_down(indexed: statekeel.Store) -> None:
    mem = indexed.memory(("u",), embedder=None)
    mem.put("gone", "alpha expired", ttl=0.01)
    mem.put("x", "alpha x", metadata={"kind": "fact", "ok": True, "n": 1.0})
    mem.put("y", "alpha y", metadata={"kind": "pref", "ok": 1, "n": None})
    time.sleep(0.05)
    assert sorted(h.key for h in mem.search("alpha")) == ["x", "y"]
    index, now = _index(indexed), time.time()
    for where, keys in (({"kind": "pref"}, ["y"]), ({"ok": True}, ["x"]), ({"ok": 1}, ["y"]),
                        ({"n": 1}, ["x"]), ({"n": None}, ["y"]), ({"kind": ["fact", "pref"]}, ["x", "y"]),
                        ({"kind": []}, [])):
        assert [r[0].rpartition("=")[2] for r in index.vectors("memory/", where, now)] == keys, where
        assert [h.key for h in mem.search("alpha", filter=where)] == keys, where


def test_native_and_in_process_search_agree(indexed: statekeel.Store) -> None:
    mem = indexed.memory(("eq",), embedder="default")
    mem.put_many([{"key": k, "value": t, "metadata": {"topic": k}} for k, t in FACTS.items()])
    plain = Memory(indexed, ("eq",), native=False)
    options: list[dict[str, Any]] = [{}, {"mode": "vector"}, {"mode": "text"}, {"offset": 2, "limit": 2},
                                     {"filter": {"topic": ["home", "dog", "car"]}}]
    for query in ("where does the user live", "pets", "the user"):
        for opts in options:
            native, fallback = mem.search(query, **opts), plain.search(query, **opts)
            assert [(h.key, h.matched) for h in native] == [(h.key, h.matched) for h in fallback], (query, opts)
            assert [h.score for h in native] == pytest.approx([h.score for h in fallback], rel=1e-4)


def test_an_encrypted_sqlite_store_keeps_no_plaintext_index(tmp_path: Path) -> None:
    db = tmp_path / "enc.db"
    with statekeel.open(f"sqlite:///{db}", encryption=Encryption(master_key=b"k" * 32)) as store:
        mem = store.memory(("u",), embedder=None)
        mem.put("a", "the launch code is swordfish")
        assert index_of(store) is None and [h.key for h in mem.search("swordfish")] == ["a"]
    with sqlite3.connect(db) as c:
        tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master")}
    assert "sk_memidx" not in tables and b"swordfish" not in db.read_bytes()


def test_sqlite_vectors_read_once_are_refreshed_by_another_writer(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/shared.db"
    with statekeel.open(url) as one, statekeel.open(url) as two:
        first, second = one.memory(("u",), embedder=Words()), two.memory(("u",), embedder=Words())
        first.put("a", "red kites fly")
        assert [h.key for h in first.search("green frogs", mode="vector")] == ["a"]  # the vectors are cached now
        second.put("b", "green frogs jump")  # another connection: PRAGMA data_version moves
        assert [h.key for h in first.search("green frogs", mode="vector")] == ["b", "a"]
        first.delete("b")  # this connection's own index write
        assert [h.key for h in second.search("green frogs", mode="vector")] == ["a"]
        assert [h.key for h in first.search("green frogs", mode="vector")] == ["a"]
