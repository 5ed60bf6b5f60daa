"""SQLite gives space back incrementally: new stores use auto_vacuum=INCREMENTAL; old ones are converted once."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import statekeel
from statekeel.protocol.capabilities import SupportsReclaim


def _fill(store: statekeel.Store, n: int) -> None:
    for i in range(n):
        store.session(f"s{i}").append({"role": "user", "content": "x" * 4000})


def test_a_new_store_reclaims_incrementally(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    with statekeel.open(f"sqlite:///{path}") as store:
        assert isinstance(store.storage, SupportsReclaim)
        _fill(store, 200)
        for i in range(80):  # 40% freed: moved page by page (a mostly free file is rewritten instead)
            store.delete_session(f"s{i}")
        store.purge_expired()
        before, after = store.storage.reclaim()
        assert after < before * 0.75
        assert store.session("kept").append("still works") == 1
        assert len(store.session("s150").history()) == 1
    assert sqlite3.connect(path).execute("PRAGMA auto_vacuum").fetchone()[0] == 2


def test_a_mostly_empty_store_is_rewritten(tmp_path: Path) -> None:
    with statekeel.open(f"sqlite:///{tmp_path / 'empty.db'}") as store:
        _fill(store, 100)
        for i in range(100):
            store.delete_session(f"s{i}")
        store.purge_expired()
        before, after = store.storage.reclaim()
        assert after < before / 5


def test_a_store_from_before_is_converted_by_its_first_reclaim(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)  # what an earlier statekeel created: auto_vacuum NONE
    conn.execute("CREATE TABLE placeholder (x)")
    conn.execute("DROP TABLE placeholder")
    conn.close()
    with statekeel.open(f"sqlite:///{path}") as store:
        _fill(store, 100)
        assert sqlite3.connect(path).execute("PRAGMA auto_vacuum").fetchone()[0] == 0
        for i in range(100):
            store.delete_session(f"s{i}")
        store.purge_expired()
        before, after = store.storage.reclaim()
        assert after < before / 3
    assert sqlite3.connect(path).execute("PRAGMA auto_vacuum").fetchone()[0] == 2
